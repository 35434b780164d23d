"""Prometheus metrics of the OTLP bridge, registered on a registry the caller owns.

* ``canarystream_otlp_messages_total{signal,outcome}`` -- messages consumed (``converted``, or
  ``dead_lettered``);
* ``canarystream_otlp_spans_total{outcome}`` -- spans by what became of them (``request``,
  ``dependency``, or why not: ``no_service``, ``no_version``, ``invalid_ts``...);
* ``canarystream_otlp_points_total{outcome}`` -- metric data points likewise (``metric``,
  ``unsupported``, ``invalid_value``...);
* ``canarystream_otlp_events_published_total{type}`` -- events produced to the telemetry topic;
* ``canarystream_otlp_dead_letters_total{reason}`` -- messages that were no OTLP request.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from canarystream.ingest.conversion import Conversion
from canarystream.ingest.decode import Signal

__all__ = ["BridgeMetrics"]


class BridgeMetrics:
    """Counters of one bridge."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "canarystream_otlp_messages_total",
            "OTLP messages consumed, by signal and outcome (converted, dead_lettered).",
            ["signal", "outcome"],
            registry=r,
        )
        self.spans = Counter(
            "canarystream_otlp_spans_total",
            "OTLP spans, by what became of them (request, dependency, or why not).",
            ["outcome"],
            registry=r,
        )
        self.points = Counter(
            "canarystream_otlp_points_total",
            "OTLP metric data points, by what became of them (metric, or why not).",
            ["outcome"],
            registry=r,
        )
        self.published = Counter(
            "canarystream_otlp_events_published_total",
            "Events the bridge produced to the telemetry topic, by type.",
            ["type"],
            registry=r,
        )
        self.dead_letters = Counter(
            "canarystream_otlp_dead_letters_total",
            "OTLP messages dead-lettered because they were no OTLP export request, by reason.",
            ["reason"],
            registry=r,
        )

    def converted(self, signal: Signal, conversion: Conversion) -> None:
        """Count one converted message and its spans or points."""
        self.messages.labels(signal, "converted").inc()
        for outcome, count in conversion.spans.items():
            self.spans.labels(outcome).inc(count)
        for outcome, count in conversion.points.items():
            self.points.labels(outcome).inc(count)

    def dead_lettered(self, signal: Signal, reason: str) -> None:
        """Count one message set aside."""
        self.messages.labels(signal, "dead_lettered").inc()
        self.dead_letters.labels(reason).inc()
