"""Fixtures of the tests that need the real broker (``make test`` starts it)."""

from __future__ import annotations

from tests.support.broker import kafka_bootstrap, private_broker, stack

__all__ = ["kafka_bootstrap", "private_broker", "stack"]
