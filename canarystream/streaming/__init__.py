"""The streaming service: the Faust worker around the engine (``canarystream worker``)."""
