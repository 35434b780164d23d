"""Prometheus metrics of the actuators, registered on a registry the caller owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["ActuationMetrics"]

_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ActuationMetrics:
    """Counters and latency of actuations.

    * ``canarystream_actuations_total{backend,status}`` -- reports by status
      (applied, failed, rejected);
    * ``canarystream_actuation_rejected_total{reason}`` -- rejections by reason
      (unsigned, bad_signature, out_of_scope, stale, duplicate; invalid_decision for a
      message that is not a decision, which gets no report);
    * ``canarystream_actuation_duration_seconds{backend}`` -- time from receipt to report,
      retries included.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.actuations = Counter(
            "canarystream_actuations",
            "Decisions carried out, by backend and outcome.",
            ["backend", "status"],
            registry=registry,
        )
        self.rejected = Counter(
            "canarystream_actuation_rejected",
            "Decisions refused before reaching a backend, by reason.",
            ["reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "canarystream_actuation_duration_seconds",
            "Seconds from receiving a decision to reporting on it, retries included.",
            ["backend"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )

    def reject(self, reason: str) -> None:
        """Count a message refused before it could become a report."""
        self.rejected.labels(reason=reason).inc()

    def observe(self, backend: str, status: str, seconds: float, reason: str | None = None) -> None:
        """Count one report; ``reason`` for a rejection."""
        self.actuations.labels(backend=backend, status=status).inc()
        self.duration.labels(backend=backend).observe(seconds)
        if reason is not None:
            self.rejected.labels(reason=reason).inc()
