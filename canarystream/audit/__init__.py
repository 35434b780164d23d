"""The audit trail: every verdict, decision and actuation, hash-chained per deployment.

``chain`` builds records, ``subject`` says what a recorded message is, ``verify`` checks a
trail; all three are pure. ``recorder`` (``canarystream audit record``) and ``reading`` do the
Kafka I/O.
"""
