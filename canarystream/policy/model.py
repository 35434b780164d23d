"""The rollout policy: stages, checks, guards and the statistical budget.

Every field has a default; the built-in default policy is ``Policy()``. Durations accept
seconds (``360``) or strings such as ``"6m"``, ``"90s"``, ``"1h"``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from canarystream.analysis.checks import (
    Check,
    CheckKind,
    Direction,
    ErrorRateCheck,
    GaugeCheck,
    LatencyCheck,
    LatencyShiftCheck,
    ProbeCheck,
    SloErrorRateCheck,
    SloLatencyCheck,
    check_name,
)
from canarystream.analysis.checks.base import (
    MAX_DURATION,
    MAX_RATIO,
    MAX_UNITS_PER_CHECK,
    Breakdown,
    Duration,
    parse_duration,
    parse_status_set,
)
from canarystream.analysis.checks.base import StrictModel as _Strict

__all__ = [
    "MAX_CHECKS",
    "MAX_DURATION",
    "MAX_STAGES",
    "MAX_TICK",
    "MAX_TICKS_PER_WINDOW",
    "MAX_UNITS_PER_CHECK",
    "MAX_UNITS_PER_SECOND",
    "MIN_TICK",
    "Admission",
    "Breakdown",
    "Check",
    "CheckKind",
    "Direction",
    "ErrorRateCheck",
    "GaugeCheck",
    "Guards",
    "LatencyCheck",
    "LatencyShiftCheck",
    "LowTrafficRule",
    "Policy",
    "ProbeCheck",
    "RollbackVerification",
    "SloErrorRateCheck",
    "SloLatencyCheck",
    "Stage",
    "check_name",
    "parse_duration",
    "parse_status_set",
]

# Bounds that keep every rollout's work and memory finite whatever a policy says: the engine
# closes ticks one by one, so the tick and the ticks per window bound the work per second of
# event time; the numbers of stages and checks bound the units evaluated at each tick.
MIN_TICK = 0.1
"""Shortest tick (s)."""
MAX_TICK = 300.0
"""Longest tick (s)."""
MAX_TICKS_PER_WINDOW = 10_000
"""Most ticks in one window (a gauge window, the rollback verification window)."""
MAX_STAGES = 100
"""Most stages in a policy."""
MAX_CHECKS = 32
"""Most checks in a policy."""
MAX_UNITS_PER_SECOND = 250
"""Most check units evaluated per second of event time (units that may exist / tick)."""
_MAX_RATIO = MAX_RATIO
_MAX_SAMPLES = 10**9
_MIN_ALPHA = 1e-6
_MAX_CONFIDENCE = 0.9999


class Stage(_Strict):
    """One step of the traffic plan."""

    traffic_percent: float = Field(gt=0, le=100, description="Canary share of traffic, %.")
    min_duration: Duration = Field(
        default=360.0,
        le=MAX_DURATION,
        description="Least event time spent at this stage (s); at least one tick.",
    )
    max_duration: Duration | None = Field(
        default=None,
        le=MAX_DURATION,
        description="Stage deadline (s); absent means 3 x min_duration. A failing "
        "non-critical check rolls back here; inconclusive evidence holds for a human.",
    )
    min_samples: int = Field(
        default=100,
        ge=0,
        le=_MAX_SAMPLES,
        description="Least requests per cohort in this stage before advancing.",
    )
    approval: bool = Field(
        default=False, description="Wait for a deployment_approved event before leaving."
    )

    @property
    def deadline(self) -> float:
        """Stage deadline in seconds after the stage began."""
        return self.max_duration if self.max_duration is not None else 3 * self.min_duration

    @model_validator(mode="after")
    def _deadline_after_minimum(self) -> Stage:
        if self.max_duration is not None and self.max_duration < self.min_duration:
            raise ValueError("max_duration must be at least min_duration")
        return self


class DriftGuard(_Strict):
    """Hold while the baseline itself degrades (a shared incident, not the canary)."""

    enabled: bool = True
    threshold: float = Field(
        default=20.0,
        gt=0,
        le=1e6,
        description="Page-Hinkley threshold on the cumulative standardised excess; lower is "
        "more sensitive (20: no false alarm in 30 min of simulated steady traffic).",
    )
    allowance: float = Field(
        default=1.0, ge=0, le=1000, description="Shift (in standard errors) tolerated per tick."
    )
    cooldown: Duration = Field(
        default=120.0, le=MAX_DURATION, description="Hold this long after a shift (s)."
    )


class SampleRatioGuard(_Strict):
    """Hold while the canary's share of requests differs from the routed share."""

    enabled: bool = True
    tolerance: float = Field(
        default=0.25, gt=0, lt=1, description="Relative deviation of the share that is tolerated."
    )
    alpha: float = Field(default=0.001, ge=_MIN_ALPHA, lt=0.5)
    settle: Duration = Field(
        default=30.0, le=MAX_DURATION, description="Ignore this long after a traffic change."
    )


class NoDataGuard(_Strict):
    """What to do when the canary sends no telemetry."""

    hold_after: Duration = Field(
        default=120.0, le=MAX_DURATION, description="Hold after this long silent (s)."
    )
    rollback_after: Duration = Field(
        default=600.0, le=MAX_DURATION, description="Roll back after this long (s)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> NoDataGuard:
        if self.rollback_after < self.hold_after:
            raise ValueError("rollback_after must be at least hold_after")
        return self


class Guards(_Strict):
    """Conditions that HOLD a rollout rather than judge it."""

    baseline_drift: DriftGuard = DriftGuard()
    sample_ratio: SampleRatioGuard = SampleRatioGuard()
    no_data: NoDataGuard = NoDataGuard()


class Admission(_Strict):
    """Which event times a rollout accepts, and how its event-time clock moves.

    A rollout's clock is a watermark that no single event and no minority of producers can
    drag: an event stamped inside the open tick is applied at once; one stamped in a later
    tick (up to ``max_skew`` ahead) waits until ``witnesses`` such events have arrived net of
    those still landing in the open tick, and only then does the clock move; one stamped
    further ahead is rejected (``ts_out_of_range``) unless ``gap_witnesses`` of them arrive
    net of in-range ones (every producer came back after a real gap), which moves the clock
    over the gap. Events stamped before the rollout's start minus ``grace`` are rejected.
    """

    grace: Duration = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="Telemetry stamped up to this long before the announcement is accepted.",
    )
    max_skew: Duration = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="How far ahead of the rollout's clock an event may be stamped.",
    )
    witnesses: int = Field(
        default=8,
        ge=1,
        le=1_000,
        description="Events past a tick boundary (net of events still inside the open tick) "
        "that move the clock past it.",
    )
    gap_witnesses: int = Field(
        default=16,
        ge=2,
        le=10_000,
        description="Events beyond max_skew (net of in-range events) that show a real gap.",
    )
    idle_after: Duration = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="A rollout without telemetry this far behind the input's time (other "
        "rollouts' clocks, or heartbeats) is moved on, so no-data deadlines are reached.",
    )
    max_pending: int = Field(
        default=50_000,
        ge=1,
        le=1_000_000,
        description="Events waiting for the clock to reach their tick; more are rejected.",
    )


class RollbackVerification(_Strict):
    """After a rollback: watch the service until it is back at its baseline levels.

    The reference is the baseline cohort during the rollout. Over ``window`` after the
    rollback the service's error rate and mean log latency are compared with it; the service
    is not recovering when the error rate's lower confidence bound exceeds the reference
    times ``error_ratio_tolerance``, or typical latency is above the reference by more than
    ``latency_tolerance`` with the same confidence.
    """

    window: Duration = Field(
        default=300.0,
        gt=0,
        le=MAX_DURATION,
        description="How long to watch (s); from one tick to 10,000 ticks.",
    )
    error_ratio_tolerance: float = Field(
        default=1.5, ge=1.0, le=_MAX_RATIO, description="Allowed error-rate ratio to the reference."
    )
    error_abs_margin: float = Field(
        default=0.001, ge=0.0, le=1.0, description="Plus this absolute error rate."
    )
    latency_tolerance: float = Field(
        default=0.1, ge=0.0, le=10, description="Allowed relative rise of typical latency."
    )
    confidence: float = Field(default=0.95, gt=0.5, le=_MAX_CONFIDENCE)
    min_requests: int = Field(
        default=100,
        ge=1,
        le=_MAX_SAMPLES,
        description="Fewer requests in the window: not shown to recover.",
    )


class LowTrafficRule(_Strict):
    """Move on when the traffic is too low to show no harm in time: a weaker, stated guarantee.

    At a stage whose minimum duration and samples are met, when some check is inconclusive
    (none failing, none leaning toward harm) and waiting is not expected to change that by the
    stage's deadline (an inconclusive check has no estimate of the samples it needs, or needs
    more than the time left brings at its current rate; or the deadline has passed), the
    rollout does not wait for a person:

    * an intermediate stage advances: rollback tests go on at the next share, and the
      inconclusive checks are named in the decision;
    * the last stage promotes only if each inconclusive check rules out a wider bound at
      ``promote_confidence``: a rate ratio (errors, probes) ``error_ratio``; a latency
      quantile, typical latency or gauge its ``advance_tolerance``; an SLO check is never
      relaxed. A latency quantile that cannot
      be judged at all (its baseline threshold needs more baseline traffic than there is) is
      waived if ``waive_unjudged_quantiles`` and a lower quantile of the same latency passed or
      ruled out its bound; the decision names it and what covered it.

    A check *leans toward harm* when it did at its own gate (a ratio whose blast-radius margin
    did not apply, see ``Evidence.leaning``), when its change detector's evidence against its
    tolerance reaches ``lean_e_value`` (a difference check: its lower bound at
    ``1 / lean_e_value`` exceeds the tolerance) or its point estimate lies beyond the bound the
    rule would ask it to rule out; then the rollout waits (and holds at the deadline) as
    without the rule.
    """

    enabled: bool = Field(
        default=True,
        description="Apply the rule; false: inconclusive evidence holds the rollout at the "
        "stage's deadline for a person.",
    )
    error_ratio: float = Field(
        default=3.0,
        ge=1.0,
        le=MAX_RATIO,
        description="Error (and probe failure) rate ratio an inconclusive rate check must rule "
        "out at promote_confidence to promote under the rule (3: a canary with errors x3 is "
        "not promoted; a healthy one at 1 % errors and 2 req/s rules it out by 30 minutes in "
        "about 90 % of runs, by 45 in all but a few).",
    )
    waive_unjudged_quantiles: bool = Field(
        default=True,
        description="At promotion, waive a latency quantile with no baseline threshold (too "
        "little baseline traffic to estimate it) when a lower quantile of the same latency "
        "passed or ruled out its bound.",
    )
    lean_e_value: float = Field(
        default=10.0,
        gt=1.0,
        le=1e6,
        description="Evidence against a check's tolerance at which it leans toward harm "
        "(10: the advance level of 1 / (1 - 0.9)); a leaning check is never passed over.",
    )


def _default_stages() -> list[Stage]:
    return [Stage(traffic_percent=p, min_duration=360.0) for p in (1, 5, 10, 25, 50)]


def _default_checks() -> list[Any]:
    return [
        ErrorRateCheck(),
        LatencyShiftCheck(),
        LatencyCheck(quantile=0.5),
        LatencyCheck(quantile=0.9),
        LatencyCheck(quantile=0.99),
        GaugeCheck(),
    ]


class Policy(_Strict):
    """How a rollout proceeds and how the canary is judged."""

    name: str = Field(default="default", min_length=1, max_length=128)
    description: str = Field(default="", max_length=4096)
    alpha: float = Field(
        default=0.05,
        ge=_MIN_ALPHA,
        lt=0.5,
        description="False-rollback budget for the whole rollout, shared by all checks: the "
        "chance that a check's change detector ever fails a canary with no regression beyond "
        "its tolerance, however long the rollout runs and whenever a regression may start.",
    )
    advance_confidence: float = Field(
        default=0.9,
        gt=0.5,
        le=_MAX_CONFIDENCE,
        description="Confidence of the upper bounds that must show no harm before advancing.",
    )
    promote_confidence: float = Field(
        default=0.95,
        gt=0.5,
        le=_MAX_CONFIDENCE,
        description="Confidence of the upper bounds that must lie within promote_tolerance "
        "before promoting: the one step that is not followed by more checking.",
    )
    tick: Duration = Field(
        default=5.0,
        ge=MIN_TICK,
        le=MAX_TICK,
        description="Event-time step at which checks are evaluated (s); every window and "
        "duration of the policy is at least one tick.",
    )
    baseline_mode: Literal["stable", "paired"] = Field(
        default="stable",
        description="stable: the baseline cohort is all other traffic, so the canary's expected "
        "share of cohort requests is the stage's traffic %; paired: a baseline of the same size "
        "as the canary, so the expected share is 50 %.",
    )
    stages: list[Stage] = Field(
        default_factory=_default_stages, min_length=1, max_length=MAX_STAGES
    )
    checks: list[Check] = Field(
        default_factory=_default_checks, min_length=1, max_length=MAX_CHECKS
    )
    guards: Guards = Guards()
    deadline: Duration | None = Field(
        default=None,
        le=MAX_DURATION,
        description="Overall rollout deadline (s); absent means none.",
    )
    rollback_verification: RollbackVerification = RollbackVerification()
    low_traffic: LowTrafficRule = Field(
        default_factory=LowTrafficRule,
        description="Moving on, under a weaker guarantee stated in the decision, when checks "
        "are still inconclusive at a stage's minimum duration (too little traffic).",
    )
    admission: Admission = Admission()
    actuation_deadline: Duration | None = Field(
        default=60.0,
        gt=0,
        le=MAX_DURATION,
        description="Once a rollout has observed its routing (traffic_shifted events from the "
        "actuators), a decision that changes the canary's share and is not observed as applied "
        "within this much event time (s) holds the rollout and pages (judged each tick); null "
        "means decisions are not awaited (a backtest: the recording's routing is what was "
        "routed).",
    )

    @field_validator("stages")
    @classmethod
    def _increasing(cls, stages: list[Stage]) -> list[Stage]:
        for index in range(1, len(stages)):
            if stages[index].traffic_percent <= stages[index - 1].traffic_percent:
                raise ValueError(
                    f"stage {index} traffic_percent ({stages[index].traffic_percent}) must be "
                    f"greater than stage {index - 1}'s ({stages[index - 1].traffic_percent})"
                )
        return stages

    @model_validator(mode="after")
    def _skew_covers_ticks(self) -> Policy:
        if self.admission.max_skew < 2 * self.tick:
            raise ValueError(
                f"admission.max_skew ({self.admission.max_skew:g} s) must be at least two "
                f"ticks ({2 * self.tick:g} s)"
            )
        return self

    @model_validator(mode="after")
    def _windows_fit_the_tick(self) -> Policy:
        # Each window and duration is at least one tick (a shorter one cannot be honoured by
        # decisions taken once a tick, and a window far below the tick would be stepped
        # through without end), and a window holds at most MAX_TICKS_PER_WINDOW ticks.
        tick = self.tick
        spans: list[tuple[str, float | None, bool]] = []
        for index, stage in enumerate(self.stages):
            spans.append((f"stages.{index}.min_duration", stage.min_duration, False))
            spans.append((f"stages.{index}.max_duration", stage.max_duration, False))
        for index, check in enumerate(self.checks):
            for field, window in check.windows():
                spans.append((f"checks.{index}.{field}", window, True))
        no_data = self.guards.no_data
        spans += [
            ("deadline", self.deadline, False),
            ("guards.no_data.hold_after", no_data.hold_after, False),
            ("guards.no_data.rollback_after", no_data.rollback_after, False),
            ("rollback_verification.window", self.rollback_verification.window, True),
            ("admission.idle_after", self.admission.idle_after, False),
        ]
        problems = []
        for where, seconds, is_window in spans:
            if seconds is None:
                continue
            if seconds < tick:
                problems.append(f"{where}: {seconds:g} s is shorter than tick ({tick:g} s)")
            elif is_window and seconds > tick * MAX_TICKS_PER_WINDOW:
                problems.append(
                    f"{where}: {seconds:g} s is more than {MAX_TICKS_PER_WINDOW:,} ticks "
                    f"of {tick:g} s"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _work_per_second(self) -> Policy:
        # Every unit is evaluated at every tick (up to ~0.4 ms when a stage is ready): the
        # units per second of event time bound a rollout's CPU per second of its telemetry.
        units = self.max_units()
        if units > MAX_UNITS_PER_SECOND * self.tick:
            raise ValueError(
                f"checks: up to {units} check units (a breakdown or metric '*' counts "
                f"{MAX_UNITS_PER_CHECK}) evaluated every {self.tick:g} s tick is more than "
                f"{MAX_UNITS_PER_SECOND} per second of event time; use fewer checks or a "
                "longer tick"
            )
        return self

    def max_units(self) -> int:
        """The most statistical units the checks may grow to (see ``MAX_UNITS_PER_CHECK``)."""
        return sum(MAX_UNITS_PER_CHECK if c.unit_dimension() else 1 for c in self.checks)

    @model_validator(mode="after")
    def _promotion_not_laxer(self) -> Policy:
        if self.promote_confidence < self.advance_confidence:
            raise ValueError("promote_confidence must be at least advance_confidence")
        return self

    @model_validator(mode="after")
    def _names(self) -> Policy:
        named = [check_name(check) for check in self.checks]
        seen: set[str] = set()
        for index, name in enumerate(named):
            if name in seen:
                raise ValueError(f"checks.{index}: duplicate check name {name!r}; set 'name'")
            seen.add(name)
        return self
