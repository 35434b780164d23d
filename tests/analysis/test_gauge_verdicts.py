"""Gauge checks and the reasons of every mean-difference check (gauges, typical latency).

A gauge's window averages each cohort's samples over the whole window (not tick by tick);
the canary-minus-baseline difference of a window, signed by the check's direction, is one
observation. The verdicts follow from the check's own tolerances and minimum of windows; the
reason reports the mean, its bounds and the tolerance in force in the check's units.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from canarystream.analysis.checks import (
    CheckGroup,
    Gate,
    GaugeCheck,
    GaugeUnit,
    LatencyShiftCheck,
    LatencyShiftUnit,
    Tick,
)
from canarystream.analysis.checks.shapes import MeanDifferenceUnit
from canarystream.analysis.cohort import CohortBucket
from canarystream.analysis.sequential import MeanSequence
from canarystream.contracts.decision import Verdict
from canarystream.readable import change
from canarystream.readable import number as shown_number

T0 = 1_790_000_000.0
ADVANCING = Gate(ready=True, next_share=0.5, promoting=False, alpha=0.1)
PROMOTING = Gate(ready=True, next_share=1.0, promoting=True, alpha=0.05)
NOT_READY = Gate(ready=False, next_share=0.5, promoting=False, alpha=0.1)


def _gauges(**values: list[float]) -> CohortBucket:
    bucket = CohortBucket()
    for name, samples in values.items():
        for value in samples:
            bucket.add_metric(name, value)
    return bucket


def _gauge_unit(check: GaugeCheck, alpha: float = 0.05) -> GaugeUnit:
    (unit,) = CheckGroup(check, alpha=alpha, trackers={}).units.values()
    assert isinstance(unit, GaugeUnit)
    return unit


def _windows(unit: GaugeUnit, diffs: list[float], base: float = 0.5) -> None:
    """One tick a window (the check's window is 5 s), canary = baseline + diff (one canary
    sample and two baseline samples a window)."""
    if unit.window_end is None:  # the first tick opens the first window
        unit.update(Tick(_gauges(), _gauges(), {}, T0))
    assert unit.window_end is not None
    start = unit.window_end - 5.0
    for k, diff in enumerate(diffs):
        canary, baseline = _gauges(cpu=[base + diff]), _gauges(cpu=[base, base])
        unit.update(Tick(canary, baseline, {}, start + 5.0 * (k + 1)))


def test_a_window_averages_its_samples_over_all_its_ticks() -> None:
    unit = _gauge_unit(GaugeCheck(metric="cpu", window=10))
    unit.update(Tick(_gauges(cpu=[1.0, 3.0]), _gauges(cpu=[2.0]), {}, T0))  # opens to T0 + 10
    assert unit.window == [4.0, 2.0, 2.0, 1.0]
    assert unit.diffs.count == 0
    unit.update(Tick(_gauges(cpu=[5.0]), _gauges(cpu=[2.0, 2.0, 5.0]), {}, T0 + 5.0))
    assert unit.diffs.count == 0
    unit.update(Tick(_gauges(cpu=[3.0]), _gauges(), {}, T0 + 10.0))  # closes at its end

    # canary 12 / 4 = 3 (the mean of the tick means would be 3.67); baseline 11 / 4 = 2.75
    assert unit.diffs.count == 1
    assert unit.diffs.mean == pytest.approx(0.25, rel=1e-12)
    assert unit.window == [0.0, 0.0, 0.0, 0.0]
    assert unit.window_end == T0 + 20.0
    assert unit.samples == [4, 4]


def test_a_window_without_one_cohort_gives_no_difference_and_starts_afresh() -> None:
    unit = _gauge_unit(GaugeCheck(metric="cpu", window=10))
    unit.update(Tick(_gauges(cpu=[9.0]), _gauges(mem=[1.0]), {}, T0))
    unit.update(Tick(_gauges(cpu=[9.0]), _gauges(), {}, T0 + 10.0))
    assert unit.diffs.count == 0
    unit.update(Tick(_gauges(cpu=[1.0]), _gauges(cpu=[1.5]), {}, T0 + 15.0))
    unit.update(Tick(_gauges(cpu=[1.0]), _gauges(cpu=[1.5]), {}, T0 + 20.0))

    assert unit.diffs.count == 1
    assert unit.diffs.mean == pytest.approx(-0.5, rel=1e-12)
    assert unit.samples == [4, 2]


def test_only_the_check_s_own_metric_counts() -> None:
    unit = _gauge_unit(GaugeCheck(metric="cpu", window=5))
    unit.update(Tick(_gauges(mem=[5.0]), _gauges(mem=[1.0]), {}, T0))
    unit.update(Tick(_gauges(mem=[5.0]), _gauges(mem=[1.0]), {}, T0 + 5.0))

    assert (unit.samples, unit.diffs.count) == ([0, 0], 0)
    assert unit.evaluate(ADVANCING).verdict is None


@pytest.mark.parametrize(("direction", "sign"), [("increase", 1.0), ("decrease", -1.0)])
def test_the_direction_says_which_difference_is_a_regression(direction: str, sign: float) -> None:
    rng = np.random.default_rng(8)
    diffs = (0.3 + rng.normal(0.0, 0.02, 12)).tolist()  # the canary 0.3 higher
    unit = _gauge_unit(GaugeCheck(metric="cpu", window=5, direction=direction))
    _windows(unit, diffs)

    assert unit.diffs.mean == pytest.approx(sign * float(np.mean(diffs)), rel=1e-9)
    verdict = unit.evaluate(ADVANCING).verdict
    assert verdict is (Verdict.FAIL if sign > 0 else Verdict.PASS)


def test_the_tolerance_and_the_advance_tolerance_are_the_check_s() -> None:
    diffs = [0.2 + e for e in (0.01, -0.01, 0.02, -0.02) * 5]  # a mean of 0.2
    loose = _gauge_unit(GaugeCheck(metric="cpu", window=5, tolerance=0.2, advance_tolerance=0.3))
    tight = _gauge_unit(GaugeCheck(metric="cpu", window=5, tolerance=0.1, advance_tolerance=0.3))
    strict = _gauge_unit(GaugeCheck(metric="cpu", window=5, tolerance=0.2, advance_tolerance=0.2))
    for unit in (loose, tight, strict):
        _windows(unit, diffs)
    assert loose.diffs.radius(PROMOTING.alpha) < 0.1

    assert loose.evaluate(ADVANCING).verdict is Verdict.PASS
    assert loose.evaluate(ADVANCING).bound == 0.3
    assert tight.evaluate(ADVANCING).verdict is Verdict.FAIL
    # Promotion needs the bound within the tolerance itself: 0.2 plus a radius is not.
    promoted = loose.evaluate(PROMOTING)
    assert (promoted.verdict, promoted.bound) == (Verdict.INCONCLUSIVE, 0.2)
    assert strict.evaluate(ADVANCING).verdict is Verdict.INCONCLUSIVE


def test_a_verdict_waits_for_the_check_s_minimum_of_windows() -> None:
    diffs = [0.5, 0.52, 0.49, 0.51, 0.5, 0.48]
    for windows in (3, 4, 6):
        unit = _gauge_unit(GaugeCheck(metric="cpu", window=5, min_windows=windows))
        _windows(unit, diffs[: windows - 1])
        assert unit.evaluate(ADVANCING).verdict is Verdict.INCONCLUSIVE
        _windows(unit, diffs[windows - 1 : windows])
        assert unit.evaluate(ADVANCING).verdict is Verdict.FAIL


def test_a_gauge_check_is_not_critical_unless_said() -> None:
    assert _gauge_unit(GaugeCheck(metric="cpu")).critical is False
    assert _gauge_unit(GaugeCheck(metric="cpu", critical=True)).critical is True
    assert GaugeCheck(metric="cpu").default_name() == "gauge-cpu"
    assert GaugeCheck().default_name() == "gauges"


def test_the_reason_of_a_gauge() -> None:
    rng = np.random.default_rng(5)
    diffs = (0.02 + rng.normal(0.0, 0.01, 8)).tolist()
    unit = _gauge_unit(GaugeCheck(metric="cpu", window=5, tolerance=0.05, advance_tolerance=0.1))
    _windows(unit, diffs)
    evidence = unit.evaluate(ADVANCING)
    reason = evidence.reason()
    mean, lower = (
        unit.diffs.mean,
        unit.diffs.mean - unit.diffs.radius(unit.alpha / 2),
    )  # the whole stream: half of alpha
    upper = mean + unit.diffs.radius(ADVANCING.alpha)

    assert evidence.verdict is Verdict.PASS
    assert (reason.check, reason.kind, reason.critical) == ("gauge-cpu", "gauge", False)
    assert (reason.canary_samples, reason.baseline_samples) == (8, 16)
    assert reason.estimate == pytest.approx(float(np.mean(diffs)), rel=1e-9)
    assert reason.lower == pytest.approx(lower, rel=1e-12)
    assert reason.upper == pytest.approx(upper, rel=1e-12)
    assert (reason.tolerance, reason.advance_tolerance) == (0.05, 0.1)
    assert reason.message == (
        f"cpu: canary-minus-baseline increase {shown_number(mean)} over 8 windows "
        f"[{shown_number(lower)}, {shown_number(upper)}], tolerance 0.05"
    )
    promoting = unit.evaluate(PROMOTING).reason()
    assert promoting.advance_tolerance == 0.05  # the promote limit: the tolerance itself
    decrease = _gauge_unit(GaugeCheck(metric="cpu", window=5, direction="decrease"))
    _windows(decrease, diffs)
    assert (
        decrease.evaluate(ADVANCING)
        .reason()
        .message.startswith("cpu: canary-minus-baseline decrease -")
    )


def _shift_unit(ticks: int, factor: float, seed: int = 1) -> LatencyShiftUnit:
    rng = np.random.default_rng(seed)
    check = LatencyShiftCheck(tolerance=0.05, advance_tolerance=0.2, min_ticks=3)
    (unit,) = CheckGroup(check, alpha=0.02, trackers={}).units.values()
    assert isinstance(unit, LatencyShiftUnit)
    for k in range(ticks):
        canary, baseline = CohortBucket(), CohortBucket()
        for value in rng.lognormal(np.log(80.0 * factor), 0.2, 30):
            canary.requests.add(float(value), 200)
        for value in rng.lognormal(np.log(80.0), 0.2, 30):
            baseline.requests.add(float(value), 200)
        unit.update(Tick(canary, baseline, {}, T0 + 5.0 * k))
    return unit


def test_the_reason_of_a_typical_latency_shift_is_in_relative_change() -> None:
    unit = _shift_unit(ticks=10, factor=1.03)
    evidence = unit.evaluate(ADVANCING)
    reason = evidence.reason()
    mean, radius = (
        unit.diffs.mean,
        unit.diffs.radius(unit.alpha / 2),
    )  # the whole stream: half of alpha
    upper = mean + unit.diffs.radius(ADVANCING.alpha)

    assert reason.estimate == pytest.approx(math.expm1(mean), rel=1e-12)
    assert reason.lower == pytest.approx(math.expm1(mean - radius), rel=1e-12)
    assert evidence.upper == pytest.approx(upper, rel=1e-12)
    assert reason.upper == pytest.approx(math.expm1(upper), rel=1e-12)
    assert (reason.tolerance, reason.advance_tolerance) == (0.05, 0.2)
    assert (reason.canary_samples, reason.baseline_samples) == (300, 300)
    assert reason.message == (
        f"typical latency canary vs baseline {change(math.exp(mean))} over 10 ticks "
        f"[{change(math.exp(mean - radius))}, {change(math.exp(upper))}], tolerance +5%"
    )
    promoting = unit.evaluate(PROMOTING).reason()
    assert promoting.advance_tolerance == pytest.approx(0.075, rel=1e-12)


@pytest.mark.parametrize(("ticks", "has_interval"), [(1, False), (2, True)])
def test_an_interval_needs_two_ticks(ticks: int, has_interval: bool) -> None:
    unit = _shift_unit(ticks=ticks, factor=1.0)
    evidence = unit.evaluate(NOT_READY)  # too few ticks for a verdict: no bound tested
    assert (evidence.verdict, evidence.upper) == (Verdict.INCONCLUSIVE, None)
    reason = evidence.reason()

    assert reason.estimate == pytest.approx(math.expm1(unit.diffs.mean), rel=1e-12)
    if has_interval:
        upper = unit.diffs.mean + unit.diffs.radius(NOT_READY.alpha)
        assert unit.interval_upper(evidence) == pytest.approx(math.expm1(upper), rel=1e-12)
        assert reason.lower is not None
        assert f", {change(math.exp(upper))}], tolerance" in reason.message
    else:
        assert unit.interval_upper(evidence) is None
        assert reason.lower is None
        assert "[n/a, n/a]" in reason.message


def test_no_tick_with_both_cohorts_has_no_estimate() -> None:
    unit = _shift_unit(ticks=0, factor=1.0)
    canary = CohortBucket()
    canary.requests.add(80.0, 200)
    unit.update(Tick(canary, CohortBucket(), {}, T0))
    reason = unit.evaluate(ADVANCING).reason()

    assert (reason.verdict, reason.estimate, reason.lower, reason.upper) == (
        Verdict.INCONCLUSIVE,
        None,
        None,
        None,
    )
    assert reason.message.startswith("typical latency canary vs baseline n/a over 0 ticks")
    assert isinstance(unit, MeanDifferenceUnit)


@pytest.mark.parametrize(
    ("canary", "baseline", "counted"),
    [(2, 2, 1), (1, 2, 0), (2, 1, 0), (3, 5, 1)],
)
def test_a_tick_gives_a_difference_from_two_requests_in_each_cohort(
    canary: int, baseline: int, counted: int
) -> None:
    (unit,) = CheckGroup(LatencyShiftCheck(), alpha=0.01, trackers={}).units.values()
    assert isinstance(unit, LatencyShiftUnit)
    c, b = CohortBucket(), CohortBucket()
    for k in range(canary):
        c.requests.add(90.0 + k, 200)
    for k in range(baseline):
        b.requests.add(60.0 + k, 200)
    unit.update(Tick(c, b, {}, T0))

    assert unit.diffs.count == counted
    assert unit.samples == [canary, baseline]


def test_the_confidence_sequences_are_tuned_for_thirty_ticks_and_twenty_windows() -> None:
    """A radius is that of the mean's confidence sequence tuned to be tightest after 30
    differences for typical latency (a tick each) and 20 for gauges (a window each)."""
    rng = np.random.default_rng(9)
    (shift,) = CheckGroup(LatencyShiftCheck(), alpha=0.01, trackers={}).units.values()
    gauge = _gauge_unit(GaugeCheck(metric="cpu", window=5))
    assert isinstance(shift, LatencyShiftUnit)
    tuned = {30: MeanSequence(target=30), 20: MeanSequence(target=20)}
    for k in range(12):
        c, b = rng.lognormal(4.4, 0.3, 8), rng.lognormal(4.3, 0.3, 8)
        shift.update(Tick(_latency_bucket(c), _latency_bucket(b), {}, T0 + 5.0 * k))
        tuned[30].update(float(np.log1p(c).mean() - np.log1p(b).mean()))
    diffs = (0.1 + rng.normal(0.0, 0.05, 12)).tolist()
    _windows(gauge, diffs)
    for diff in diffs:
        tuned[20].update(diff)

    for unit, target in ((shift, 30), (gauge, 20)):
        for other in (target - 1, target + 1):
            assert MeanSequence(target=other).update(1.0).update(2.0).radius(0.05) != (
                MeanSequence(target=target).update(1.0).update(2.0).radius(0.05)
            )
        assert unit.diffs.radius(0.05) == pytest.approx(tuned[target].radius(0.05), rel=1e-9)


def _latency_bucket(values: np.ndarray) -> CohortBucket:
    bucket = CohortBucket()
    for value in values:
        bucket.requests.add(float(value), 200)
    return bucket
