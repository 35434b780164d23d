"""The per-tick series of rollouts, captured from the engine's own evidence as it runs.

A :class:`SeriesRecorder` is the engine's observer (:attr:`Engine.observer
<canarystream.engine.Engine.observer>`): at every evaluation it keeps, per rollout, the stage,
the routed share and the requests of each cohort, and per check unit the numbers its
:class:`~canarystream.analysis.checks.Evidence` decided with (estimate, bounds, tolerance in
force, e-value, verdict). Decisions are given to :meth:`SeriesRecorder.decided` by the driver
that emits them. Nothing here does I/O or reads a clock, so replay and the live worker record
the same series from the same events.

Recording never changes a decision: it only reads the evidence (its reason is built once and
the same one the decision would carry), and its own failures are counted, never raised.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from canarystream.analysis.checks import Evidence
from canarystream.contracts.decision import Decision
from canarystream.engine import Engine, Rollout

__all__ = ["CheckPoint", "CheckSeries", "RolloutSeries", "SeriesRecorder", "TickPoint"]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class CheckPoint:
    """One unit's evidence at one evaluation, in the units of its tolerance."""

    ts: float
    verdict: str | None  # a Verdict's value; None: nothing this check looks at yet
    estimate: float | None
    lower: float | None  # anytime-valid lower bound (the FAIL side)
    upper: float | None  # upper bound at the confidence in force (the PASS side)
    tolerance: float | None  # the regression margin
    bound: float | None  # what the upper bound must be under to move on (advance or promote)
    e_value: float | None
    threshold: float | None  # the e-value that fails the check
    canary_samples: int
    baseline_samples: int


@dataclass
class CheckSeries:
    """The points of one check unit (a check, or one key of a breakdown or gauge)."""

    name: str
    kind: str
    critical: bool
    points: list[CheckPoint] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TickPoint:
    """A rollout at one evaluation: stage, routed share, and what each cohort sent since the
    previous evaluation."""

    ts: float
    stage: int
    traffic_percent: float
    phase: str
    canary_requests: int
    baseline_requests: int


@dataclass
class RolloutSeries:
    """Everything a report shows of one rollout: its ticks, checks and decisions."""

    deployment: str
    service: str
    baseline_version: str
    canary_version: str
    policy: str
    started_at: float
    stages: list[float] = field(default_factory=list)  # each stage's traffic %
    paired: bool = False  # baseline mode "paired": each cohort gets half the traffic
    ticks: list[TickPoint] = field(default_factory=list)
    checks: dict[str, CheckSeries] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    thinned: int = 0  # times every other point was dropped to stay within the bound
    # The stage's request counts at the previous evaluation (stage start, counts).
    _last_counts: tuple[float, int, int] | None = None

    @property
    def last_decision(self) -> Decision | None:
        """The newest decision, if any."""
        return self.decisions[-1] if self.decisions else None

    @property
    def first_ts(self) -> float:
        """Event time of the first thing recorded."""
        times = [self.started_at]
        if self.ticks:
            times.append(self.ticks[0].ts)
        if self.decisions:
            times.append(self.decisions[0].ts)
        return min(times)

    @property
    def last_ts(self) -> float:
        """Event time of the last thing recorded."""
        times = [self.started_at]
        if self.ticks:
            times.append(self.ticks[-1].ts)
        if self.decisions:
            times.append(self.decisions[-1].ts)
        return max(times)

    def _point_count(self) -> int:
        return max([len(self.ticks), *(len(c.points) for c in self.checks.values())])

    def _thin(self) -> None:
        """Drop every other point (keeping the newest), so a long rollout stays bounded."""
        self.ticks = self.ticks[len(self.ticks) % 2 :: 2] if self.ticks else self.ticks
        for check in self.checks.values():
            check.points = check.points[len(check.points) % 2 :: 2]
        self.thinned += 1

    def _rewind(self, ts: float) -> None:
        """Forget points at or after ``ts``: the driver applies that time again (a restart
        from a checkpoint), so the series never holds one tick twice."""
        self.ticks = [p for p in self.ticks if p.ts < ts]
        for check in self.checks.values():
            check.points = [p for p in check.points if p.ts < ts]
        self._last_counts = None


def _learn(series: RolloutSeries, rollout: Rollout) -> None:
    """Take from the rollout what its decisions do not say: the stages and baseline mode."""
    policy = rollout.policy
    series.stages = [stage.traffic_percent for stage in policy.stages]
    series.paired = policy.baseline_mode == "paired"
    series.started_at = rollout.started_at


class SeriesRecorder:
    """Records rollouts' series as the engine evaluates them (see the module doc).

    Parameters
    ----------
    max_points
        Points kept per rollout and check (None: all). Past it every other point is dropped,
        so a long rollout keeps its whole span at a coarser step.
    max_rollouts
        Rollouts kept (None: all); past it the one recorded least recently is forgotten.
    """

    def __init__(self, *, max_points: int | None = None, max_rollouts: int | None = None) -> None:
        if max_points is not None and max_points < 2:
            raise ValueError("max_points must be at least 2")
        if max_rollouts is not None and max_rollouts < 1:
            raise ValueError("max_rollouts must be at least 1")
        self.max_points = max_points
        self.max_rollouts = max_rollouts
        self._series: OrderedDict[str, RolloutSeries] = OrderedDict()
        self.failures = 0  # evaluations or decisions that could not be recorded

    def attach(self, engine: Engine) -> SeriesRecorder:
        """Observe every rollout of ``engine``; returns self."""
        engine.observer = self.observe
        return self

    def get(self, deployment: str) -> RolloutSeries | None:
        """The series of one deployment, if recorded."""
        return self._series.get(deployment)

    def rollouts(self) -> list[RolloutSeries]:
        """Every rollout recorded, in the order first seen."""
        return sorted(self._series.values(), key=lambda s: (s.first_ts, s.deployment))

    def learn(self, rollout: Rollout) -> None:
        """Take a rollout's stages from the engine (for one that was never evaluated)."""
        series = self._series.get(rollout.deployment)
        if series is not None:
            _learn(series, rollout)

    def _series_for(
        self,
        deployment: str,
        service: str,
        versions: tuple[str, str],
        policy: str,
        started_at: float,
    ) -> RolloutSeries:
        series = self._series.get(deployment)
        if series is None:
            series = RolloutSeries(
                deployment, service, versions[0], versions[1], policy, started_at
            )
            self._series[deployment] = series
            if self.max_rollouts is not None and len(self._series) > self.max_rollouts:
                self._series.popitem(last=False)
        else:
            self._series.move_to_end(deployment)
        return series

    def observe(self, rollout: Rollout, now: float, evidence: list[Evidence]) -> None:
        """The engine's observer: record one evaluation (never raises)."""
        try:
            self._observe(rollout, now, evidence)
        except Exception:  # a report must never refuse an event the engine accepted
            self.failures += 1

    def _observe(self, rollout: Rollout, now: float, evidence: list[Evidence]) -> None:
        series = self._series_for(
            rollout.deployment,
            rollout.service,
            (rollout.baseline_version, rollout.canary_version),
            rollout.policy.name,
            rollout.started_at,
        )
        if not series.stages:
            _learn(series, rollout)
        if series.ticks and now < series.ticks[-1].ts:
            series._rewind(now)
        baseline, canary = rollout.stage_requests
        last = series._last_counts
        if last is not None and last[0] == rollout.stage_started_at:
            delta = (canary - last[1], baseline - last[2])
        else:
            delta = (canary, baseline)
        series._last_counts = (rollout.stage_started_at, canary, baseline)
        series.ticks.append(
            TickPoint(
                now,
                rollout.stage,
                rollout.traffic_percent,
                rollout.phase.value,
                max(delta[0], 0),
                max(delta[1], 0),
            )
        )
        for found in evidence:
            self._check_point(series, found, now)
        if self.max_points is not None and series._point_count() > self.max_points:
            series._thin()

    @staticmethod
    def _check_point(series: RolloutSeries, found: Evidence, now: float) -> None:
        unit = found.unit
        check = series.checks.get(unit.name)
        if check is None:
            check = series.checks[unit.name] = CheckSeries(unit.name, unit.kind, unit.critical)
        reason = found.reason()
        upper = unit.interval_upper(found) if found.verdict is not None else None
        check.points.append(
            CheckPoint(
                ts=now,
                verdict=None if found.verdict is None else found.verdict.value,
                estimate=_finite(reason.estimate),
                lower=_finite(reason.lower),
                upper=_finite(upper),
                tolerance=_finite(reason.tolerance),
                bound=_finite(reason.advance_tolerance),
                e_value=_finite(reason.e_value),
                threshold=_finite(reason.threshold),
                canary_samples=reason.canary_samples,
                baseline_samples=reason.baseline_samples,
            )
        )

    def decided(self, decision: Decision) -> None:
        """Record a decision the engine took (a copy seen again replaces the first)."""
        try:
            series = self._series_for(
                decision.deployment,
                decision.service,
                (decision.baseline_version, decision.canary_version),
                decision.policy,
                decision.ts,
            )
            kept = series.decisions
            while kept and kept[-1].seq >= decision.seq:
                kept.pop()
            kept.append(decision)
        except Exception:  # see observe
            self.failures += 1
