"""Check states: each policy check becomes one or more statistical units.

A unit folds one tick of both cohorts into its sequential test and gives a verdict:

* ``FAIL`` — the e-process against "no regression beyond ``tolerance``" reached
  ``1/alpha`` (anytime-valid: looking every tick does not inflate false rollbacks);
* ``PASS`` — the anytime-valid upper confidence bound rules out a degradation beyond
  ``advance_tolerance`` (evidence of no harm, not mere absence of significance);
* ``INCONCLUSIVE`` — neither yet; ``NO_DATA`` — the canary has sent nothing for it;
* ``None`` — not applicable (neither cohort has sent anything this check looks at).

Checks with a breakdown (per endpoint or dependency) or over every gauge (``metric: '*'``)
create units as new keys appear, up to :data:`MAX_UNITS_PER_CHECK`; each unit gets an equal,
fixed share of the check's alpha so the budget holds however many keys show up.
"""

from __future__ import annotations

import math

import numpy as np

from canarystream.analysis.cohort import CohortBucket, Slice, count_in
from canarystream.analysis.sequential import MeanSequence, RatioSequence, rate_upper_bound
from canarystream.analysis.sketch import LogHistogram
from canarystream.analysis.state import Reader, State, key_to_state, reader
from canarystream.contracts.decision import CheckReason, Verdict
from canarystream.policy.model import (
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

__all__ = [
    "MAX_UNITS_PER_CHECK",
    "CheckGroup",
    "LatencyTracker",
    "Unit",
]

MAX_UNITS_PER_CHECK = 16
_BASELINE_HALF_LIFE_S = 300.0  # the latency threshold follows the baseline over ~5 minutes


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:.4g}"


class LatencyTracker:
    """Latency sketches of one slice: a decayed baseline (for thresholds) and the canary.

    Thresholds are read before the current tick's data is added, so each tick's threshold is
    fixed by the past alone (a predictable choice keeps the e-process valid).
    """

    def __init__(self, tick: float) -> None:
        self.baseline = LogHistogram()
        self.canary = LogHistogram()
        self.decay = 0.5 ** (tick / _BASELINE_HALF_LIFE_S)

    def threshold(self, quantile: float) -> float | None:
        """The baseline's current ``quantile`` once it has enough samples to estimate it."""
        if self.baseline.total < max(50.0, 10.0 / (1.0 - quantile)):
            return None
        return self.baseline.quantile(quantile)

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


class Unit:
    """One sequential test inside a check (one breakdown key or one gauge)."""

    name: str
    kind: str
    critical: bool
    alpha: float

    def fold(self, canary: CohortBucket, baseline: CohortBucket, trackers: Trackers) -> None:
        """Add one tick of both cohorts."""
        raise NotImplementedError

    def verdict(
        self, advance_alpha: float | None, next_share: float = 1.0, promoting: bool = False
    ) -> Verdict | None:
        """Current verdict; PASS is only tested when ``advance_alpha`` is given.

        ``next_share`` is the traffic share the canary would get next: the no-harm test
        weighs a possible degradation by the traffic it would reach. When ``promoting``, the
        bound must lie within ``tolerance`` itself rather than the looser
        ``advance_tolerance``: a canary is promoted only when shown to be within tolerance.
        """
        raise NotImplementedError

    def reason(
        self, advance_alpha: float, next_share: float = 1.0, promoting: bool = False
    ) -> CheckReason:
        """Full, readable account of the unit's state."""
        raise NotImplementedError

    def to_state(self) -> State:
        """The unit as plain data; ``kind`` names its class."""
        return {
            "kind": self.kind,
            "name": self.name,
            "critical": self.critical,
            "alpha": self.alpha,
        }

    @classmethod
    def from_state(cls, state: State | Reader, check: object, trackers: Trackers) -> Unit:
        """The unit :meth:`to_state` described.

        ``check`` is its group's policy check; ``trackers`` the rollout's latency trackers,
        restored first (a latency unit reports from its tracker's sketches).
        """
        r = reader(state, "Unit")
        kind = r.text("kind")
        unit_class = _UNIT_CLASSES.get(kind)
        if unit_class is None:
            raise r.fail("kind", f"unknown unit kind {kind!r}")
        unit = unit_class.__new__(unit_class)
        unit.kind, unit.name = kind, r.text("name")
        unit.critical, unit.alpha = r.flag("critical"), r.real("alpha")
        unit._restore(r, check, trackers)
        return unit

    def _restore(self, r: Reader, check: object, trackers: Trackers) -> None:
        """Set what the subclass's :meth:`to_state` adds to the base's."""
        raise NotImplementedError


Trackers = dict[tuple[str, str] | None, LatencyTracker]


def _slice(bucket: CohortBucket, key: tuple[str, str] | None) -> Slice | None:
    return bucket.requests if key is None else bucket.slices.get(key)


class RateRatioUnit(Unit):
    """Ratio of event rates (errors per request, failed probes per probe)."""

    def __init__(
        self,
        name: str,
        kind: str,
        *,
        critical: bool,
        alpha: float,
        tolerance: float,
        advance_tolerance: float,
        promote_tolerance: float,
        abs_margin: float,
    ) -> None:
        self.name, self.kind, self.critical, self.alpha = name, kind, critical, alpha
        self.tolerance = tolerance
        self.advance_tolerance = advance_tolerance
        self.promote_tolerance = promote_tolerance
        self.abs_margin = abs_margin
        self.test = RatioSequence(anchors=(tolerance, advance_tolerance))
        self.exposure = [0, 0]  # canary, baseline
        self.events = [0, 0]

    def extract(self, bucket: CohortBucket) -> tuple[int, int]:
        """(events, exposure) of one cohort in one tick."""
        raise NotImplementedError

    def fold(self, canary: CohortBucket, baseline: CohortBucket, trackers: Trackers) -> None:
        xc, nc = self.extract(canary)
        xb, nb = self.extract(baseline)
        self.exposure[0] += nc
        self.exposure[1] += nb
        self.events[0] += xc
        self.events[1] += xb
        self.test.update(xc, xb, nc, nb)

    def _passes(self, alpha: float, next_share: float, promoting: bool) -> bool:
        upper = self.test.upper_bound(alpha)
        if upper <= (self.promote_tolerance if promoting else self.advance_tolerance):
            return True
        # Blast radius: rare events at a small share cannot show a tight ratio quickly, but a
        # bound on the extra bad requests, as a share of *all* traffic at the next stage
        # (ratio bound - 1) x baseline rate x next share, within a margin is no harm either.
        base_rate = self.events[1] / self.exposure[1] if self.exposure[1] else 1.0
        if math.isfinite(upper) and (upper - 1.0) * base_rate * next_share <= self.abs_margin:
            return True
        # With no events in either cohort no ratio can be judged; the canary's own rate bounds
        # the extra bad requests too (the baseline's rate is at least 0); at promotion the next
        # share is all traffic, so the bound must be within the margin on its own.
        canary_rate = rate_upper_bound(self.events[0], self.exposure[0], alpha)
        return canary_rate * next_share <= self.abs_margin

    def verdict(
        self, advance_alpha: float | None, next_share: float = 1.0, promoting: bool = False
    ) -> Verdict | None:
        if self.exposure[0] == 0 and self.exposure[1] == 0:
            return None
        if self.exposure[0] == 0:
            return Verdict.NO_DATA
        if self.test.e_value(self.tolerance) * self.alpha >= 1.0:
            return Verdict.FAIL
        if advance_alpha is not None and self._passes(advance_alpha, next_share, promoting):
            return Verdict.PASS
        return Verdict.INCONCLUSIVE

    def reason(
        self, advance_alpha: float, next_share: float = 1.0, promoting: bool = False
    ) -> CheckReason:
        verdict = self.verdict(advance_alpha, next_share, promoting) or Verdict.NO_DATA
        e_value = self.test.e_value(self.tolerance)
        lower = self.test.lower_bound(self.alpha)
        upper = self.test.upper_bound(advance_alpha)
        estimate = self.test.estimate()
        rates = [e / n if n else None for e, n in zip(self.events, self.exposure, strict=True)]
        message = (
            f"rate canary {_fmt(rates[0])} vs baseline {_fmt(rates[1])}; ratio {_fmt(estimate)} "
            f"[{_fmt(lower)}, {_fmt(upper)}], e={_fmt(e_value)} vs {_fmt(1 / self.alpha)}, "
            f"tolerance {self.tolerance:g}"
        )
        return CheckReason(
            check=self.name,
            kind=self.kind,
            verdict=verdict,
            critical=self.critical,
            canary_samples=self.exposure[0],
            baseline_samples=self.exposure[1],
            estimate=estimate if estimate is None or math.isfinite(estimate) else None,
            lower=lower,
            upper=upper if math.isfinite(upper) else None,
            e_value=e_value,
            threshold=1.0 / self.alpha,
            tolerance=self.tolerance,
            advance_tolerance=self.advance_tolerance,
            message=message,
        )

    def to_state(self) -> State:
        return {
            **super().to_state(),
            "tolerance": self.tolerance,
            "advance_tolerance": self.advance_tolerance,
            "promote_tolerance": self.promote_tolerance,
            "abs_margin": self.abs_margin,
            "test": self.test.to_state(),
            "exposure": list(self.exposure),
            "events": list(self.events),
        }

    def _restore(self, r: Reader, check: object, trackers: Trackers) -> None:
        self.tolerance, self.advance_tolerance = r.real("tolerance"), r.real("advance_tolerance")
        self.promote_tolerance, self.abs_margin = r.real("promote_tolerance"), r.real("abs_margin")
        self.test = RatioSequence.from_state(r.child("test"))
        self.exposure, self.events = r.integers("exposure", 2), r.integers("events", 2)


class LatencyQuantileUnit(Unit):
    """Canary vs baseline latency quantile with a relative tolerance.

    Each tick, threshold ``T`` is the baseline's current ``q`` quantile (from the past). A
    canary request *exceeds* when slower than ``(1 + tolerance) T``, a baseline one when
    slower than ``T``. If the canary's quantile is within tolerance, canary exceedances are no
    more frequent per request than baseline ones, so a :class:`RatioSequence` on exceedances
    tests the quantile — with load swings and shared slowdowns cancelling as for errors. A
    second sequence at ``(1 + advance_tolerance) T`` supplies the no-harm bound.
    """

    def __init__(
        self,
        name: str,
        *,
        key: tuple[str, str] | None,
        critical: bool,
        alpha: float,
        quantile: float,
        tolerance: float,
        advance_tolerance: float,
        promote_tolerance: float,
        abs_margin: float,
    ) -> None:
        self.name, self.kind, self.critical, self.alpha = name, "latency", critical, alpha
        self.promote_tolerance = promote_tolerance
        self.abs_margin = abs_margin
        self.key = key
        self.quantile = quantile
        self.tolerance = tolerance
        self.advance_tolerance = advance_tolerance
        self.test = RatioSequence(anchors=(1.0,))
        self.no_harm = RatioSequence(anchors=(1.0,))
        self.promotable = RatioSequence(anchors=(1.0,))
        self.samples = [0, 0]
        self._tracker: LatencyTracker | None = None

    def fold(self, canary: CohortBucket, baseline: CohortBucket, trackers: Trackers) -> None:
        tracker = self._tracker = trackers[self.key]
        c, b = _slice(canary, self.key), _slice(baseline, self.key)
        nc = c.requests if c is not None else 0
        nb = b.requests if b is not None else 0
        self.samples[0] += nc
        self.samples[1] += nb
        if not nc or not nb or c is None or b is None:
            return
        threshold = tracker.threshold(self.quantile)
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

    def verdict(
        self, advance_alpha: float | None, next_share: float = 1.0, promoting: bool = False
    ) -> Verdict | None:
        if self.samples[0] == 0 and self.samples[1] == 0:
            return None
        if self.samples[0] == 0:
            return Verdict.NO_DATA
        if self.test.e_value(1.0) * self.alpha >= 1.0:
            return Verdict.FAIL
        if advance_alpha is not None:
            # Promotion must rule out (1 + promote_tolerance); earlier stages only
            # (1 + advance_tolerance).
            upper = (self.promotable if promoting else self.no_harm).upper_bound(advance_alpha)
            # Extra requests beyond (1 + advance_tolerance) x the baseline quantile, as a share
            # of all traffic at the next stage, bounded by the margin (see RateRatioUnit).
            if upper <= 1.0 or (upper - 1.0) * (1.0 - self.quantile) * next_share <= (
                self.abs_margin
            ):
                return Verdict.PASS
        return Verdict.INCONCLUSIVE

    def reason(
        self, advance_alpha: float, next_share: float = 1.0, promoting: bool = False
    ) -> CheckReason:
        verdict = self.verdict(advance_alpha, next_share, promoting) or Verdict.NO_DATA
        tracker = self._tracker
        canary_q = tracker.canary.quantile(self.quantile) if tracker else None
        baseline_q = tracker.baseline.quantile(self.quantile) if tracker else None
        change = canary_q / baseline_q - 1.0 if canary_q and baseline_q else None
        e_value = self.test.e_value(1.0)
        exceed = self.test.estimate()
        upper = self.no_harm.upper_bound(advance_alpha)
        label = f"p{self.quantile * 100:g}"
        message = (
            f"{label} canary {_fmt(canary_q)} ms vs baseline {_fmt(baseline_q)} ms "
            f"({'n/a' if change is None else f'{change:+.1%}'}); exceedance ratio at "
            f"+{self.tolerance:.0%} {_fmt(exceed)}, e={_fmt(e_value)} vs {_fmt(1 / self.alpha)}; "
            f"upper bound at +{self.advance_tolerance:.0%} {_fmt(upper)} (no harm if <= 1)"
        )
        return CheckReason(
            check=self.name,
            kind=self.kind,
            verdict=verdict,
            critical=self.critical,
            canary_samples=self.samples[0],
            baseline_samples=self.samples[1],
            estimate=change,
            upper=upper if math.isfinite(upper) else None,
            e_value=e_value,
            threshold=1.0 / self.alpha,
            tolerance=self.tolerance,
            advance_tolerance=self.advance_tolerance,
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
            "tracker": self._tracker is not None,  # linked again to the rollout's own tracker
        }

    def _restore(self, r: Reader, check: object, trackers: Trackers) -> None:
        self.key = r.key("key")  # type: ignore[assignment]
        self.quantile, self.tolerance = r.real("quantile"), r.real("tolerance")
        self.advance_tolerance = r.real("advance_tolerance")
        self.promote_tolerance, self.abs_margin = r.real("promote_tolerance"), r.real("abs_margin")
        self.test = RatioSequence.from_state(r.child("test"))
        self.no_harm = RatioSequence.from_state(r.child("no_harm"))
        self.promotable = RatioSequence.from_state(r.child("promotable"))
        self.samples = r.integers("samples", 2)
        self._tracker = None
        if r.flag("tracker"):
            if self.key not in trackers:
                raise r.fail("tracker", f"the rollout has no latency tracker for {self.key!r}")
            self._tracker = trackers[self.key]


class OneSampleRateUnit(Unit):
    """Absolute budget on a canary rate (error rate, or share of requests over a latency).

    Each canary request is an event with probability ``p``; the test is
    ``H0: p <= budget`` via a :class:`RatioSequence` on the odds ratio against the budget.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        *,
        critical: bool,
        alpha: float,
        budget: float,
        describe: str,
    ) -> None:
        self.name, self.kind, self.critical, self.alpha = name, kind, critical, alpha
        self.budget = budget
        self.describe = describe
        self.test = RatioSequence(anchors=(1.0,))
        self.events = 0
        self.samples = 0

    def extract(self, requests: Slice) -> int:
        """Canary requests in one tick that count against the budget."""
        raise NotImplementedError

    def fold(self, canary: CohortBucket, baseline: CohortBucket, trackers: Trackers) -> None:
        n = canary.requests.requests
        if n:
            x = self.extract(canary.requests)
            self.events += x
            self.samples += n
            self.test.update(x, n - x, self.budget, 1.0 - self.budget)

    def _rate(self, odds_ratio: float) -> float:
        if math.isinf(odds_ratio):
            return 1.0
        return self.budget * odds_ratio / (self.budget * odds_ratio + 1.0 - self.budget)

    def verdict(
        self, advance_alpha: float | None, next_share: float = 1.0, promoting: bool = False
    ) -> Verdict | None:
        if self.samples == 0:
            return Verdict.NO_DATA
        if self.test.e_value(1.0) * self.alpha >= 1.0:
            return Verdict.FAIL
        if advance_alpha is not None and self.test.upper_bound(advance_alpha) <= 1.0:
            return Verdict.PASS
        return Verdict.INCONCLUSIVE

    def reason(
        self, advance_alpha: float, next_share: float = 1.0, promoting: bool = False
    ) -> CheckReason:
        verdict = self.verdict(advance_alpha, next_share, promoting) or Verdict.NO_DATA
        rate = self.events / self.samples if self.samples else None
        lower = self._rate(self.test.lower_bound(self.alpha))
        upper = self._rate(self.test.upper_bound(advance_alpha))
        e_value = self.test.e_value(1.0)
        message = (
            f"canary {self.describe} {_fmt(rate)} [{_fmt(lower)}, {_fmt(upper)}] vs budget "
            f"{self.budget:g}, e={_fmt(e_value)} vs {_fmt(1 / self.alpha)}"
        )
        return CheckReason(
            check=self.name,
            kind=self.kind,
            verdict=verdict,
            critical=self.critical,
            canary_samples=self.samples,
            estimate=rate,
            lower=lower,
            upper=upper,
            e_value=e_value,
            threshold=1.0 / self.alpha,
            tolerance=self.budget,
            advance_tolerance=self.budget,
            message=message,
        )

    def to_state(self) -> State:
        return {
            **super().to_state(),
            "budget": self.budget,
            "describe": self.describe,
            "test": self.test.to_state(),
            "events": self.events,
            "samples": self.samples,
        }

    def _restore(self, r: Reader, check: object, trackers: Trackers) -> None:
        self.budget, self.describe = r.real("budget"), r.text("describe")
        self.test = RatioSequence.from_state(r.child("test"))
        self.events, self.samples = r.integer("events"), r.integer("samples")


class MeanDifferenceUnit(Unit):
    """Shared logic of checks on a stream of canary-minus-baseline differences.

    A :class:`MeanSequence` on the differences fails the check when its lower bound exceeds
    ``limit`` and passes it when its upper bound is within ``advance_limit``
    (``promote_limit`` when promoting). Subclasses decide what one difference is and how to
    show it to a person.
    """

    limit: float
    advance_limit: float
    promote_limit: float
    min_count: int
    tolerance: float
    advance_tolerance: float

    def __init__(self, target: int) -> None:
        self.diffs = MeanSequence(target=target)
        self.samples = [0, 0]

    def shown(self, value: float) -> float:
        """A difference (or bound) in the units the check's tolerance is written in."""
        return value

    def describe(self, estimate: float | None, lower: float | None, upper: float | None) -> str:
        """One readable sentence about the current estimate and bounds."""
        raise NotImplementedError

    def verdict(
        self, advance_alpha: float | None, next_share: float = 1.0, promoting: bool = False
    ) -> Verdict | None:
        if self.samples[0] == 0 and self.samples[1] == 0:
            return None
        if self.samples[0] == 0:
            return Verdict.NO_DATA
        if self.diffs.count < self.min_count:
            return Verdict.INCONCLUSIVE
        if self.diffs.mean - self.diffs.radius(self.alpha) > self.limit:
            return Verdict.FAIL
        if advance_alpha is not None:
            limit = self.promote_limit if promoting else self.advance_limit
            if self.diffs.mean + self.diffs.radius(advance_alpha) <= limit:
                return Verdict.PASS
        return Verdict.INCONCLUSIVE

    def reason(
        self, advance_alpha: float, next_share: float = 1.0, promoting: bool = False
    ) -> CheckReason:
        verdict = self.verdict(advance_alpha, next_share, promoting) or Verdict.NO_DATA
        ready = self.diffs.count >= 2
        mean = self.diffs.mean
        estimate = self.shown(mean) if self.diffs.count else None
        lower = self.shown(mean - self.diffs.radius(self.alpha)) if ready else None
        upper = self.shown(mean + self.diffs.radius(advance_alpha)) if ready else None
        return CheckReason(
            check=self.name,
            kind=self.kind,
            verdict=verdict,
            critical=self.critical,
            canary_samples=self.samples[0],
            baseline_samples=self.samples[1],
            estimate=estimate,
            lower=lower,
            upper=upper,
            tolerance=self.tolerance,
            advance_tolerance=self.advance_tolerance,
            message=self.describe(estimate, lower, upper),
        )

    def to_state(self) -> State:
        return {
            **super().to_state(),
            "tolerance": self.tolerance,
            "advance_tolerance": self.advance_tolerance,
            "limit": self.limit,
            "advance_limit": self.advance_limit,
            "promote_limit": self.promote_limit,
            "min_count": self.min_count,
            "diffs": self.diffs.to_state(),
            "samples": list(self.samples),
        }

    def _restore(self, r: Reader, check: object, trackers: Trackers) -> None:
        self.tolerance, self.advance_tolerance = r.real("tolerance"), r.real("advance_tolerance")
        self.limit, self.advance_limit = r.real("limit"), r.real("advance_limit")
        self.promote_limit, self.min_count = r.real("promote_limit"), r.integer("min_count")
        self.diffs = MeanSequence.from_state(r.child("diffs"))
        self.samples = r.integers("samples", 2)


class LatencyShiftUnit(MeanDifferenceUnit):
    """Ratio of the cohorts' geometric-mean latencies, from per-tick differences of mean logs.

    Each tick with both cohorts gives ``mean(log canary) - mean(log baseline)``; load swings
    and incidents shared by both cohorts cancel within the tick. The check fails when the lower
    bound of the mean difference exceeds ``log(1 + tolerance)``.
    """

    def __init__(self, name: str, check: LatencyShiftCheck, alpha: float) -> None:
        super().__init__(target=30)
        self.name, self.kind = name, "latency_shift"
        self.critical, self.alpha = check.critical, alpha
        self.tolerance = check.tolerance
        self.advance_tolerance = check.advance_tolerance
        self.limit = math.log1p(check.tolerance)
        self.advance_limit = math.log1p(check.advance_tolerance)
        self.promote_limit = math.log1p(check.promote_bound())
        self.min_count = check.min_ticks

    def fold(self, canary: CohortBucket, baseline: CohortBucket, trackers: Trackers) -> None:
        c, b = canary.requests, baseline.requests
        self.samples[0] += c.requests
        self.samples[1] += b.requests
        if c.requests >= 2 and b.requests >= 2:
            # log1p keeps zero latencies finite; at millisecond scale it is log(x) + tiny.
            self.diffs.update(
                float(np.log1p(c.latency_array()).mean() - np.log1p(b.latency_array()).mean())
            )

    def shown(self, value: float) -> float:
        return math.expm1(value)  # a relative change, like the tolerance

    def describe(self, estimate: float | None, lower: float | None, upper: float | None) -> str:
        change = "n/a" if estimate is None else f"{estimate:+.1%}"
        return (
            f"typical latency canary vs baseline {change} over {self.diffs.count} ticks "
            f"[{_fmt(lower)}, {_fmt(upper)}], tolerance +{self.tolerance:.0%}"
        )


class GaugeUnit(MeanDifferenceUnit):
    """Windowed difference of one gauge's cohort means, with a confidence sequence.

    Within each window both cohorts' samples are averaged; the canary-minus-baseline
    difference of a window is one observation, so swings shared by both cohorts cancel.
    """

    def __init__(self, name: str, metric: str, check: GaugeCheck, alpha: float) -> None:
        super().__init__(target=20)
        self.name, self.kind, self.critical, self.alpha = name, "gauge", check.critical, alpha
        self.metric = metric
        self.check = check
        self.tolerance = self.limit = self.promote_limit = check.tolerance
        self.advance_tolerance = self.advance_limit = check.advance_tolerance
        self.min_count = check.min_windows
        self.sign = 1.0 if check.direction is Direction.INCREASE else -1.0
        self.window = [0.0, 0.0, 0.0, 0.0]  # canary sum, count, baseline sum, count
        self.window_end: float | None = None

    def fold_at(self, canary: CohortBucket, baseline: CohortBucket, now: float) -> None:
        """Add one tick ending at ``now``; close the window when its end has passed."""
        if self.window_end is None:
            self.window_end = now + self.check.window
        for offset, bucket in ((0, canary), (2, baseline)):
            acc = bucket.metrics.get(self.metric)
            if acc is not None:
                self.window[offset] += acc[0]
                self.window[offset + 1] += acc[1]
                self.samples[offset // 2] += int(acc[1])
        if now >= self.window_end:
            c_sum, c_n, b_sum, b_n = self.window
            if c_n and b_n:
                self.diffs.update(self.sign * (c_sum / c_n - b_sum / b_n))
            self.window = [0.0, 0.0, 0.0, 0.0]
            window = self.check.window
            if now - self.window_end > window * 1_000:
                # A long gap in event time: step over it at once, not window by window.
                self.window_end += window * math.floor((now - self.window_end) / window)
            while self.window_end <= now:
                self.window_end += window

    def fold(self, canary: CohortBucket, baseline: CohortBucket, trackers: Trackers) -> None:
        raise NotImplementedError("gauges fold through CheckGroup.fold with the tick's end")

    def describe(self, estimate: float | None, lower: float | None, upper: float | None) -> str:
        worse = "increase" if self.sign > 0 else "decrease"
        return (
            f"{self.metric}: canary-minus-baseline {worse} {_fmt(estimate)} over "
            f"{self.diffs.count} windows [{_fmt(lower)}, {_fmt(upper)}], tolerance "
            f"{self.check.tolerance:g}"
        )

    def to_state(self) -> State:
        return {
            **super().to_state(),
            "metric": self.metric,
            "sign": self.sign,
            "window": list(self.window),
            "window_end": self.window_end,
        }

    def _restore(self, r: Reader, check: object, trackers: Trackers) -> None:
        super()._restore(r, check, trackers)
        if not isinstance(check, GaugeCheck):
            raise r.fail("kind", f"a gauge unit in a group of {type(check).__name__}")
        self.check = check
        self.metric, self.sign = r.text("metric"), r.real("sign")
        self.window, self.window_end = r.reals("window", 4), r.real("window_end", none=True)


class ErrorRateUnit(RateRatioUnit):
    """Error-rate ratio, overall or for one breakdown key."""

    def __init__(self, name: str, check: ErrorRateCheck, key: object, alpha: float) -> None:
        super().__init__(
            name,
            "error_rate",
            critical=check.critical,
            alpha=alpha,
            tolerance=check.tolerance,
            advance_tolerance=check.advance_tolerance,
            promote_tolerance=check.promote_bound(),
            abs_margin=check.advance_abs_margin,
        )
        self.key = key
        self.ranges = check.error_statuses

    def extract(self, bucket: CohortBucket) -> tuple[int, int]:
        found = _slice(bucket, self.key)  # type: ignore[arg-type]
        if found is None or not found.latencies:
            return 0, 0
        return count_in(found.statuses, self.ranges), found.requests

    def to_state(self) -> State:
        return {
            **super().to_state(),
            "key": key_to_state(self.key),  # type: ignore[arg-type]
            "ranges": [list(pair) for pair in self.ranges],
        }

    def _restore(self, r: Reader, check: object, trackers: Trackers) -> None:
        super()._restore(r, check, trackers)
        self.key, self.ranges = r.key("key"), r.ranges("ranges")


class ProbeUnit(RateRatioUnit):
    """Probe failure-rate ratio, for one probe or all of them pooled."""

    def __init__(self, name: str, check: ProbeCheck, alpha: float) -> None:
        super().__init__(
            name,
            "probe",
            critical=check.critical,
            alpha=alpha,
            tolerance=check.tolerance,
            advance_tolerance=check.advance_tolerance,
            promote_tolerance=check.promote_bound(),
            abs_margin=check.advance_abs_margin,
        )
        self.probe = check.probe

    def extract(self, bucket: CohortBucket) -> tuple[int, int]:
        if self.probe == "*":
            ok = sum(acc[0] for acc in bucket.probes.values())
            failed = sum(acc[1] for acc in bucket.probes.values())
        else:
            ok, failed = bucket.probes.get(self.probe, (0, 0))
        return failed, ok + failed

    def to_state(self) -> State:
        return {**super().to_state(), "probe": self.probe}

    def _restore(self, r: Reader, check: object, trackers: Trackers) -> None:
        super()._restore(r, check, trackers)
        self.probe = r.text("probe")


class SloErrorRateUnit(OneSampleRateUnit):
    """Canary error rate against an absolute budget."""

    def __init__(self, name: str, check: SloErrorRateCheck, alpha: float) -> None:
        super().__init__(
            name,
            "slo_error_rate",
            critical=check.critical,
            alpha=alpha,
            budget=check.max_error_rate,
            describe="error rate",
        )
        self.ranges = check.error_statuses

    def extract(self, requests: Slice) -> int:
        return count_in(requests.statuses, self.ranges)

    def to_state(self) -> State:
        return {**super().to_state(), "ranges": [list(pair) for pair in self.ranges]}

    def _restore(self, r: Reader, check: object, trackers: Trackers) -> None:
        super()._restore(r, check, trackers)
        self.ranges = r.ranges("ranges")


class SloLatencyUnit(OneSampleRateUnit):
    """Canary latency quantile against an absolute budget in milliseconds."""

    def __init__(self, name: str, check: SloLatencyCheck, alpha: float) -> None:
        super().__init__(
            name,
            "slo_latency",
            critical=check.critical,
            alpha=alpha,
            budget=1.0 - check.quantile,
            describe=f"share of requests over {check.max_ms:g} ms",
        )
        self.limit = check.max_ms

    def extract(self, requests: Slice) -> int:
        return int(np.count_nonzero(requests.latency_array() > self.limit))

    def to_state(self) -> State:
        return {**super().to_state(), "limit": self.limit}

    def _restore(self, r: Reader, check: object, trackers: Trackers) -> None:
        super()._restore(r, check, trackers)
        self.limit = r.real("limit")


_UNIT_CLASSES: dict[str, type[Unit]] = {
    "error_rate": ErrorRateUnit,
    "probe": ProbeUnit,
    "latency": LatencyQuantileUnit,
    "latency_shift": LatencyShiftUnit,
    "gauge": GaugeUnit,
    "slo_error_rate": SloErrorRateUnit,
    "slo_latency": SloLatencyUnit,
}
"""Unit classes by ``kind``, for :meth:`Unit.from_state`."""


class CheckGroup:
    """The units of one policy check, created as breakdown keys or gauges appear."""

    def __init__(self, check: object, alpha: float) -> None:
        self.check = check
        self.name = check_name(check)
        self.alpha = alpha
        if isinstance(check, GaugeCheck):
            self.dynamic = "metric" if check.metric == "*" else ""
        elif isinstance(check, (ErrorRateCheck, LatencyCheck)):
            self.dynamic = check.breakdown or ""
        else:
            self.dynamic = ""
        self.units: dict[object, Unit] = {}
        self.overflow = 0  # keys seen beyond the cap, reported but untested
        if not self.dynamic:
            key = check.metric if isinstance(check, GaugeCheck) else None
            self.units[key] = self._make(key)

    def unit_alpha(self) -> float:
        """Alpha of each unit: the check's, split over the most units it may ever hold."""
        return self.alpha / (MAX_UNITS_PER_CHECK if self.dynamic else 1)

    def _make(self, key: object) -> Unit:
        check, alpha = self.check, self.unit_alpha()
        if key is None or (isinstance(self.check, GaugeCheck) and not self.dynamic):
            name = self.name
        elif isinstance(key, tuple):
            name = f"{self.name}[{key[0]}={key[1]}]"
        else:
            name = f"{self.name}[{key}]"
        match check:
            case ErrorRateCheck():
                return ErrorRateUnit(name, check, key, alpha)
            case LatencyCheck():
                return LatencyQuantileUnit(
                    name,
                    key=key,  # type: ignore[arg-type]
                    critical=check.critical,
                    alpha=alpha,
                    quantile=check.quantile,
                    tolerance=check.tolerance,
                    advance_tolerance=check.advance_tolerance,
                    promote_tolerance=check.promote_bound(),
                    abs_margin=check.advance_abs_margin,
                )
            case LatencyShiftCheck():
                return LatencyShiftUnit(name, check, alpha)
            case GaugeCheck():
                return GaugeUnit(name, str(key), check, alpha)
            case ProbeCheck():
                return ProbeUnit(name, check, alpha)
            case SloErrorRateCheck():
                return SloErrorRateUnit(name, check, alpha)
            case SloLatencyCheck():
                return SloLatencyUnit(name, check, alpha)
        raise TypeError(f"unknown check {check!r}")

    def _ensure(self, key: object) -> None:
        if key not in self.units:
            if len(self.units) >= MAX_UNITS_PER_CHECK:
                self.overflow += 1
                return
            self.units[key] = self._make(key)

    def keys_in(self, *buckets: CohortBucket) -> list[object]:
        """Keys present in the buckets for this group's dynamic dimension, sorted."""
        if self.dynamic == "metric":
            names: set[str] = set()
            for bucket in buckets:
                names.update(bucket.metrics)
            return sorted(names)
        if self.dynamic:
            keys = {key for bucket in buckets for key in bucket.slices if key[0] == self.dynamic}
            return sorted(keys)
        return []

    def fold(
        self, canary: CohortBucket, baseline: CohortBucket, trackers: Trackers, now: float
    ) -> None:
        """Add one tick ending at ``now`` to every unit."""
        if self.dynamic:
            for key in self.keys_in(canary, baseline):
                self._ensure(key)
        for unit in self.units.values():
            if isinstance(unit, GaugeUnit):
                unit.fold_at(canary, baseline, now)
            else:
                unit.fold(canary, baseline, trackers)

    def to_state(self) -> State:
        """The group as plain data; its check is the policy's."""
        return {
            "name": self.name,
            "alpha": self.alpha,
            "dynamic": self.dynamic,
            "overflow": self.overflow,
            "units": [
                {"key": key_to_state(key), "unit": unit.to_state()}  # type: ignore[arg-type]
                for key, unit in self.units.items()
            ],
        }

    @classmethod
    def from_state(cls, state: State | Reader, check: object, trackers: Trackers) -> CheckGroup:
        """The group :meth:`to_state` described, for policy check ``check``."""
        r = reader(state, "CheckGroup")
        group = cls.__new__(cls)
        group.check, group.name = check, r.text("name")
        if group.name != check_name(check):
            raise r.fail("name", f"{group.name!r} is not the policy's check {check_name(check)!r}")
        group.alpha, group.dynamic = r.real("alpha"), r.text("dynamic")
        group.overflow = r.integer("overflow")
        group.units = {
            item.key("key"): Unit.from_state(item.child("unit"), check, trackers)
            for item in r.children("units")
        }
        return group
