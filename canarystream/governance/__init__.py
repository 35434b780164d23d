"""Governance: who may steer rollouts.

- :mod:`~canarystream.governance.access`: the access file (principals, keys, grants);
- :mod:`~canarystream.governance.identity`: authentication of a message's exact bytes;
- :mod:`~canarystream.governance.rules`: authorization of one input against rollout state;
- :mod:`~canarystream.governance.envelope`: the signed envelope line of replay files.
"""
