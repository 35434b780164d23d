"""Prometheus metrics of the audit recorder, in a registry the caller owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["AuditMetrics"]


class AuditMetrics:
    """Counters of one recorder.

    * ``canarystream_audit_records_total{kind}`` -- records appended, by kind (verdict,
      decision, actuation, unreadable);
    * ``canarystream_audit_unreadable_total{topic}`` -- messages that were no record of their
      topic (recorded as unreadable all the same);
    * ``canarystream_audit_unverified_total{topic,reason}`` -- messages left out of the trail
      and dead-lettered because their writer's signature did not verify (unsigned,
      bad_signature, unknown_actuator);
    * ``canarystream_audit_redelivered_skipped_total`` -- messages delivered again (after a
      crash or a rebalance) that the trail already held;
    * ``canarystream_audit_ignored_records_total{reason}`` -- records of the audit topic left out
      when rebuilding the chains' heads (unreadable, bad_hash, future_source);
    * ``canarystream_audit_chains`` -- chains whose head this recorder holds in memory.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "canarystream_audit_records_total",
            "Audit records appended, by kind.",
            ["kind"],
            registry=r,
        )
        self.unreadable = Counter(
            "canarystream_audit_unreadable_total",
            "Messages of an audited topic that were no record of it, recorded as unreadable.",
            ["topic"],
            registry=r,
        )
        self.unverified = Counter(
            "canarystream_audit_unverified_total",
            "Messages of an audited topic left out of the trail (dead-lettered) because their "
            "writer's signature did not verify, by topic and reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.skipped = Counter(
            "canarystream_audit_redelivered_skipped_total",
            "Messages delivered again that the trail already held, skipped.",
            registry=r,
        )
        self.ignored = Counter(
            "canarystream_audit_ignored_records_total",
            "Records of the audit topic left out when rebuilding the chains' heads, by reason.",
            ["reason"],
            registry=r,
        )
        self.chains = Gauge(
            "canarystream_audit_chains",
            "Chains (deployments) whose head this recorder holds.",
            registry=r,
        )
