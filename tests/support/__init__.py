"""What tests and benchmarks share: brokers, workers, ports, services and stream builders.

- :mod:`tests.support.broker`: the real broker's fixtures and a :class:`Stack` of isolated
  topics with worker processes and clients;
- :mod:`tests.support.services`: free ports, binaries, packages and services a test needs,
  processes and a local HTTP server;
- :mod:`tests.support.streams`: exact small event streams and policies for engine tests;
- :mod:`tests.support.actuators`: decisions and proxies for actuator tests;
- :mod:`tests.support.keys`: the principals' Ed25519 keys (worker, actuator, deployer,
  approver) and the environments that use them;
- :mod:`tests.support.unleash`: a real Unleash server (a session fixture) for flag tests;
- :mod:`tests.support.mixture`: the ratio tests' e-values and bounds recomputed from the
  binomial likelihood with scipy, to check the checks against.

Tests and benchmarks import helpers from here or from the product, never from a test module.
"""
