"""Fixtures of the end-to-end test: the broker, a topic-isolated stack, and a real Unleash."""

from __future__ import annotations

from tests.support.broker import kafka_bootstrap, stack  # noqa: F401  (broker fixtures)
from tests.support.unleash import unleash  # noqa: F401  (real Unleash)
