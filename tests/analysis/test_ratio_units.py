"""Ratio checks (error rate, latency quantile): their verdicts, numbers and reasons against an
independent account of the tests.

Each tick is a stratum: given ``x + y`` events, ``x`` is binomial with success probability
``a psi / (a psi + b)``. :class:`tests.support.mixture.MixtureOracle` accumulates that
likelihood with scipy over the unit's grid and prior and computes the e-value and the bounds
from their definitions; the Mantel-Haenszel estimate is summed here by hand. For the latency
check the exceedances are counted here too, against the baseline's quantile before each tick.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from canarystream.analysis.checks import (
    CheckGroup,
    ErrorRateCheck,
    Gate,
    LatencyCheck,
    LatencyTracker,
    Tick,
)
from canarystream.analysis.checks.latency import LatencyQuantileUnit
from canarystream.analysis.checks.shapes import RateRatioUnit
from canarystream.analysis.cohort import CohortBucket
from canarystream.contracts.decision import Verdict
from canarystream.readable import change, evidence_text, number, percent, times
from tests.support.mixture import MixtureOracle

T0 = 1_790_000_000.0
NOT_READY = Gate(ready=False, next_share=0.25, promoting=False, alpha=0.2)
ADVANCING = Gate(ready=True, next_share=0.25, promoting=False, alpha=0.2)
PROMOTING = Gate(ready=True, next_share=1.0, promoting=True, alpha=0.1)


def _bucket(requests: int, errors: int, latency: float = 40.0) -> CohortBucket:
    bucket = CohortBucket()
    for index in range(requests):
        bucket.requests.add(latency, 503 if index < errors else 200)
    return bucket


class _ErrorRun:
    """An error-rate unit fed (canary requests, errors, baseline requests, errors) ticks, and
    the oracle fed the same strata."""

    def __init__(self, check: ErrorRateCheck, alpha: float = 0.05) -> None:
        (unit,) = CheckGroup(check, alpha=alpha, trackers={}).units.values()
        assert isinstance(unit, RateRatioUnit)
        self.unit = unit
        self.oracle = MixtureOracle(unit.test.grid.psi, unit.test.grid.log_prior)
        self.mh = [0.0, 0.0]
        self.totals = [0, 0, 0, 0]
        self.ticks = 0

    def feed(self, nc: int, xc: int, nb: int, xb: int, times_: int = 1) -> _ErrorRun:
        for _ in range(times_):
            self.ticks += 1
            tick = Tick(_bucket(nc, xc), _bucket(nb, xb), {}, T0 + 5.0 * self.ticks)
            self.unit.update(tick)
            self.oracle.add(xc, xb, nc, nb)
            if nc and nb:
                self.mh[0] += xc * nb / (nc + nb)
                self.mh[1] += xb * nc / (nc + nb)
            self.totals = [a + b for a, b in zip(self.totals, (nc, xc, nb, xb), strict=True)]
        return self


@pytest.mark.parametrize(
    "strata",
    [
        [(100, 2, 900, 9)] * 6,
        [(50, 3, 450, 5), (80, 1, 720, 12), (20, 0, 180, 4), (0, 0, 300, 3), (40, 0, 0, 0)],
        [(200, 9, 200, 3)] * 5,
        [(1000, 1, 9000, 40)] * 3,
    ],
    ids=["steady", "uneven", "worse", "better"],
)
def test_error_rate_evidence_is_that_of_the_binomial_strata(
    strata: list[tuple[int, int, int, int]],
) -> None:
    check = ErrorRateCheck(tolerance=1.2, advance_tolerance=2.0, promote_tolerance=1.5)
    run = _ErrorRun(check, alpha=0.05)
    for stratum in strata:
        run.feed(*stratum)
    unit, oracle = run.unit, run.oracle
    e_value = oracle.detector(1.2)

    for gate, bound in ((ADVANCING, 2.0), (PROMOTING, 1.5)):
        evidence = unit.evaluate(gate)
        assert evidence.e_value == pytest.approx(e_value, rel=1e-9)
        if e_value * 0.05 >= 1.0:
            assert (evidence.verdict, evidence.upper) == (Verdict.FAIL, None)
            continue
        assert evidence.upper == oracle.upper(gate.alpha)
        assert evidence.bound == bound
        if evidence.upper <= bound:
            assert evidence.verdict is Verdict.PASS
    estimate = run.mh[0] / run.mh[1]
    assert unit.test.estimate() == pytest.approx(estimate, rel=1e-12)
    assert unit.test.lower_bound(0.05) == oracle.lower(0.05)
    nc, xc, nb, xb = run.totals
    assert (unit.exposure, unit.events) == ([nc, nb], [xc, xb])


def test_error_rate_verdicts_without_data_before_the_stage_is_ready_and_at_a_fail() -> None:
    check = ErrorRateCheck()
    assert _ErrorRun(check).unit.evaluate(ADVANCING).verdict is None
    baseline_only = _ErrorRun(check).feed(0, 0, 500, 5)
    assert baseline_only.unit.evaluate(ADVANCING).verdict is Verdict.NO_DATA
    assert baseline_only.unit.evaluate(ADVANCING).e_value is None
    assert baseline_only.unit.evaluate(ADVANCING).gate is ADVANCING
    no_data = baseline_only.unit.evaluate(ADVANCING).reason()
    assert (no_data.verdict, no_data.canary_samples, no_data.baseline_samples) == (
        Verdict.NO_DATA,
        0,
        500,
    )
    assert no_data.advance_tolerance == 1.5
    assert no_data.e_value == pytest.approx(1.0, rel=1e-12)  # no evidence, not none

    waiting = _ErrorRun(check).feed(500, 2, 500, 2, times_=4).unit.evaluate(NOT_READY)
    assert (waiting.verdict, waiting.upper, waiting.bound) == (Verdict.INCONCLUSIVE, None, None)
    assert waiting.e_value is not None

    run = _ErrorRun(check, alpha=0.01)
    for k in range(60):
        run.feed(100, 5, 100, 1)
        fails = run.oracle.detector(1.1) * 0.01 >= 1.0
        assert (run.unit.evaluate(NOT_READY).verdict is Verdict.FAIL) == fails, k
        if fails:
            break
    assert run.unit.evaluate(ADVANCING).verdict is Verdict.FAIL


def test_a_canary_without_a_baseline_is_judged_by_its_own_rate() -> None:
    clean = _ErrorRun(ErrorRateCheck(advance_abs_margin=0.01)).feed(4000, 0, 0, 0)
    evidence = clean.unit.evaluate(ADVANCING)

    assert evidence.e_value == pytest.approx(1.0, rel=1e-12)
    assert evidence.upper == math.inf
    assert evidence.verdict is Verdict.PASS
    reason = evidence.reason()
    assert (reason.estimate, reason.upper, reason.baseline_samples) == (None, None, 0)


def test_the_reason_of_an_error_rate_check() -> None:
    check = ErrorRateCheck(tolerance=1.2, advance_tolerance=3.0, advance_abs_margin=0.0)
    run = _ErrorRun(check, alpha=0.04).feed(400, 4, 1600, 16, times_=5)
    evidence = run.unit.evaluate(ADVANCING)
    reason = evidence.reason()
    upper = run.oracle.upper(ADVANCING.alpha)
    lower = run.oracle.lower(0.04)
    estimate = run.mh[0] / run.mh[1]

    assert evidence.verdict is Verdict.PASS
    assert (reason.check, reason.kind, reason.critical) == ("error_rate", "error_rate", True)
    assert (reason.canary_samples, reason.baseline_samples) == (2000, 8000)
    assert reason.estimate == pytest.approx(estimate, rel=1e-12)
    assert (reason.lower, reason.upper) == (lower, upper)
    assert reason.e_value == evidence.e_value
    assert (reason.threshold, reason.tolerance, reason.advance_tolerance) == (25.0, 1.2, 3.0)
    assert reason.message == (
        f"rate canary 1% vs baseline 1%: {times(estimate)} [{times(lower)}, {times(upper)}], "
        f"{evidence_text(evidence.e_value, 25.0)}, tolerance ×1.20"
    )
    promoting = run.unit.evaluate(PROMOTING).reason()
    assert promoting.advance_tolerance == 1.35
    # Before the stage is ready: no upper bound tested, the interval still shown.
    early = run.unit.evaluate(NOT_READY).reason()
    assert early.upper is None
    assert early.message == reason.message


def test_a_pass_by_blast_radius_says_so() -> None:
    check = ErrorRateCheck(tolerance=1.1, advance_tolerance=1.2, advance_abs_margin=0.01)
    run = _ErrorRun(check, alpha=0.05).feed(300, 3, 2700, 27, times_=2)
    evidence = run.unit.evaluate(ADVANCING)
    upper = run.oracle.upper(ADVANCING.alpha)
    assert upper > 1.2
    assert (upper - 1.0) * 0.01 * 0.25 <= 0.01

    assert (evidence.verdict, evidence.upper) == (Verdict.PASS, upper)
    assert evidence.reason().message.startswith("rate canary 1% vs baseline 1%: ×")
    assert evidence.reason().message.endswith(
        "; no harm by blast radius: extra bad requests within 1% of all traffic at 25%"
    )
    direct = _ErrorRun(check, alpha=0.05).feed(3000, 1, 27000, 270, times_=2)
    assert direct.unit.evaluate(ADVANCING).verdict is Verdict.PASS
    assert "blast radius" not in direct.unit.evaluate(ADVANCING).reason().message


def test_an_upper_bound_exactly_at_the_tolerance_passes_without_the_blast_radius() -> None:
    # 51 canary errors against 57 in equal traffic: the upper bound at 90 % is the grid
    # point 1.5 itself, the advance tolerance.
    check = ErrorRateCheck(advance_tolerance=1.5, advance_abs_margin=0.0)
    run = _ErrorRun(check, alpha=0.05).feed(1000, 51, 1000, 57)
    gate = Gate(ready=True, next_share=0.5, promoting=False, alpha=0.1)
    evidence = run.unit.evaluate(gate)

    assert (evidence.verdict, evidence.upper, evidence.bound) == (Verdict.PASS, 1.5, 1.5)
    assert "blast radius" not in evidence.reason().message


def test_errors_only_in_the_canary_have_no_finite_estimate() -> None:
    run = _ErrorRun(ErrorRateCheck(), alpha=0.05).feed(200, 2, 200, 0, times_=2)
    reason = run.unit.evaluate(ADVANCING).reason()

    assert run.unit.test.estimate() == math.inf
    assert (reason.estimate, reason.upper) == (None, None)
    assert reason.message.startswith("rate canary 1% vs baseline 0%: ×inf [")


def test_error_statuses_and_breakdown_slices_of_the_check() -> None:
    check = ErrorRateCheck(error_statuses="429,502", breakdown="endpoint")
    group = CheckGroup(check, alpha=0.05, trackers={})
    canary, baseline = CohortBucket(), CohortBucket()
    for status in (429, 502, 503, 500, 200):
        canary.requests.add(30.0, status)
        canary.slice_for("endpoint", "/pay").add(30.0, status)
    canary.slice_for("endpoint", "/cart")  # seen, but no request in this tick
    for status in (429, 200, 200):
        baseline.requests.add(30.0, status)
        baseline.slice_for("endpoint", "/pay").add(30.0, status)
    group.update(Tick(canary, baseline, {}, T0))
    pay = group.units["endpoint", "/pay"]
    cart = group.units["endpoint", "/cart"]

    assert (pay.events, pay.exposure) == ([2, 1], [5, 3])  # type: ignore[attr-defined]
    assert (cart.events, cart.exposure) == ([0, 0], [0, 0])  # type: ignore[attr-defined]
    plain = CheckGroup(ErrorRateCheck(), alpha=0.05, trackers={})
    plain.update(Tick(canary, baseline, {}, T0))
    (unit,) = plain.units.values()
    assert (unit.events, unit.exposure) == ([3, 0], [5, 3])  # type: ignore[attr-defined]


# --- the latency quantile check -----------------------------------------------------------


class _LatencyRun:
    """A latency unit with its rollout's tracker, and oracles for its three sequences with
    the exceedances counted here."""

    def __init__(self, check: LatencyCheck, alpha: float = 0.05) -> None:
        self.tracker = LatencyTracker(5.0)
        (unit,) = CheckGroup(check, alpha=alpha, trackers={None: self.tracker}).units.values()
        assert isinstance(unit, LatencyQuantileUnit)
        self.unit, self.check = unit, check
        grid = unit.test.grid
        self.oracles = [MixtureOracle(grid.psi, grid.log_prior) for _ in range(3)]
        self.rng = np.random.default_rng(17)
        self.now = T0

    def feed(self, ticks: int, factor: float, nc: int = 100, nb: int = 400) -> _LatencyRun:
        for _ in range(ticks):
            self.now += 5.0
            canary = _latencies(self.rng.lognormal(np.log(80.0 * factor), 0.4, nc))
            baseline = _latencies(self.rng.lognormal(np.log(80.0), 0.4, nb))
            threshold = self.tracker.threshold(self.check.quantile)
            self.unit.update(Tick(canary, baseline, {None: self.tracker}, self.now))
            self.tracker.update(canary.requests, baseline.requests)
            if threshold is None or not nc or not nb:
                continue
            c, b = canary.requests.latency_array(), baseline.requests.latency_array()
            y = int((b > threshold).sum())
            tolerances = (
                self.check.tolerance,
                self.check.advance_tolerance,
                self.check.promote_bound(),
            )
            for oracle, tolerance in zip(self.oracles, tolerances, strict=True):
                oracle.add(int((c > threshold * (1.0 + tolerance)).sum()), y, nc, nb)
        return self


def _latencies(values: np.ndarray) -> CohortBucket:
    bucket = CohortBucket()
    for value in values:
        bucket.requests.add(float(value), 200)
    return bucket


def test_the_baseline_quantile_needs_enough_samples() -> None:
    tracker = LatencyTracker(5.0)
    assert tracker.threshold(0.5) is None
    tracker.update(_latencies(np.array([])).requests, _latencies(np.full(49, 10.0)).requests)
    assert tracker.threshold(0.5) is None  # 49 < 50
    tracker.update(_latencies(np.array([])).requests, _latencies(np.full(2, 10.0)).requests)
    assert tracker.threshold(0.5) == pytest.approx(10.0, rel=0.02)  # 49 decayed + 2 >= 50
    assert tracker.threshold(0.99) is None  # needs 10 / (1 - 0.99) = 1000
    assert tracker.decay == 0.5 ** (5.0 / 300.0)
    assert tracker.baseline.total == pytest.approx(49 * tracker.decay + 2, rel=1e-12)
    assert tracker.canary.total == 0


@pytest.mark.parametrize(("factor", "promoting"), [(1.0, False), (1.0, True), (1.6, False)])
def test_latency_evidence_is_that_of_the_exceedances(factor: float, promoting: bool) -> None:
    check = LatencyCheck(quantile=0.9, tolerance=0.1, advance_tolerance=0.3)
    run = _LatencyRun(check, alpha=0.05).feed(3, 1.0).feed(10, factor)
    gate = PROMOTING if promoting else ADVANCING
    evidence = run.unit.evaluate(gate)
    test, no_harm, promotable = run.oracles
    e_value = test.detector(1.0)

    assert evidence.e_value == pytest.approx(e_value, rel=1e-9)
    assert run.unit.no_harm.e_value(1.0) == pytest.approx(no_harm.e_value(1.0), rel=1e-9)
    if e_value * 0.05 >= 1.0:
        assert factor > 1.0
        assert (evidence.verdict, evidence.upper) == (Verdict.FAIL, None)
        return
    upper = (promotable if promoting else no_harm).upper(gate.alpha)
    assert evidence.upper == upper
    assert evidence.bound == (check.promote_bound() if promoting else 0.3)
    passes = upper <= 1.0 or (upper - 1.0) * 0.1 * gate.next_share <= check.advance_abs_margin
    assert evidence.verdict is (Verdict.PASS if passes else Verdict.INCONCLUSIVE)


def test_latency_samples_count_from_the_first_tick_and_the_test_from_the_first_threshold() -> None:
    check = LatencyCheck(quantile=0.5)
    run = _LatencyRun(check).feed(2, 1.0, nc=30, nb=40)
    assert run.unit.samples == [60, 80]
    # The second tick's threshold came from the first tick's 40 samples: too few.
    assert run.unit.test.x_total + run.unit.test.y_total == 0
    run.feed(1, 1.0, nc=30, nb=40)
    assert run.unit.samples == [90, 120]
    assert run.unit.test.y_total > 0
    before = run.unit.test.to_state()
    run.feed(1, 1.0, nc=0, nb=40)  # no canary: nothing to compare in that tick
    assert run.unit.samples == [90, 160]
    assert run.unit.test.to_state() == before
    assert run.unit.test.e_value(1.0) == pytest.approx(run.oracles[0].e_value(1.0), rel=1e-9)


def test_latency_verdicts_without_data() -> None:
    check = LatencyCheck()
    run = _LatencyRun(check)
    assert run.unit.evaluate(ADVANCING).verdict is None
    run.feed(1, 1.0, nc=0, nb=100)
    assert run.unit.evaluate(ADVANCING).verdict is Verdict.NO_DATA
    run.feed(1, 1.0, nc=10, nb=100)
    waiting = run.unit.evaluate(NOT_READY)
    assert (waiting.verdict, waiting.e_value, waiting.upper) == (Verdict.INCONCLUSIVE, 1.0, None)


def test_a_slower_canary_fails_the_latency_check() -> None:
    run = _LatencyRun(LatencyCheck(quantile=0.9), alpha=0.01).feed(3, 1.0).feed(20, 1.8)
    evidence = run.unit.evaluate(NOT_READY)

    assert evidence.verdict is Verdict.FAIL
    assert evidence.e_value == pytest.approx(run.oracles[0].detector(1.0), rel=1e-9)


def test_the_blast_radius_of_slow_requests() -> None:
    # An upper bound above 1 passes when the extra slow share, (upper - 1) x (1 - q) x the
    # next share, is within the margin.
    check = LatencyCheck(quantile=0.9, tolerance=0.1, advance_tolerance=0.3)
    run = _LatencyRun(check).feed(3, 1.0, nc=0).feed(2, 1.0, nc=20, nb=400)
    upper = run.oracles[1].upper(ADVANCING.alpha)
    assert upper > 1.0 and math.isfinite(upper)
    needed = (upper - 1.0) * 0.1 * ADVANCING.next_share
    for margin, verdict in ((needed * 1.01, Verdict.PASS), (needed * 0.99, Verdict.INCONCLUSIVE)):
        wide = LatencyCheck(
            quantile=0.9, tolerance=0.1, advance_tolerance=0.3, advance_abs_margin=margin
        )
        again = _LatencyRun(wide).feed(3, 1.0, nc=0).feed(2, 1.0, nc=20, nb=400)
        evidence = again.unit.evaluate(ADVANCING)
        assert (evidence.verdict, evidence.upper) == (verdict, upper)
        message = evidence.reason().message
        assert ("no harm by blast radius: extra slow requests within" in message) == (
            verdict is Verdict.PASS
        )
        if verdict is Verdict.PASS:
            assert message.endswith(f"of all traffic at {percent(0.25)}")


def test_the_reason_of_a_latency_check() -> None:
    check = LatencyCheck(quantile=0.9, tolerance=0.1, advance_tolerance=0.3, critical=False)
    run = _LatencyRun(check, alpha=0.04).feed(3, 1.0).feed(12, 1.05)
    evidence = run.unit.evaluate(ADVANCING)
    reason = evidence.reason()
    canary_q = run.tracker.canary.quantile(0.9)
    baseline_q = run.tracker.baseline.quantile(0.9)
    assert canary_q is not None and baseline_q is not None
    exceed = run.unit.test.estimate()
    upper = evidence.upper

    assert (reason.check, reason.kind, reason.critical) == ("latency-p90", "latency", False)
    assert (reason.canary_samples, reason.baseline_samples) == (1500, 6000)
    assert reason.estimate == pytest.approx(canary_q / baseline_q - 1.0, rel=1e-12)
    assert reason.upper == upper
    assert reason.e_value == evidence.e_value
    assert (reason.threshold, reason.tolerance, reason.advance_tolerance) == (25.0, 0.1, 0.3)
    assert reason.message.startswith(
        f"p90 canary {number(canary_q)} ms vs baseline {number(baseline_q)} ms "
        f"({change(canary_q / baseline_q)}); exceedance ratio at +10% {times(exceed)}, "
        f"{evidence_text(evidence.e_value, 25.0)}; upper bound at +30% {times(upper)} "
        "(no harm at ×1 or less)"
    )
    promoting = run.unit.evaluate(PROMOTING).reason()
    assert promoting.advance_tolerance == 0.1  # 0.075 kept within [0.1, 0.3]
    assert "upper bound at +10% " in promoting.message
    early = run.unit.evaluate(NOT_READY).reason()
    assert (early.upper, early.advance_tolerance) == (None, 0.3)
    assert "upper bound at +30% n/a" in early.message


def test_a_latency_reason_before_any_canary_latency() -> None:
    run = _LatencyRun(LatencyCheck()).feed(1, 1.0, nc=0, nb=100)
    reason = run.unit.evaluate(ADVANCING).reason()

    assert (reason.verdict, reason.estimate, reason.e_value) == (Verdict.NO_DATA, None, 1.0)
    assert reason.message.startswith("p99 canary n/a ms vs baseline ")
    assert "(n/a); exceedance ratio at +5% n/a" in reason.message
