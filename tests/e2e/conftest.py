"""Fixtures of the end-to-end tests: the broker, a topic-isolated stack, a real Unleash, and a
real OpenTelemetry Collector."""

from __future__ import annotations

from tests.support.broker import kafka_bootstrap, stack  # noqa: F401  (broker fixtures)
from tests.support.collector import collector, otelcol_binary  # noqa: F401  (real Collector)
from tests.support.unleash import unleash  # noqa: F401  (real Unleash)
