"""One rollout's state and its deterministic state machine, driven by event time only.

::

    running(stage k) ──advance──▶ running(stage k+1) ──…──▶ promoted
        │  ▲                                   │
      hold │ resume (advance, same stage)      └──rollback──▶ rolled_back ──▶ rollback_verified
        ▼  │                                                               or _not_recovering
       held ──rollback──▶ rolled_back            (abort, from any live phase) ──▶ aborted

    past rollback_unsafe_from_stage, a regression: running ──freeze──▶ frozen (pages a person;
    resume re-evaluates, abort rolls back anyway)

Telemetry accumulates in per-tick buckets; when event time crosses a tick boundary the tick
is folded into the checks and guards and the state machine is evaluated at that boundary.
The boundary, not the arrival of the event that crossed it, is the decision's ``ts``, so the
same events always give the same decisions however they are batched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from canarystream.analysis.checks import CheckGroup, Evidence, Gate, LatencyTracker, Tick, Unit
from canarystream.analysis.cohort import CohortBucket
from canarystream.analysis.guards import BaselineDriftGuard, NoDataWatch, SampleRatioWatch
from canarystream.analysis.recovery import RecoveryWatch
from canarystream.analysis.state import Reader, State, key_to_state, reader
from canarystream.contracts.decision import (
    Action,
    CheckReason,
    Decision,
    Phase,
    Verdict,
    decision_id_for,
)
from canarystream.contracts.events import CompensationHook, DeploymentStarted
from canarystream.contracts.topics import service_partition
from canarystream.contracts.wire import WireRequest
from canarystream.engine.admission import METRIC, PROBE, REQUEST, EventClock, out_of_range
from canarystream.engine.lowtraffic import Outcome, consider
from canarystream.engine.routing import Routing
from canarystream.governance.rules import MAX_CONTROLS
from canarystream.policy.model import Policy
from canarystream.readable import duration, instant

__all__ = ["BASELINE", "CANARY", "Observer", "Rollout"]

BASELINE = 0
CANARY = 1
_MAX_IDLE_TICKS = 100_000  # a gap longer than this is evaluated once at its end


@dataclass(frozen=True, slots=True)
class _Findings:
    """What one evaluation found, before it decides."""

    evidence: list[Evidence]
    critical_fail: list[Evidence]  # critical checks that fail
    pending_failures: list[str]  # non-critical checks that failed, not acknowledged
    shared_incident: bool  # the baseline degrades too
    silent: float  # seconds without canary telemetry
    past_deadline: bool  # the stage's deadline has passed
    unapplied: str | None  # a decision not observed as applied within the deadline (why)


Observer = Callable[["Rollout", float, list[Evidence]], None]
"""Shown every unit's evidence at each evaluation: ``(rollout, event time, evidence)``.

A driver's window on what the engine weighed (the report's series), called before the
evaluation decides; it must only read (asking an evidence its ``reason()`` is reading) and
must not raise: an exception is the engine's own, and the event is refused as an internal error.
"""


class Rollout:
    """State of one rollout: cohorts, checks, guards, stage and phase."""

    observer: Observer | None = None
    """Set by the engine's driver (:attr:`Engine.observer`); not state: it is never stored."""

    def __init__(self, started: DeploymentStarted, policy: Policy) -> None:
        self.deployment = started.deployment
        self.service = started.service
        self.baseline_version = started.baseline_version
        self.canary_version = started.canary_version
        self.cohort_of = {started.baseline_version: BASELINE, started.canary_version: CANARY}
        self.policy = policy
        self.started_at = started.ts
        self.phase = Phase.RUNNING
        self.finished_at: float | None = None  # event time of the terminal decision
        self.stage = 0
        self.traffic_percent = 0.0
        self.seq = -1
        self.stage_started_at = started.ts
        self.stage_requests = [0, 0]  # baseline, canary
        self.tick = policy.tick
        self.next_tick = started.ts + policy.tick
        self.admit_from = started.ts - policy.admission.grace
        self.admission = EventClock(policy.admission)
        self.arrived_before_tick = 0  # events admitted before the open tick (or pending)
        self.corroborated = started.ts  # clock as last moved by telemetry itself
        self.partition = service_partition(started.service)  # of the service topics
        self.idle_mark = -1  # events admitted as of the engine's last look for idle rollouts
        self.buckets = (CohortBucket(), CohortBucket())
        self.breakdowns = tuple(
            sorted({field for check in policy.checks if (field := check.breakdown_field())})
        )
        self.trackers: dict[Any, LatencyTracker] = {None: LatencyTracker(policy.tick)}
        total_weight = sum(check.weight for check in policy.checks)
        self.groups = [
            CheckGroup(check, policy.alpha * check.weight / total_weight, self.trackers)
            for check in policy.checks
        ]
        self.drift = BaselineDriftGuard(policy.guards.baseline_drift, policy.tick)
        self.ratio = SampleRatioWatch(policy.guards.sample_ratio)
        self.no_data = NoDataWatch(policy.guards.no_data)
        self.routing = Routing()  # as observed (traffic_shifted); see observe_routing
        self.paused_by: str | None = None
        self.started_by: str | None = None  # the authenticated announcer (None: unknown)
        self.controls: list[str] = []  # keys of the signed commands taken, oldest first
        self.awaiting_approval = False
        self.approved_stage: int | None = None
        self.approved_by = ""
        self.acknowledged: set[str] = set()  # non-critical failures a person accepted
        self.noncritical_failed: dict[str, float] = {}
        self.hold_summary = ""
        self.late_events = 0
        self.last_decision: Decision | None = None
        # Events folded so far, by type and cohort (baseline, canary): counted per tick.
        self.consumed: dict[str, list[int]] = {"request": [0, 0], "metric": [0, 0], "probe": [0, 0]}
        self.rollback_unsafe_from_stage = started.rollback_unsafe_from_stage
        self.compensation = list(started.compensation)
        statuses = (c.error_statuses_for_recovery() for c in policy.checks)
        self.recovery = RecoveryWatch(
            policy.rollback_verification,
            next((found for found in statuses if found is not None), ((500, 599),)),
        )

    # ----------------------------------------------------------------- inputs

    @property
    def clock(self) -> float:
        """Event time this rollout has reached: the start of its open tick."""
        return self.next_tick - self.tick

    @property
    def is_live(self) -> bool:
        """Whether the rollout can still take decisions."""
        return not self.phase.is_terminal

    @property
    def is_active(self) -> bool:
        """Whether it still wants its service's telemetry (live, or verifying a rollback)."""
        return not self.phase.is_terminal or self.recovery.watching

    def stop_watching(self) -> None:
        """A newer rollout of the service took over: no rollback verification."""
        self.recovery.stop()

    def start(self) -> list[Decision]:
        """The first decision: route the first stage's traffic to the canary."""
        return [self._enter_stage(0, self.started_at, "rollout started")]

    @property
    def arrived(self) -> int:
        """Events admitted so far (applied or pending)."""
        baseline, canary = self.buckets
        return (
            self.arrived_before_tick
            + len(baseline.requests.latencies)
            + len(canary.requests.latencies)
            + baseline.events
            + canary.events
        )

    def advance_clock(self, ts: float) -> list[Decision]:
        """Close every tick that ends at or before ``ts``; return the decisions taken.

        Pending events are applied to their own ticks on the way. This moves the clock
        unconditionally: drivers and trusted inputs call it; telemetry goes through
        :meth:`offer`, which applies the admission rules first.
        """
        decisions: list[Decision] = []
        tick = self.policy.tick
        pending = self.admission.pending
        while ts >= self.next_tick:
            self._apply_pending(self.next_tick)
            now = self.next_tick
            self.next_tick = now + tick
            decisions.extend(self._close_tick(now))
            # A long idle stretch after a closed tick is crossed in one step and evaluated
            # once at its end, before the earliest pending event (which gets its own tick).
            until = min(ts, pending[0][0]) if pending else ts
            if until - self.next_tick > tick * _MAX_IDLE_TICKS:
                self.next_tick += tick * math.floor((until - self.next_tick) / tick)
        self._apply_pending(self.next_tick)
        # The run of witnesses that moved the clock is spent, even when the move decided
        # nothing and left nothing waiting: a score left over would help the next run.
        self.admission.moved(self.next_tick)
        return decisions

    def admit(self, ts: float) -> None:
        """Reject an event stamped before the rollout's start minus the grace."""
        if ts < self.admit_from:
            self.admission.rejected += 1
            raise out_of_range(
                f"ts {ts:.3f} ({instant(ts)}) is before deployment {self.deployment!r} "
                f"started ({instant(self.started_at)}) minus "
                f"{duration(self.policy.admission.grace)} (admission.grace)"
            )

    def offer(
        self, kind: int, cohort: int, ts: float, payload: Any, message: str | None = None
    ) -> list[Decision]:
        """Admit one event stamped at or past the open tick's end (see engine/admission.py).

        ``payload`` is the event (requests: ``(latency, status, event)``); ``message`` names
        the message it came in (None: one of its own). Returns the decisions taken if the
        clock moved; raises ContractError(ts_out_of_range) if the event is not admitted.
        """
        clock = self.clock
        decisions: list[Decision] = []
        if ts > clock + self.policy.admission.max_skew:
            target = self.admission.beyond(ts, clock, self.arrived, message)
            if target is not None:  # a real gap: every producer moved on
                decisions = self.advance_clock(target)
                self.corroborated = self.clock
                if ts < self.next_tick:
                    self._apply(kind, cohort, payload, ts)
                    return decisions
        admission = self.admission
        held = not admission.full()
        if held:
            admission.hold(ts, kind, cohort, payload)
        target = admission.witness(ts, self.arrived, message, held=held)
        if held:
            self.arrived_before_tick += 1
        if target is not None:
            decisions += self.advance_clock(target)
            self.corroborated = self.clock
        if held:
            return decisions
        # No room, yet a witness: the move it completed made room or brought the event into
        # the open tick. After a decision it waits even past the limit (by one), since
        # refusing it would lose the decision.
        if ts < self.next_tick:
            self._apply(kind, cohort, payload, ts)
        elif decisions or not admission.full():
            admission.hold(ts, kind, cohort, payload)
            self.arrived_before_tick += 1
        else:
            raise admission.refuse(ts)
        return decisions

    def heartbeat(self, ts: float) -> list[Decision]:
        """Event time passes for an idle rollout (no event since the previous heartbeat)."""
        if not self.admission.idle_since_last_heartbeat(self.arrived):
            return []
        return self.advance_clock(min(ts, self.clock + self.policy.admission.max_skew))

    def _apply_pending(self, limit: float) -> None:
        if self.admission.pending and self.admission.pending[0][0] < limit:
            for kind, cohort, payload, ts in self.admission.due(limit):
                self.arrived_before_tick -= 1
                self._apply(kind, cohort, payload, ts)

    def _apply(self, kind: int, cohort: int, payload: Any, ts: float) -> None:
        if kind == REQUEST:
            latency, status, event = payload
            self.add_request(cohort, ts, latency, status, event)
        elif kind == METRIC:
            self.add_metric(cohort, payload)
        elif kind == PROBE:
            self.add_probe(cohort, payload)

    def add_request(
        self,
        cohort: int,
        ts: float,
        latency: float,
        status: int,
        event: dict[str, Any] | WireRequest,
    ) -> None:
        """Record one validated request in the current tick (the hot path)."""
        bucket = self.buckets[cohort]
        requests = bucket.requests
        requests.latencies.append(latency)
        statuses = requests.statuses
        statuses[status] = statuses.get(status, 0) + 1
        if self.breakdowns:
            slices = bucket.slices
            for field in self.breakdowns:
                value = event.get(field)
                if value is not None:  # bucket.slice_for(field, value).add(...), inlined
                    found = slices.get((field, value)) or bucket.slice_for(field, value)
                    found.latencies.append(latency)
                    counts = found.statuses
                    counts[status] = counts.get(status, 0) + 1
        if ts < self.next_tick - self.tick:
            self.late_events += 1

    def add_metric(self, cohort: int, event: dict[str, Any]) -> None:
        """Record one validated gauge sample in the current tick."""
        bucket = self.buckets[cohort]
        bucket.add_metric(event["name"], float(event["value"]))
        bucket.events += 1

    def add_probe(self, cohort: int, event: dict[str, Any]) -> None:
        """Record one validated probe result in the current tick."""
        bucket = self.buckets[cohort]
        bucket.add_probe(event["probe"], event["ok"])
        bucket.events += 1

    # ---------------------------------------------------------------- control

    def abort(self, ts: float, actor: str, reason: str | None) -> list[Decision]:
        """Stop now: all traffic back to the baseline."""
        if not self.is_live:
            return []
        why = f"aborted by {actor}" + (f": {reason}" if reason else "")
        return [self._terminate(Action.ROLLBACK, Phase.ABORTED, ts, why)]

    def pause(self, ts: float, actor: str) -> list[Decision]:
        """Hold at the current stage until resumed."""
        if not self.is_live:
            return []
        self.paused_by = actor
        return self._evaluate(ts)

    def resume(self, ts: float, actor: str) -> list[Decision]:
        """Lift a pause."""
        if not self.is_live:
            return []
        self.paused_by = None
        if self.phase is Phase.FROZEN:
            self.phase = Phase.RUNNING  # a person looked; judge again (a regression refreezes)
        return self._evaluate(ts)

    def approve(self, ts: float, actor: str) -> list[Decision]:
        """Let the current stage go: acknowledges its non-critical failures and its gate."""
        if not self.is_live:
            return []
        # Approval accepts the stage's gate, its non-critical failures and inconclusive
        # evidence; it does not override guards, minimum duration or minimum samples.
        self.approved_stage = self.stage
        self.approved_by = actor
        self.acknowledged.update(self.noncritical_failed)
        return self._evaluate(ts)

    def take_control(self, key: str) -> None:
        """Remember a signed command as taken (the newest :data:`MAX_CONTROLS` are kept)."""
        self.controls.append(key)
        del self.controls[:-MAX_CONTROLS]

    def observe_routing(self, ts: float, percent: float, decision_id: str | None) -> None:
        """The canary's share of the cohorts' requests is ``percent`` from ``ts`` on.

        From the first observation on, the sample-ratio guard judges the canary's share against
        the latest observed share (restarted, with its settle, at each change of it) instead of
        the share decided, and is blind while a decision is awaited (see
        :mod:`canarystream.engine.routing`). A shift that names a decision is an actuator's
        read-back of the router's canary weight: in paired baseline mode the compared baseline
        gets as much, so the guard expects half of the cohorts' requests (0 % turns it off). A
        shift that names none states the cohorts' share itself (a recording, or routing set by
        something else), which the guard expects in either mode. A stage whose decision was
        awaited starts when its share is observed.
        """
        routing = self.routing
        awaited = routing.awaited
        awaiting = self.policy.actuation_deadline is not None
        if routing.observe(ts, percent, decision_id, self.traffic_percent, awaiting):
            stated = decision_id is None
            self.ratio.restart(percent / 100.0 if stated else self._cohort_share(percent), ts)
        if awaited is not None and routing.awaited is None and ts > self.stage_started_at:
            # Applied late: the stage's share is routed from ts on, and so is its minimum
            # duration (and its samples) counted, not from the decision.
            self.stage_started_at = ts
            self.stage_requests = [0, 0]

    def _cohort_share(self, percent: float) -> float:
        """The canary's expected share of cohort requests when ``percent`` % is routed to it."""
        if self.policy.baseline_mode == "paired":
            return 0.5 if percent > 0.0 else 0.0
        return percent / 100.0

    def supersede(self, ts: float, by: str) -> list[Decision]:
        """A newer deployment of the same service replaces this one."""
        if not self.is_live:
            return []
        why = f"superseded by deployment {by}"
        return [self._terminate(Action.ROLLBACK, Phase.ABORTED, ts, why, compensate=False)]

    # ------------------------------------------------------------- evaluation

    def _units(self) -> list[Unit]:
        return [unit for group in self.groups for unit in group.units.values()]

    def _close_tick(self, now: float) -> list[Decision]:
        canary, baseline = self.buckets[CANARY], self.buckets[BASELINE]
        self.arrived_before_tick = self.arrived
        self.buckets = (CohortBucket(), CohortBucket())
        for cohort, bucket in ((BASELINE, baseline), (CANARY, canary)):
            self.consumed["request"][cohort] += bucket.requests.requests
            if bucket.events:
                self.consumed["metric"][cohort] += int(sum(m[1] for m in bucket.metrics.values()))
                self.consumed["probe"][cohort] += sum(
                    ok + bad for ok, bad in bucket.probes.values()
                )
        if canary.events or canary.requests.latencies:
            self.no_data.saw(now)
        if self.phase.is_terminal:
            return self._watch_recovery(canary, baseline, now)
        self.recovery.fold_reference(baseline.requests)
        for field_value in canary.slices.keys() | baseline.slices.keys():
            if field_value not in self.trackers:
                self.trackers[field_value] = LatencyTracker(self.policy.tick)
        tick = Tick(canary, baseline, self.trackers, now)
        for group in self.groups:
            group.update(tick)
        empty = CohortBucket().requests
        for key, tracker in self.trackers.items():
            if key is None:
                tracker.update(canary.requests, baseline.requests)
            else:
                tracker.update(canary.slices.get(key, empty), baseline.slices.get(key, empty))
        self._fold_guards(canary, baseline, now)
        self.stage_requests[BASELINE] += baseline.requests.requests
        self.stage_requests[CANARY] += canary.requests.requests
        return self._evaluate(now)

    def _fold_guards(self, canary: CohortBucket, baseline: CohortBucket, now: float) -> None:
        self.drift.fold(baseline, now)
        if self.routing.awaited is None:  # blind while the routing changes (observe_routing)
            self.ratio.fold(canary.requests.requests, baseline.requests.requests, now)

    def _next_share(self) -> float:
        stages = self.policy.stages
        return stages[self.stage + 1].traffic_percent / 100 if self.stage + 1 < len(stages) else 1.0

    def _stage_ready(self, now: float) -> bool:
        stage = self.policy.stages[self.stage]
        return (
            now - self.stage_started_at >= stage.min_duration
            and min(self.stage_requests) >= stage.min_samples
        )

    def _watch_recovery(
        self, canary: CohortBucket, baseline: CohortBucket, now: float
    ) -> list[Decision]:
        if not self.recovery.watching:
            return []
        self.recovery.fold_after(baseline.requests, canary.requests)
        if not self.recovery.due(now):
            return []
        recovered, summary, reasons = self.recovery.verdict()
        action = Action.ROLLBACK_VERIFIED if recovered else Action.ROLLBACK_NOT_RECOVERING
        return [self._decide(action, now, summary, reasons, page=not recovered)]

    def _evaluate(self, now: float) -> list[Decision]:
        """Decide at ``now``, in order: roll back (or freeze), hold, else move on."""
        if not self.is_live or self.phase is Phase.FROZEN:
            return []
        ready = self._stage_ready(now)
        found = self._findings(now, ready)
        why = self._rollback_cause(now, found)
        if why is not None:
            return [self._rollback_or_freeze(now, why, found.evidence)]
        holds = self._hold_causes(found)
        if holds:
            page = found.unapplied is not None and self.routing.page()
            return self._hold(now, "; ".join(holds), found.evidence, page=page)
        return self._progress(now, ready, found)

    def _findings(self, now: float, ready: bool) -> _Findings:
        """Every unit's evidence and the guards' state at ``now``; notes non-critical failures."""
        evidence = self.assess(ready)
        if self.observer is not None:
            self.observer(self, now, evidence)
        for found in evidence:
            if found.verdict is Verdict.FAIL and not found.critical:
                self.noncritical_failed.setdefault(found.name, now)
        return _Findings(
            evidence=evidence,
            critical_fail=[e for e in evidence if e.verdict is Verdict.FAIL and e.critical],
            pending_failures=[n for n in self.noncritical_failed if n not in self.acknowledged],
            shared_incident=self.drift.active(now),
            silent=self.no_data.silent_for(now, self.stage_started_at),
            past_deadline=now - self.stage_started_at >= self.policy.stages[self.stage].deadline,
            unapplied=self.routing.overdue(
                now, self.policy.actuation_deadline, self.traffic_percent
            ),
        )

    def _rollback_cause(self, now: float, found: _Findings) -> str | None:
        """Why the rollout must roll back (or freeze) now, or None."""
        policy = self.policy
        if found.silent >= policy.guards.no_data.rollback_after:
            return f"no canary telemetry for {duration(found.silent)}"
        if found.critical_fail and not found.shared_incident:
            return f"critical regression: {', '.join(e.name for e in found.critical_fail)}"
        if found.pending_failures and found.past_deadline:
            names = ", ".join(found.pending_failures)
            return f"non-critical regression unresolved at deadline: {names}"
        if policy.deadline is not None and now - self.started_at >= policy.deadline:
            return "rollout deadline passed before promotion"
        return None

    def _hold_causes(self, found: _Findings) -> list[str]:
        """Every reason to hold the rollout where it is (none: it may move on)."""
        holds: list[str] = []
        if found.unapplied is not None:
            holds.append(found.unapplied)
        if self.paused_by is not None:
            holds.append(f"paused by {self.paused_by}")
        if found.shared_incident:
            holds.append(f"shared degradation: {self.drift.last_shift}")
        if found.critical_fail:
            names = ", ".join(e.name for e in found.critical_fail)
            holds.append(f"regression seen during a shared degradation: {names}")
        if self.ratio.mismatch:
            holds.append("sample ratio mismatch: canary share differs from routed share")
        if found.silent >= self.policy.guards.no_data.hold_after:
            holds.append(f"no canary telemetry for {duration(found.silent)}")
        if found.pending_failures:
            holds.append(f"non-critical regression: {', '.join(found.pending_failures)}")
        return holds

    def _progress(self, now: float, ready: bool, found: _Findings) -> list[Decision]:
        """Nothing holds the rollout: advance, await approval, wait, or resume."""
        stage = self.policy.stages[self.stage]
        evidence = found.evidence
        gating = [
            e.verdict for e in evidence if e.verdict is not None and e.name not in self.acknowledged
        ]
        shown = ready and all(v is Verdict.PASS for v in gating) and bool(gating)
        approved = self.approved_stage == self.stage
        rule = Outcome(None, "")
        if ready and not shown and not approved and self._futile(now, found):
            rule = self._low_traffic(evidence)
        if shown or rule.evidence is not None or (ready and approved):
            if stage.approval and not approved:
                self.awaiting_approval = True
                return self._hold(now, f"stage {self.stage} passed; awaiting approval", evidence)
            where = f"stage {self.stage} ({stage.traffic_percent:g}%)"
            if shown:
                why = f"no harm shown at {where}"
                if stage.approval:
                    why += f" and approved by {self.approved_by}"
            elif rule.evidence is not None:
                why, evidence = f"low-traffic rule at {where}: {rule.statement}", rule.evidence
            else:
                why = f"stage {self.stage} approved by {self.approved_by}"
            return [self._next_stage(now, why, evidence)]
        if found.past_deadline:
            waiting = [
                self._still_needs(e, now)
                for e in evidence
                if e.verdict is not Verdict.PASS and e.verdict is not None
            ]
            return self._hold(
                now,
                f"stage {self.stage} deadline passed without evidence of no harm"
                + (f" ({'; '.join(waiting)})" if waiting else " (too few samples)")
                + (f"; low-traffic rule {rule.statement}" if rule.statement else ""),
                evidence,
            )
        if self.phase is Phase.HELD and not self.awaiting_approval:
            self.phase = Phase.RUNNING
            self.hold_summary = ""
            why = f"hold cleared; stage {self.stage} resumes"
            return [self._decide(Action.ADVANCE, now, why, evidence=evidence)]
        return []

    def _futile(self, now: float, found: _Findings) -> bool:
        """Whether waiting is not expected to show no harm by the stage's deadline: it has
        passed, or an inconclusive check needs more samples than the time left brings at its
        current rate, or cannot be judged at all and says why (a quantile with no baseline
        threshold). A check with no estimate yet (too little data to make one) is waited for."""
        if found.past_deadline:
            return True
        left = self.policy.stages[self.stage].deadline - (now - self.stage_started_at)
        for evidence in found.evidence:
            if evidence.verdict is not Verdict.INCONCLUSIVE or evidence.name in self.acknowledged:
                continue
            if evidence.more is None:
                if evidence.unit.unestimated() is not None:
                    return True
                continue
            rate = self._canary_rate(evidence.unit.counts, now)
            if rate > 0.0 and evidence.more > rate * left:
                return True
        return False

    def _low_traffic(self, evidence: list[Evidence]) -> Outcome:
        """The policy's low-traffic rule on this evaluation's evidence (see engine/lowtraffic)."""
        policy = self.policy
        return consider(
            evidence,
            self.acknowledged,
            policy.low_traffic,
            promoting=self.stage + 1 >= len(policy.stages),
            confidence=policy.promote_confidence,
        )

    def _canary_rate(self, counts: str, now: float) -> float:
        """Canary samples per second of a kind: requests in this stage, others overall."""
        if counts == "request":
            elapsed, seen = now - self.stage_started_at, self.stage_requests[CANARY]
        else:
            elapsed, seen = now - self.started_at, self.consumed[counts][CANARY]
        return seen / elapsed if elapsed > 0 else 0.0

    def _still_needs(self, evidence: Evidence, now: float) -> str:
        """An inconclusive check and what it still needs: samples and time, estimated."""
        more, counts = evidence.more, evidence.unit.counts
        if evidence.verdict is not Verdict.INCONCLUSIVE:
            return evidence.name
        if more is None:
            why = evidence.unit.unestimated() or f"no estimate yet of the {counts}s it needs"
            return f"{evidence.name}: {why}"
        rate = self._canary_rate(counts, now)
        wait = f", about {duration(more / rate)} at the current rate" if rate > 0 else ""
        return f"{evidence.name}: an estimated {more:,} more canary {counts}s{wait}"

    @staticmethod
    def _guarantee(evidence: list[Evidence], confidence: float) -> str:
        """What a promotion rests on: per check, the regression ruled out beyond its bound."""
        parts = [
            f"{e.name} {'none' if e.ruled_out is None else e.unit.bound_text(e.ruled_out)}"
            for e in evidence
            if e.verdict is not None
        ]
        if not parts:
            return ""
        return f"; guarantee at {confidence:.0%} confidence: {', '.join(parts)}"

    # ------------------------------------------------------------ transitions

    def _hold(
        self, now: float, summary: str, evidence: list[Evidence], *, page: bool = False
    ) -> list[Decision]:
        """Hold (a decision only when the rollout was not held yet, or to page)."""
        if self.phase is Phase.HELD and not page:
            self.hold_summary = summary
            return []
        self.phase = Phase.HELD
        self.hold_summary = summary
        return [self._decide(Action.HOLD, now, summary, page=page, evidence=evidence)]

    def _next_stage(self, now: float, why: str, evidence: list[Evidence]) -> Decision:
        if self.stage + 1 >= len(self.policy.stages):
            why += "; promoted" + self._guarantee(evidence, self.policy.promote_confidence)
            return self._terminate(Action.PROMOTE, Phase.PROMOTED, now, why, evidence=evidence)
        return self._enter_stage(self.stage + 1, now, why, evidence)

    def _enter_stage(
        self, index: int, now: float, why: str, evidence: list[Evidence] | None = None
    ) -> Decision:
        stage = self.policy.stages[index]
        self.stage = index
        self.traffic_percent = stage.traffic_percent
        self.stage_started_at = now
        self.stage_requests = [0, 0]
        self.phase = Phase.RUNNING
        self.awaiting_approval = False
        self.hold_summary = ""
        if not self.routing.observed:  # else the guard follows the routing observed
            self.ratio.restart(self._cohort_share(stage.traffic_percent), now)
        summary = f"{why}; stage {index} at {stage.traffic_percent:g}% traffic"
        return self._decide(Action.ADVANCE, now, summary, evidence=evidence)

    def _rollback_or_freeze(self, now: float, why: str, evidence: list[Evidence]) -> Decision:
        unsafe = self.rollback_unsafe_from_stage
        if unsafe is not None and self.stage >= unsafe:
            self.phase = Phase.FROZEN
            summary = (
                f"{why}; frozen at {self.traffic_percent:g}%: rolling back is unsafe for data "
                f"from stage {unsafe} on; a person must decide (resume or abort)"
            )
            return self._decide(Action.FREEZE, now, summary, page=True, evidence=evidence)
        return self._terminate(Action.ROLLBACK, Phase.ROLLED_BACK, now, why, evidence=evidence)

    def _terminate(  # noqa: PLR0913 -- the fields of the final decision
        self,
        action: Action,
        phase: Phase,
        now: float,
        why: str,
        *,
        compensate: bool = True,
        evidence: list[Evidence] | None = None,
    ) -> Decision:
        """End the rollout; a rollback (unless superseded) runs hooks and is then verified.

        Without ``evidence`` (an abort, a supersession) the decision's reasons are assessed
        at the stage it ends in: the stage and its counts do not change here.
        """
        self.phase = phase
        self.finished_at = now
        self.traffic_percent = 100.0 if action is Action.PROMOTE else 0.0
        if action is Action.ROLLBACK and compensate:
            self.recovery.start(now)
            return self._decide(action, now, why, compensation=self.compensation, evidence=evidence)
        return self._decide(action, now, why, evidence=evidence)

    def gate(self, ready: bool) -> Gate:
        """What the checks are asked against now: stage readiness, next share, promotion."""
        policy = self.policy
        promoting = self.stage + 1 >= len(policy.stages)
        confidence = policy.promote_confidence if promoting else policy.advance_confidence
        return Gate(
            ready=ready, next_share=self._next_share(), promoting=promoting, alpha=1.0 - confidence
        )

    def assess(self, ready: bool) -> list[Evidence]:
        """Every unit's evidence at the current gate: asked once per evaluation."""
        gate = self.gate(ready)
        return [unit.evaluate(gate) for unit in self._units()]

    def reasons(self, evidence: list[Evidence], now: float) -> list[CheckReason]:
        """Every check's account from ``evidence`` (the one that decided), then the guards'."""
        out = [found.reason() for found in evidence]
        out.append(self.drift.reason(now))
        out.append(self.ratio.reason())
        return out

    def _decide(  # noqa: PLR0913 -- the fields of a decision, optional ones keyword-only
        self,
        action: Action,
        now: float,
        summary: str,
        reasons: list[CheckReason] | None = None,
        *,
        page: bool = False,
        compensation: list[Any] | None = None,
        evidence: list[Evidence] | None = None,
    ) -> Decision:
        """A decision; its reasons are ``reasons``, else built from ``evidence`` (taken now
        if none was: a decision outside an evaluation, such as the start or an abort)."""
        if reasons is None:
            if evidence is None:
                evidence = self.assess(self._stage_ready(now))
            reasons = self.reasons(evidence, now)
        self.seq += 1
        decision = Decision(
            decision_id=decision_id_for(self.deployment, self.seq, action.value),
            deployment=self.deployment,
            service=self.service,
            seq=self.seq,
            action=action,
            ts=now,
            stage=self.stage,
            traffic_percent=self.traffic_percent,
            phase=self.phase,
            baseline_version=self.baseline_version,
            canary_version=self.canary_version,
            policy=self.policy.name,
            summary=summary,
            reasons=reasons,
            page=page,
            compensation=compensation or [],
        )
        self.last_decision = decision
        if action.changes_traffic:
            # A final decision is not awaited: the rollout takes no more decisions, and
            # rollback verification judges whether the service recovered.
            awaiting = self.policy.actuation_deadline is not None and self.is_live
            self.routing.decide(decision.decision_id, self.traffic_percent, now, awaiting)
        return decision

    # ------------------------------------------------------------------ state

    def to_state(self) -> State:
        """Every attribute of the rollout as plain data (``ServiceSnapshot`` versions it).

        The policy is stored once, as JSON, and gives the checks and guards their
        configuration back on restore. ``tests/engine/test_state.py`` fails for an attribute
        that is not carried here.
        """
        last = self.last_decision
        return {
            "deployment": self.deployment,
            "service": self.service,
            "baseline_version": self.baseline_version,
            "canary_version": self.canary_version,
            "cohort_of": dict(self.cohort_of),
            "policy": self.policy.model_dump(mode="json"),
            "started_at": self.started_at,
            "phase": self.phase.value,
            "finished_at": self.finished_at,
            "stage": self.stage,
            "traffic_percent": self.traffic_percent,
            "seq": self.seq,
            "stage_started_at": self.stage_started_at,
            "stage_requests": list(self.stage_requests),
            "tick": self.tick,
            "next_tick": self.next_tick,
            "admit_from": self.admit_from,
            "admission": self.admission.to_state(),
            "arrived_before_tick": self.arrived_before_tick,
            "corroborated": self.corroborated,
            "idle_mark": self.idle_mark,
            "partition": self.partition,
            "buckets": [bucket.to_state() for bucket in self.buckets],
            "breakdowns": list(self.breakdowns),
            "trackers": [
                {"key": key_to_state(key), "tracker": tracker.to_state()}
                for key, tracker in self.trackers.items()
            ],
            "groups": [group.to_state() for group in self.groups],
            "drift": self.drift.to_state(),
            "ratio": self.ratio.to_state(),
            "no_data": self.no_data.to_state(),
            "routing": self.routing.to_state(),
            "paused_by": self.paused_by,
            "started_by": self.started_by,
            "controls": list(self.controls),
            "awaiting_approval": self.awaiting_approval,
            "approved_stage": self.approved_stage,
            "approved_by": self.approved_by,
            "acknowledged": sorted(self.acknowledged),
            "noncritical_failed": dict(self.noncritical_failed),
            "hold_summary": self.hold_summary,
            "late_events": self.late_events,
            "last_decision": None if last is None else last.model_dump(mode="json"),
            "consumed": {kind: list(counts) for kind, counts in self.consumed.items()},
            "rollback_unsafe_from_stage": self.rollback_unsafe_from_stage,
            "compensation": [hook.model_dump(mode="json") for hook in self.compensation],
            "recovery": self.recovery.to_state(),
        }

    @classmethod
    def from_state(cls, state: State | Reader) -> Rollout:
        """The rollout :meth:`to_state` described; its policy is validated again."""
        r = reader(state, "rollout")
        rollout = cls.__new__(cls)
        rollout.deployment, rollout.service = r.text("deployment"), r.text("service")
        rollout.baseline_version = r.text("baseline_version")
        rollout.canary_version = r.text("canary_version")
        cohorts = r.child("cohort_of")
        rollout.cohort_of = {version: cohorts.integer(version) for version in cohorts.fields()}
        rollout.policy = policy = r.model("policy", Policy)
        rollout.started_at = r.real("started_at")
        rollout.phase = r.choice("phase", Phase)
        rollout.finished_at = r.real("finished_at", none=True)
        rollout.stage, rollout.seq = r.integer("stage"), r.integer("seq")
        if not 0 <= rollout.stage < len(policy.stages):
            raise r.fail("stage", f"{rollout.stage} is not a stage of the policy")
        rollout.traffic_percent = r.real("traffic_percent")
        rollout.stage_started_at = r.real("stage_started_at")
        rollout.stage_requests = r.integers("stage_requests", 2)
        rollout.tick, rollout.next_tick = r.real("tick"), r.real("next_tick")
        rollout.admit_from = r.real("admit_from")
        rollout.admission = EventClock.from_state(r.child("admission"), policy.admission)
        rollout.arrived_before_tick = r.integer("arrived_before_tick")
        rollout.corroborated, rollout.idle_mark = r.real("corroborated"), r.integer("idle_mark")
        rollout.partition = r.integer("partition")
        baseline, canary = (CohortBucket.from_state(item) for item in r.children("buckets", 2))
        rollout.buckets = (baseline, canary)
        rollout.breakdowns = tuple(r.texts("breakdowns"))
        rollout.trackers = {
            item.key("key"): LatencyTracker.from_state(item.child("tracker"))
            for item in r.children("trackers")
        }
        rollout.groups = [
            CheckGroup.from_state(item, check, rollout.trackers)
            for item, check in zip(
                r.children("groups", len(policy.checks)), policy.checks, strict=True
            )
        ]
        guards = policy.guards
        rollout.drift = BaselineDriftGuard.from_state(r.child("drift"), guards.baseline_drift)
        rollout.ratio = SampleRatioWatch.from_state(r.child("ratio"), guards.sample_ratio)
        rollout.no_data = NoDataWatch.from_state(r.child("no_data"), guards.no_data)
        rollout.routing = Routing.from_state(r.child("routing"))
        # Who paused and who started it, and the signed commands it took.
        rollout.paused_by, rollout.started_by, rollout.controls = (
            r.text("paused_by", none=True),
            r.text("started_by", none=True),
            r.texts("controls")[-MAX_CONTROLS:],
        )
        rollout.awaiting_approval = r.flag("awaiting_approval")
        rollout.approved_stage = r.integer("approved_stage", none=True)
        rollout.approved_by = r.text("approved_by")
        rollout.acknowledged = set(r.texts("acknowledged"))
        failed = r.child("noncritical_failed")
        rollout.noncritical_failed = {name: failed.real(name) for name in failed.fields()}
        rollout.hold_summary, rollout.late_events = r.text("hold_summary"), r.integer("late_events")
        rollout.last_decision = None
        if r.raw("last_decision") is not None:
            rollout.last_decision = r.model("last_decision", Decision)
        consumed = r.child("consumed")
        rollout.consumed = {kind: consumed.integers(kind, 2) for kind in consumed.fields()}
        rollout.rollback_unsafe_from_stage = r.integer("rollback_unsafe_from_stage", none=True)
        rollout.compensation = r.models("compensation", CompensationHook)
        rollout.recovery = RecoveryWatch.from_state(
            r.child("recovery"), policy.rollback_verification
        )
        return rollout
