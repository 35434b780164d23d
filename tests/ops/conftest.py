"""Fixtures of the operations tests: the real broker for the live scrape."""

from __future__ import annotations

from tests.support.broker import kafka_bootstrap, stack

__all__ = ["kafka_bootstrap", "stack"]
