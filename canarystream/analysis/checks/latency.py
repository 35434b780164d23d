"""Latency quantile: canary vs baseline, with a relative tolerance; the rollout's trackers."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from canarystream.analysis.checks.base import (
    Breakdown,
    CheckModel,
    Evidence,
    Gate,
    Tick,
    Trackers,
    Unit,
    check_order,
    leaning,
    samples_to_reach,
    slice_of,
)
from canarystream.analysis.cohort import Slice
from canarystream.analysis.sequential import RatioSequence
from canarystream.analysis.sketch import LogHistogram
from canarystream.analysis.state import Key, Reader, State, key_to_state, reader
from canarystream.contracts.decision import CheckReason, Verdict
from canarystream.readable import change, evidence_text, number, percent, times

__all__ = ["LatencyCheck", "LatencyQuantileUnit", "LatencyTracker"]

_BASELINE_HALF_LIFE_S = 300.0  # the latency threshold follows the baseline over ~5 minutes


class LatencyTracker:
    """Latency sketches of one slice: a decayed baseline (for thresholds) and the canary.

    Thresholds are read before the current tick's data is added, so each tick's threshold is
    fixed by the past alone (a predictable choice keeps the e-process valid).
    """

    def __init__(self, tick: float) -> None:
        self.baseline = LogHistogram()
        self.canary = LogHistogram()
        self.decay = 0.5 ** (tick / _BASELINE_HALF_LIFE_S)

    @staticmethod
    def needed(quantile: float) -> float:
        """Baseline requests the decayed sketch must hold to estimate ``quantile``."""
        return max(50.0, 10.0 / (1.0 - quantile))

    def threshold(self, quantile: float) -> float | None:
        """The baseline's current ``quantile`` once it has enough samples to estimate it."""
        if self.baseline.total < self.needed(quantile):
            return None
        return self.baseline.quantile(quantile)

    def shortfall(self, quantile: float) -> str | None:
        """Why no threshold exists for ``quantile`` yet, with the baseline rate it takes."""
        needed = self.needed(quantile)
        if self.baseline.total >= needed:
            return None
        # A steady r req/s fills the decayed sketch to r x half-life / ln 2 requests.
        rate = needed * math.log(2) / _BASELINE_HALF_LIFE_S
        return (
            f"no baseline p{quantile * 100:g} to compare with yet: its sketch holds "
            f"{self.baseline.total:,.0f} of the {needed:,.0f} requests it needs, which takes "
            f"at least {rate:.1f} baseline req/s"
        )

    def update(self, canary: Slice, baseline: Slice) -> None:
        """Add one tick of latencies."""
        if baseline.latencies:
            self.baseline.decay(self.decay).add(baseline.latency_array())
        if canary.latencies:
            self.canary.decay(self.decay).add(canary.latency_array())

    def to_state(self) -> State:
        """The tracker as plain data."""
        return {
            "baseline": self.baseline.to_state(),
            "canary": self.canary.to_state(),
            "decay": self.decay,
        }

    @classmethod
    def from_state(cls, state: State | Reader) -> LatencyTracker:
        """The tracker :meth:`to_state` described."""
        r = reader(state, "LatencyTracker")
        tracker = cls.__new__(cls)
        tracker.baseline = LogHistogram.from_state(r.child("baseline"))
        tracker.canary = LogHistogram.from_state(r.child("canary"))
        tracker.decay = r.real("decay")
        return tracker


class LatencyQuantileUnit(Unit):
    """Canary vs baseline latency quantile with a relative tolerance.

    Each tick, threshold ``T`` is the baseline's current ``q`` quantile (from the past). A
    canary request *exceeds* when slower than ``(1 + tolerance) T``, a baseline one when
    slower than ``T``. If the canary's quantile is within tolerance, canary exceedances are no
    more frequent per request than baseline ones, so a :class:`RatioSequence` on exceedances
    tests the quantile — with load swings and shared slowdowns cancelling as for errors. Two
    more sequences, at ``(1 + advance_tolerance) T`` and ``(1 + promote_tolerance) T``, supply
    the no-harm bounds for advancing and for promoting. The unit reports quantiles from the
    rollout's tracker of its slice (``tracker``, shared, not its own state).
    """

    kind = "latency"

    def __init__(
        self, name: str, check: LatencyCheck, key: Key, alpha: float, tracker: LatencyTracker
    ) -> None:
        self.name, self.critical, self.alpha = name, check.critical, alpha
        self.promote_tolerance = check.promote_bound()
        self.abs_margin = check.advance_abs_margin
        self.key = key
        self.quantile = check.quantile
        self.tolerance = check.tolerance
        self.advance_tolerance = check.advance_tolerance
        self.test = RatioSequence(anchors=(1.0,), detect=1.0)
        self.no_harm = RatioSequence(anchors=(1.0,))
        self.promotable = RatioSequence(anchors=(1.0,))
        self.samples = [0, 0]
        self.tracker = tracker

    def bound_text(self, value: float) -> str:
        return f"≤ {change(1.0 + value)}"

    def unestimated(self) -> str | None:
        return self.tracker.shortfall(self.quantile)

    def update(self, tick: Tick) -> None:
        c, b = slice_of(tick.canary, self.key), slice_of(tick.baseline, self.key)
        nc = c.requests if c is not None else 0
        nb = b.requests if b is not None else 0
        self.samples[0] += nc
        self.samples[1] += nb
        if not nc or not nb or c is None or b is None:
            return
        threshold = self.tracker.threshold(self.quantile)
        if threshold is None:
            return
        canary_ms, baseline_ms = c.latency_array(), b.latency_array()
        y = int(np.count_nonzero(baseline_ms > threshold))
        x = int(np.count_nonzero(canary_ms > threshold * (1.0 + self.tolerance)))
        self.test.update(x, y, nc, nb)
        x_harm = int(np.count_nonzero(canary_ms > threshold * (1.0 + self.advance_tolerance)))
        self.no_harm.update(x_harm, y, nc, nb)
        x_promote = int(np.count_nonzero(canary_ms > threshold * (1.0 + self.promote_tolerance)))
        self.promotable.update(x_promote, y, nc, nb)

    def evaluate(self, gate: Gate) -> Evidence:
        if self.samples[0] == 0 and self.samples[1] == 0:
            return Evidence(self, gate, None)
        if self.samples[0] == 0:
            return Evidence(self, gate, Verdict.NO_DATA)
        e_value = self.test.detector()
        if e_value * self.alpha >= 1.0:
            return Evidence(self, gate, Verdict.FAIL, e_value=e_value)
        if not gate.ready:
            return Evidence(self, gate, Verdict.INCONCLUSIVE, e_value=e_value)
        # Promotion must rule out (1 + promote_tolerance); earlier stages only
        # (1 + advance_tolerance).
        in_force = self.promotable if gate.promoting else self.no_harm
        upper = in_force.upper_bound(gate.alpha)
        # Extra requests beyond (1 + tolerance in force) x the baseline quantile, as a share
        # of all traffic at the next stage, bounded by the margin (see RateRatioUnit).
        share = (1.0 - self.quantile) * gate.next_share
        passes, why = upper <= 1.0, None
        if not passes and (upper - 1.0) * share <= self.abs_margin:
            why = self._leaning(e_value, gate)
            passes = why is None
        more = None
        estimate = in_force.estimate()
        if not passes and estimate is not None and 0.0 < estimate < math.inf:
            limit = 1.0 + self.abs_margin / share if share > 0.0 and why is None else 1.0
            more = samples_to_reach(
                self.samples[0], math.log(estimate), math.log(upper), math.log(limit)
            )
        return Evidence(
            self,
            gate,
            Verdict.PASS if passes else Verdict.INCONCLUSIVE,
            e_value=e_value,
            upper=upper,
            bound=gate.in_force(self.advance_tolerance, self.promote_tolerance),
            ruled_out=self._ruled_out(upper, gate.alpha) if gate.promoting else None,
            more=more,
            leaning=why,
        )

    def _beyond(self) -> str | None:
        """How the canary's quantile is estimated beyond the advance tolerance (None: it is
        not): its requests beyond ``(1 + advance_tolerance) T`` more frequent than baseline
        ones beyond ``T``."""
        estimate = self.no_harm.estimate()
        if estimate is None or not 1.0 < estimate < math.inf:
            return None
        return (
            f"canary requests beyond +{self.advance_tolerance:.0%} of the baseline "
            f"p{self.quantile * 100:g} {times(estimate)} as frequent as baseline ones beyond it"
        )

    def _leaning(self, e_value: float, gate: Gate) -> str | None:
        """Why the evidence leans toward harm (None: it does not); see :func:`leaning`."""
        return leaning(e_value, gate, self.test.e_value(1.0), self._beyond())

    def risk_evidence(self, evidence: Evidence, error_ratio: float) -> Evidence | None:
        # +advance_tolerance ruled out at the confidence of evidence's gate (no blast-radius
        # clause: the guarantee stated is the quantile's).
        found = self.evaluate(Gate(True, 1.0, False, evidence.gate.alpha))
        if found.verdict is Verdict.PASS and found.upper is not None and found.upper <= 1.0:
            found.ruled_out = self.advance_tolerance
        else:
            found.verdict = Verdict.INCONCLUSIVE
        return found

    def leans(self, evidence: Evidence, e_level: float, error_ratio: float) -> str | None:
        found = super().leans(evidence, e_level, error_ratio)
        return self._beyond() if found is None else found

    def latency_quantile(self) -> tuple[Key, float] | None:
        return self.key, self.quantile

    def _ruled_out(self, promotable: float, alpha: float) -> float | None:
        """The smallest relative increase of the quantile ruled out at ``alpha``: the
        tolerance, the promote or the advance tolerance, whichever sequence's bound on the
        exceedance ratio is within 1 first (None if none is)."""
        if promotable <= 1.0:
            if self.test.upper_bound(alpha) <= 1.0:
                return self.tolerance
            return self.promote_tolerance
        if self.no_harm.upper_bound(alpha) <= 1.0:
            return self.advance_tolerance
        return None

    def explain(self, evidence: Evidence) -> CheckReason:
        canary_q = self.tracker.canary.quantile(self.quantile)
        baseline_q = self.tracker.baseline.quantile(self.quantile)
        ratio = canary_q / baseline_q if canary_q and baseline_q else None
        e_value = evidence.e_value
        if e_value is None:
            e_value = self.test.detector()
        exceed = self.test.estimate()
        upper = evidence.upper
        in_force = evidence.gate.in_force(self.advance_tolerance, self.promote_tolerance)
        label = f"p{self.quantile * 100:g}"
        message = (
            f"{label} canary {number(canary_q)} ms vs baseline {number(baseline_q)} ms "
            f"({change(ratio)}); exceedance ratio at +{self.tolerance:.0%} {times(exceed)}, "
            f"{evidence_text(e_value, 1 / self.alpha)}; upper bound at +{in_force * 100:g}% "
            f"{times(upper)} (no harm at ×1 or less)"
        )
        if evidence.verdict is Verdict.PASS and upper is not None and upper > 1.0:
            message += (
                f"; no harm by blast radius: extra slow requests within "
                f"{percent(self.abs_margin)} of all traffic at {percent(evidence.gate.next_share)}"
            )
        return self.account(
            evidence,
            canary_samples=self.samples[0],
            baseline_samples=self.samples[1],
            estimate=None if ratio is None else ratio - 1.0,
            upper=upper if upper is not None and math.isfinite(upper) else None,
            e_value=e_value,
            threshold=1.0 / self.alpha,
            tolerance=self.tolerance,
            advance_tolerance=in_force,
            message=message,
        )

    def to_state(self) -> State:
        return {
            **super().to_state(),
            "key": key_to_state(self.key),
            "quantile": self.quantile,
            "tolerance": self.tolerance,
            "advance_tolerance": self.advance_tolerance,
            "promote_tolerance": self.promote_tolerance,
            "abs_margin": self.abs_margin,
            "test": self.test.to_state(),
            "no_harm": self.no_harm.to_state(),
            "promotable": self.promotable.to_state(),
            "samples": list(self.samples),
            "tracker": True,  # linked again to the rollout's own tracker
        }

    def restore(self, r: Reader, check: object, trackers: Trackers) -> None:
        self.key = r.key("key")
        self.quantile, self.tolerance = r.real("quantile"), r.real("tolerance")
        self.advance_tolerance = r.real("advance_tolerance")
        self.promote_tolerance, self.abs_margin = r.real("promote_tolerance"), r.real("abs_margin")
        self.test = RatioSequence.from_state(r.child("test"))
        self.no_harm = RatioSequence.from_state(r.child("no_harm"))
        self.promotable = RatioSequence.from_state(r.child("promotable"))
        self.samples = r.integers("samples", 2)
        r.flag("tracker")  # version 1 wrote whether the unit had been updated yet
        if self.key not in trackers:
            raise r.fail("tracker", f"the rollout has no latency tracker for {self.key!r}")
        self.tracker = trackers[self.key]


class LatencyCheck(CheckModel):
    """Canary vs baseline latency quantile, with a relative tolerance."""

    unit: ClassVar[type[LatencyQuantileUnit]] = LatencyQuantileUnit
    promote_default: ClassVar[float | None] = 0.075

    kind: Literal["latency"] = "latency"
    quantile: float = Field(default=0.99, ge=0.001, le=0.9999, description="Quantile, e.g. 0.99.")
    tolerance: float = Field(
        default=0.05, ge=0, le=10, description="Acceptable relative increase (0.05 = +5 %)."
    )
    advance_tolerance: float = Field(
        default=0.15, ge=0, le=10, description="Relative increase ruled out before advancing."
    )
    advance_abs_margin: float = Field(
        default=0.002,
        ge=0,
        le=1,
        description="Alternatively, a bound on the extra share of all requests slower than "
        "(1 + advance_tolerance) x the baseline quantile at the next stage's traffic.",
    )
    promote_tolerance: float | None = Field(
        default=None,
        ge=0,
        le=10,
        description="Relative increase the upper bound must rule out to promote; absent means "
        "+7.5 % kept within [tolerance, advance_tolerance].",
    )
    breakdown: Breakdown | None = None

    @model_validator(mode="after")
    def _advance_not_tighter(self) -> LatencyCheck:
        check_order(self.tolerance, self.promote_tolerance, self.advance_tolerance)
        return self

    def default_name(self) -> str:
        return f"{self.kind}-p{round(self.quantile * 100, 3):g}"

    def breakdown_field(self) -> str | None:
        return self.breakdown

    def make_unit(
        self, name: str, key: Key, alpha: float, trackers: Trackers
    ) -> LatencyQuantileUnit:
        return LatencyQuantileUnit(name, self, key, alpha, trackers[key])
