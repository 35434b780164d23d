"""The audit trail: every signed verdict, decision and actuation, hash-chained per deployment.

``chain`` builds records, ``subject`` says what a recorded message is, ``trust`` whether its
writer signed it, ``verify`` checks a trail; all four are pure. ``recorder`` (``canarystream
audit record``) and ``reading`` do the Kafka I/O.
"""
