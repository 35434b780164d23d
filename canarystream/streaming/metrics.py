"""The worker's Prometheus metrics, recorded once per batch (never per event)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from canarystream.contracts.decision import CheckReason, Decision, Phase, Verdict
from canarystream.engine.rollout import Rollout
from canarystream.streaming.processor import BatchResult

__all__ = ["WorkerMetrics"]

# Decisions are taken when event time crosses a tick boundary: seconds to an hour behind.
_LAG_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


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
        self.late = Counter(
            "canarystream_late_requests_total",
            "Requests stamped before their rollout's open tick (a late or skewed producer), "
            "judged in the open tick.",
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
            "Messages delivered again and skipped, by source topic: their effect was already in "
            "the state (after a restart, or read by the worker itself when they were late).",
            ["topic"],
            registry=r,
        )
        self.decisions = Counter(
            "canarystream_decisions_total",
            "Decisions published, by action and service.",
            ["action", "service"],
            registry=r,
        )
        self.decision_lag = Histogram(
            "canarystream_decision_lag_seconds",
            "Wall-clock seconds from a decision's event time to its publication.",
            buckets=_LAG_BUCKETS,
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
        self.info = Gauge(
            "canarystream_rollout_info",
            "1 for each live rollout, naming its service, versions and policy.",
            ["deployment", "service", "baseline_version", "canary_version", "policy"],
            registry=r,
        )
        self.phase = Gauge(
            "canarystream_rollout_phase",
            "1 for the phase a live rollout is in, 0 for the others.",
            ["deployment", "phase"],
            registry=r,
        )
        self.stage = Gauge(
            "canarystream_rollout_stage", "Stage index of a rollout.", ["deployment"], registry=r
        )
        self.traffic = Gauge(
            "canarystream_rollout_traffic_ratio",
            "Canary share of traffic a rollout asks for, 0-1.",
            ["deployment"],
            registry=r,
        )
        self.clock = Gauge(
            "canarystream_rollout_clock_timestamp_seconds",
            "Event time a live rollout has been decided up to (epoch seconds): how far behind "
            "the wall clock its decisions are.",
            ["deployment"],
            registry=r,
        )
        checks = ["deployment", "check"]
        self.verdict = Gauge(
            "canarystream_check_verdict",
            "1 for a check's verdict at its rollout's last decision (pass, fail, inconclusive, "
            "no_data), 0 for the others.",
            [*checks, "verdict"],
            registry=r,
        )
        self.estimate = Gauge(
            "canarystream_check_estimate",
            "Point estimate of a check at its last decision (ratio or difference).",
            checks,
            registry=r,
        )
        self.lower = Gauge(
            "canarystream_check_lower_bound",
            "Anytime-valid lower confidence bound of a check at its last decision.",
            checks,
            registry=r,
        )
        self.upper = Gauge(
            "canarystream_check_upper_bound",
            "Anytime-valid upper confidence bound of a check at its last decision.",
            checks,
            registry=r,
        )
        self.tolerance = Gauge(
            "canarystream_check_tolerance",
            "Regression margin of a check: evidence of a regression beyond it fails the check.",
            checks,
            registry=r,
        )
        self.advance_tolerance = Gauge(
            "canarystream_check_advance_tolerance",
            "Bound a check's upper confidence bound must be under for its rollout to advance.",
            checks,
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
        for topic, n in result.skipped.items():
            self.skipped.labels(topic).inc(n)

    def record_consumed(self, rollouts: Iterable[Rollout]) -> None:
        """Count the events the rollouts folded, and their late requests, since they were
        last counted; set the live ones' clocks."""
        for rollout in rollouts:
            if rollout.is_live:
                self.clock.labels(rollout.deployment).set(rollout.clock)
            seen = self._reported.setdefault(rollout.deployment, {})
            for kind, per_cohort in rollout.consumed.items():
                for cohort, total in zip(("baseline", "canary"), per_cohort, strict=True):
                    delta = total - seen.get((kind, cohort), 0)
                    if delta:
                        self.events.labels(kind, cohort).inc(delta)
                        seen[(kind, cohort)] = total
            late = rollout.late_events - seen.get(("late", ""), 0)
            if late:
                self.late.inc(late)
                seen[("late", "")] = rollout.late_events

    def record_decisions(self, decisions: Iterable[Decision], now: float | None = None) -> None:
        """Count published decisions and set their rollouts' gauges; ``now``: wall time of
        publication (default: the clock)."""
        published_at = time.time() if now is None else now
        for decision in decisions:
            deployment = decision.deployment
            self.decisions.labels(decision.action.value, decision.service).inc()
            self.decision_lag.observe(max(published_at - decision.ts, 0.0))
            self.info.labels(
                deployment,
                decision.service,
                decision.baseline_version,
                decision.canary_version,
                decision.policy,
            ).set(1)
            for phase in Phase:
                self.phase.labels(deployment, phase.value).set(phase is decision.phase)
            self.stage.labels(deployment).set(decision.stage)
            self.traffic.labels(deployment).set(decision.traffic_percent / 100)
            self.clock.labels(deployment).set(decision.ts)
            for reason in decision.reasons:
                self._record_check(deployment, reason)

    def _record_check(self, deployment: str, reason: CheckReason) -> None:
        for verdict in Verdict:
            self.verdict.labels(deployment, reason.check, verdict.value).set(
                verdict is reason.verdict
            )
        for gauge, value in (
            (self.estimate, reason.estimate),
            (self.lower, reason.lower),
            (self.upper, reason.upper),
            (self.tolerance, reason.tolerance),
            (self.advance_tolerance, reason.advance_tolerance),
        ):
            if value is not None:
                gauge.labels(deployment, reason.check).set(value)

    def record_rollouts(self, active: Iterable[Rollout], finished: Iterable[Rollout]) -> None:
        """Set the count of active rollouts; drop the series of rollouts that ended."""
        self.active.set(sum(1 for _ in active))
        self.forget(rollout.deployment for rollout in finished)

    def forget(self, deployments: Iterable[str]) -> None:
        """Drop the series of rollouts this worker no longer holds (ended, or moved to
        another worker with their partition)."""
        for deployment in deployments:
            self._reported.pop(deployment, None)
            for gauge in self._per_rollout:
                for labels in list(gauge._metrics):
                    if labels[0] == deployment:
                        gauge.remove(*labels)

    @property
    def _per_rollout(self) -> tuple[Gauge, ...]:
        """The gauges whose first label is the deployment."""
        return (
            self.info,
            self.phase,
            self.stage,
            self.traffic,
            self.clock,
            self.verdict,
            self.estimate,
            self.lower,
            self.upper,
            self.tolerance,
            self.advance_tolerance,
        )
