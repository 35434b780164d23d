"""The worker's Prometheus metrics, recorded once per batch (never per event)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from canarystream.contracts.decision import Decision
from canarystream.engine.rollout import Rollout
from canarystream.streaming.processor import BatchResult

__all__ = ["WorkerMetrics"]


class WorkerMetrics:
    """Counters and gauges of one worker, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._reported: dict[str, dict[tuple[str, str], int]] = {}
        r = self.registry
        self.events = Counter(
            "canarystream_events_consumed_total",
            "Events of rollouts folded into their statistics, by type and cohort (counted "
            "when their tick closes).",
            ["type", "cohort"],
            registry=r,
        )
        self.messages = Counter(
            "canarystream_messages_consumed_total",
            "Messages consumed, by source topic.",
            ["topic"],
            registry=r,
        )
        self.ignored = Counter(
            "canarystream_messages_without_rollout_total",
            "Telemetry messages of services with no active rollout, passed over undecoded.",
            registry=r,
        )
        self.invalid = Counter(
            "canarystream_invalid_events_total",
            "Messages or events set aside on the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.skipped = Counter(
            "canarystream_redelivered_messages_skipped_total",
            "Messages delivered again after a restart and skipped: their effect was already "
            "in the restored state.",
            registry=r,
        )
        self.decisions = Counter(
            "canarystream_decisions_total",
            "Decisions published, by action.",
            ["action"],
            registry=r,
        )
        self.gaps = Counter(
            "canarystream_offset_gaps_total",
            "Holes in the offsets Faust delivered (skipped messages, or a committed offset past "
            "the last checkpoint) that were filled by reading the partition again.",
            registry=r,
        )
        self.gap_messages = Counter(
            "canarystream_offset_gap_messages_total",
            "Messages read again to fill holes in the offsets Faust delivered.",
            registry=r,
        )
        self.suppressed = Counter(
            "canarystream_decisions_suppressed_total",
            "Decisions not published again because the decisions topic already had them.",
            registry=r,
        )
        self.publish_failures = Counter(
            "canarystream_decision_publish_failures_total",
            "Failed attempts to publish a batch's decisions, each retried after a backoff.",
            registry=r,
        )
        self.verdicts = Counter(
            "canarystream_verdicts_published_total",
            "Verdicts on announcements and commands published to canary.verdicts.v1.",
            registry=r,
        )
        self.forged_decisions = Counter(
            "canarystream_decisions_unverified_total",
            "Messages on the decisions topic whose signature does not verify with the worker's "
            "key (ignored when telling which decisions are already published).",
            registry=r,
        )
        self.heartbeats = Counter(
            "canarystream_heartbeats_sent_total",
            "Heartbeats produced for rollouts whose telemetry has stopped.",
            registry=r,
        )
        self.active = Gauge(
            "canarystream_active_rollouts", "Rollouts running or held on this worker.", registry=r
        )
        self.stage = Gauge(
            "canarystream_rollout_stage", "Stage index of a rollout.", ["deployment"], registry=r
        )
        self.traffic = Gauge(
            "canarystream_rollout_traffic_percent",
            "Canary share of traffic a rollout asks for, %.",
            ["deployment"],
            registry=r,
        )
        self.estimate = Gauge(
            "canarystream_check_estimate",
            "Point estimate of a check at its last decision (ratio or difference).",
            ["deployment", "check"],
            registry=r,
        )
        self.upper = Gauge(
            "canarystream_check_upper_bound",
            "Anytime-valid upper confidence bound of a check at its last decision.",
            ["deployment", "check"],
            registry=r,
        )
        self.lag = Gauge(
            "canarystream_consumer_lag_messages",
            "Messages behind the end of a source partition after the last batch.",
            ["topic", "partition"],
            registry=r,
        )

    def record_batch(self, result: BatchResult, messages: Mapping[str, int]) -> None:
        for topic, n in messages.items():
            self.messages.labels(topic).inc(n)
        if result.ignored:
            self.ignored.inc(result.ignored)
        for reason, n in result.invalid.items():
            self.invalid.labels(reason).inc(n)
        if result.skipped:
            self.skipped.inc(result.skipped)

    def record_consumed(self, rollouts: Iterable[Rollout]) -> None:
        """Count the events the rollouts folded since they were last counted."""
        for rollout in rollouts:
            seen = self._reported.setdefault(rollout.deployment, {})
            for kind, per_cohort in rollout.consumed.items():
                for cohort, total in zip(("baseline", "canary"), per_cohort, strict=True):
                    delta = total - seen.get((kind, cohort), 0)
                    if delta:
                        self.events.labels(kind, cohort).inc(delta)
                        seen[(kind, cohort)] = total

    def record_decisions(self, decisions: Iterable[Decision]) -> None:
        for decision in decisions:
            self.decisions.labels(decision.action.value).inc()
            self.stage.labels(decision.deployment).set(decision.stage)
            self.traffic.labels(decision.deployment).set(decision.traffic_percent)
            for reason in decision.reasons:
                if reason.estimate is not None:
                    self.estimate.labels(decision.deployment, reason.check).set(reason.estimate)
                if reason.upper is not None:
                    self.upper.labels(decision.deployment, reason.check).set(reason.upper)

    def record_rollouts(self, active: Iterable[Rollout], finished: Iterable[Rollout]) -> None:
        """Set the per-rollout gauges; drop the series of rollouts that ended."""
        self.active.set(sum(1 for _ in active))
        for rollout in finished:
            self._reported.pop(rollout.deployment, None)
            for gauge in (self.stage, self.traffic):
                _remove(gauge, rollout.deployment)
            for gauge in (self.estimate, self.upper):
                for labels in list(gauge._metrics):
                    if labels[0] == rollout.deployment:
                        gauge.remove(*labels)


def _remove(gauge: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
