"""Broker fixtures for the audit recorder's tests."""

from tests.support.broker import kafka_bootstrap, stack  # noqa: F401  (broker fixtures)
