"""The guards one by one: the numbers each computes, its boundaries, its readable reason, and
its stored form read back or refused.

The engine tests show the guards holding rollouts through whole streams; these pin what
those streams never isolate: the standardiser's z-scores (running mean first, then
exponential forgetting, the variance floor, the clamp), which statuses count as a baseline
error, the warm-up each tick length gives, the sample-ratio test's band, its settle time and
its re-test every fourth tick, and the stored state of all three.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import orjson
import pytest
from river.drift import PageHinkley

from canarystream.analysis.cohort import CohortBucket
from canarystream.analysis.guards import (
    BaselineDriftGuard,
    NoDataWatch,
    SampleRatioWatch,
    _Standardiser,
)
from canarystream.analysis.sequential import RatioSequence
from canarystream.contracts.decision import Verdict
from canarystream.errors import StateFormatError
from canarystream.policy.model import DriftGuard, NoDataGuard, SampleRatioGuard
from canarystream.readable import instant

T0 = 1_790_000_000.0


# --- the standardiser ---------------------------------------------------------------------


def test_z_scores_start_after_the_warmup_against_the_running_mean_and_spread() -> None:
    # A half-life of a million ticks: the weights are 1/(k+1), a running mean, throughout.
    scale = _Standardiser(half_life_ticks=1e6, warmup=3)
    values = [(10.0, 4.0), (14.0, 2.0), (12.0, 6.0)]  # (value, per-request variance)
    assert [scale.score(v, var, 5) for v, var in values] == [None, None, None]
    mean, spread = 12.0, 4.0  # the averages of the values and of the variances

    z = scale.score(15.0, 1.0, 9)

    assert z == pytest.approx((15.0 - mean) / math.sqrt(spread / 9), rel=1e-12)
    state = scale.to_state()
    assert state["seen"] == 4
    assert state["mean"] == pytest.approx((3 * mean + 15.0) / 4, rel=1e-12)
    assert state["spread"] == pytest.approx((3 * spread + 1.0) / 4, rel=1e-12)


def test_forgetting_takes_over_from_the_running_mean_at_the_half_life() -> None:
    # A half-life of one tick: decay 1/2, so every value after the first weighs 1/2
    # (1/(k+1) is smaller from the second value on).
    scale = _Standardiser(half_life_ticks=1.0, warmup=2)
    assert scale.score(10.0, 4.0, 4) is None  # mean 10, spread 4
    assert scale.score(20.0, 2.0, 4) is None  # mean 15, spread 3

    assert scale.score(18.0, 1.0, 3) == pytest.approx((18.0 - 15.0) / math.sqrt(3.0 / 3))
    assert (scale.mean, scale.spread) == pytest.approx((16.5, 2.0))
    # A half-life of two ticks: decay 2^-1/2, weight 1 - 2^-1/2 = 0.293 once below 1/(k+1).
    slow = _Standardiser(half_life_ticks=2.0, warmup=0)
    for value in (1.0, 2.0, 3.0, 4.0):
        slow.score(value, 1.0, 1)
    weight = 1.0 - 0.5**0.5
    # 1, 1.5, 2 (weights 1, 1/2, 1/3), then 1 - 2^-1/2 as it exceeds 1/4
    assert slow.mean == pytest.approx(2.0 + weight * (4.0 - 2.0), rel=1e-12)


def test_z_scores_are_clamped_and_the_spread_has_a_floor() -> None:
    scale = _Standardiser(half_life_ticks=1e6, warmup=1)
    scale.score(100.0, 0.0, 4)  # no spread at all: the floor 1e-6 per request applies

    assert scale.score(100.0 + 4e-4, 0.0, 4) == pytest.approx(4e-4 / math.sqrt(1e-6 / 4))
    assert scale.score(1e6, 0.0, 4) == 50.0
    assert scale.score(-1e6, 0.0, 4) == -50.0


def test_a_proportion_s_variance_comes_from_the_reference_rate_kept_off_0_and_1() -> None:
    scale = _Standardiser(half_life_ticks=1e6, warmup=1)
    assert scale.score(0.2, None, 50) is None  # before any value the rate is 0: 1e-3 is used
    assert scale.spread == pytest.approx(1e-3 * (1 - 1e-3), rel=1e-12)
    z = scale.score(0.3, None, 50)  # the reference rate is now 0.2

    assert z == pytest.approx(0.1 / math.sqrt(1e-3 * (1 - 1e-3) / 50), rel=1e-12)
    assert scale.spread == pytest.approx((1e-3 * (1 - 1e-3) + 0.2 * 0.8) / 2, rel=1e-12)
    high = _Standardiser(half_life_ticks=1e6, warmup=5)
    for _ in range(3):
        high.score(1.0, None, 10)  # a reference rate of 1 is taken as 0.999
    assert high.spread == pytest.approx((2 * 0.999 * 0.001 + 0.999 * 0.001) / 3, rel=1e-12)
    assert high.spread > 0


# --- the baseline drift guard -------------------------------------------------------------


def _baseline(n: int, error_rate: float, latency: float, rng: np.random.Generator) -> CohortBucket:
    bucket = CohortBucket()
    for value in rng.lognormal(np.log(latency), 0.3, n):
        bucket.requests.add(float(value), 503 if rng.random() < error_rate else 200)
    return bucket


@pytest.mark.parametrize(
    ("tick", "half_life", "warmup"),
    [(5.0, 120.0, 4), (1.0, 600.0, 20), (0.5, 1200.0, 40), (300.0, 4.0, 4), (15.0, 40.0, 4)],
)
def test_the_tick_sets_ten_minutes_of_memory_and_twenty_seconds_of_warmup(
    tick: float, half_life: float, warmup: int
) -> None:
    guard = BaselineDriftGuard(DriftGuard(threshold=7.5, allowance=0.25), tick=tick)
    state = guard.to_state()

    for scale in state["scales"]:
        assert scale["decay"] == pytest.approx(0.5 ** (1.0 / half_life), rel=1e-12)
        assert scale["warmup"] == warmup
    for detector in state["detectors"]:
        assert (detector["min_instances"], detector["delta"], detector["threshold"]) == (
            4,
            0.25,
            7.5,
        )
        assert detector["mode"] == "up"
    assert guard.active(T0) is False
    assert guard.reason(T0).message == "baseline stable"


def test_the_default_tick_is_five_seconds() -> None:
    assert BaselineDriftGuard(DriftGuard()).to_state() == (
        BaselineDriftGuard(DriftGuard(), tick=5.0).to_state()
    )


def test_the_detectors_start_after_the_warmup_and_see_every_later_tick() -> None:
    rng = np.random.default_rng(4)
    guard = BaselineDriftGuard(DriftGuard(), tick=5.0)
    for k in range(10):
        guard.fold(_baseline(200, 0.01, 80.0, rng), T0 + 5.0 * k)
    guard.fold(CohortBucket(), T0 + 50.0)  # no request: not a tick of the baseline

    state = guard.to_state()
    assert [scale["seen"] for scale in state["scales"]] == [10, 10]
    assert [detector["x_mean"][0] for detector in state["detectors"]] == [6, 6]


def test_a_disabled_guard_learns_nothing() -> None:
    guard = BaselineDriftGuard(DriftGuard(enabled=False))
    before = guard.to_state()
    guard.fold(_baseline(100, 0.5, 900.0, np.random.default_rng(1)), T0)

    assert guard.to_state() == before


def _drifted(errors: int, status: int, latency: float) -> BaselineDriftGuard:
    """A guard after 30 steady ticks (1 % errors, 80 ms), then 8 ticks of a change."""
    rng = np.random.default_rng(11)
    guard = BaselineDriftGuard(DriftGuard(cooldown=90.0), tick=5.0)
    for k in range(30):
        guard.fold(_baseline(400, 0.01, 80.0, rng), T0 + 5.0 * k)
    for k in range(30, 38):
        bucket = _baseline(400, 0.01, latency, rng)
        for _ in range(errors):
            bucket.requests.add(80.0, status)
        guard.fold(bucket, T0 + 5.0 * k)
    return guard


def test_server_errors_of_the_baseline_shift_its_error_rate_and_hold_for_the_cooldown() -> None:
    guard = _drifted(errors=60, status=503, latency=80.0)

    assert guard.last_shift.startswith("baseline error rate shifted up at ")
    shifted = guard.active_until - 90.0
    assert guard.last_shift == f"baseline error rate shifted up at {instant(shifted)}"
    assert T0 + 150.0 <= shifted <= T0 + 185.0
    assert guard.active(guard.active_until - 0.001)
    assert not guard.active(guard.active_until)
    reason = guard.reason(guard.active_until - 1.0)
    assert (reason.check, reason.kind, reason.verdict, reason.critical) == (
        "baseline_drift",
        "guard",
        Verdict.FAIL,
        False,
    )
    assert reason.message == (f"{guard.last_shift}; holding until {instant(guard.active_until)}")
    after = guard.reason(guard.active_until)
    assert (after.verdict, after.message) == (Verdict.PASS, "baseline stable")


@pytest.mark.parametrize("status", [429, 404, 499, 600])
def test_other_statuses_are_not_baseline_errors(status: int) -> None:
    assert _drifted(errors=60, status=status, latency=80.0).last_shift == ""
    assert _drifted(errors=60, status=status, latency=80.0).active_until == -math.inf


@pytest.mark.parametrize("status", [500, 599])
def test_both_ends_of_the_server_errors_count(status: int) -> None:
    assert "error rate" in _drifted(errors=60, status=status, latency=80.0).last_shift


def test_a_slower_baseline_shifts_its_latency() -> None:
    guard = _drifted(errors=0, status=200, latency=160.0)

    assert guard.last_shift.startswith("baseline latency shifted up at ")


def test_a_tick_s_latency_spread_needs_two_requests() -> None:
    rng = np.random.default_rng(2)
    single = BaselineDriftGuard(DriftGuard(), tick=5.0)
    pairs = BaselineDriftGuard(DriftGuard(), tick=5.0)
    spreads = []
    for k in range(6):
        single.fold(_baseline(1, 0.0, 80.0, rng), T0 + 5.0 * k)
        bucket = _baseline(2, 0.0, 80.0, rng)
        spreads.append(float(np.var(np.log1p(bucket.requests.latency_array()))))
        pairs.fold(bucket, T0 + 5.0 * k)

    assert single.scales[1].spread == 0.0
    assert pairs.scales[1].spread == pytest.approx(np.mean(spreads), rel=1e-9)
    assert pairs.scales[1].seen == single.scales[1].seen == 6


def _drift_state() -> dict[str, Any]:
    guard = _drifted(errors=60, status=503, latency=80.0)
    state = orjson.loads(orjson.dumps(guard.to_state()))
    assert isinstance(state["active_until"], float)
    return state


def test_a_stored_drift_guard_reads_back_and_goes_on_alike() -> None:
    state = _drift_state()
    restored = BaselineDriftGuard.from_state(state, DriftGuard(cooldown=90.0))
    assert restored.to_state() == state
    original = BaselineDriftGuard.from_state(copy.deepcopy(state), DriftGuard(cooldown=90.0))
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    for k in range(40, 60):
        original.fold(_baseline(300, 0.05, 120.0, rng_a), T0 + 5.0 * k)
        restored.fold(_baseline(300, 0.05, 120.0, rng_b), T0 + 5.0 * k)
    assert restored.to_state() == original.to_state()


def test_a_new_drift_guard_is_stored_with_infinities_as_text() -> None:
    state = BaselineDriftGuard(DriftGuard()).to_state()

    assert state["active_until"] == "-inf"
    assert state["last_shift"] == ""
    assert [d["min_increase"] for d in state["detectors"]] == ["inf", "inf"]
    restored = BaselineDriftGuard.from_state(orjson.loads(orjson.dumps(state)), DriftGuard())
    assert restored.to_state() == state
    assert restored.active_until == -math.inf


def test_every_number_of_a_stored_detector_is_the_one_read_back() -> None:
    state = _drift_state()
    detector = state["detectors"][1]
    edited = dict(
        detector,
        min_instances=9,
        delta=0.75,
        threshold=33.0,
        alpha=0.5,
        mode="both",
        drift_detected=True,
        x_mean=[17, 0.125],
        sum_increase=1.25,
        sum_decrease=-2.5,
        min_increase=-3.75,
        max_decrease=4.5,
    )
    state["detectors"][1] = edited
    restored = BaselineDriftGuard.from_state(state, DriftGuard())

    assert restored.to_state()["detectors"][1] == edited
    # The detector behaves as its restored numbers say: a detected drift resets it.
    ph = restored.detectors[1]
    ph.update(0.0)
    assert ph.seen == 1


def test_every_number_of_a_stored_standardiser_is_the_one_read_back() -> None:
    state = _drift_state()
    edited = {"decay": 0.25, "warmup": 11, "seen": 3, "mean": -0.5, "spread": 7.0}
    state["scales"][0] = edited
    restored = BaselineDriftGuard.from_state(state, DriftGuard())

    assert restored.to_state()["scales"][0] == edited
    assert restored.to_state()["scales"][1] == _drift_state()["scales"][1]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (("detectors", 0, "mode", "sideways"), "detectors.0.mode: unknown Page-Hinkley mode "),
        (("detectors", 1, "x_mean", [1]), "detectors.1.x_mean: expected 2 items, got 1"),
        (("detectors", 0, "drift_detected", 0), "detectors.0.drift_detected: expected a boolean"),
        (("detectors", 1, "min_instances", 4.0), "detectors.1.min_instances: expected an integer"),
        (("scales", 1, "warmup", "4"), "scales.1.warmup: expected an integer, got str"),
        (("scales", 0, "seen", None), "scales.0.seen: expected an integer, got null"),
        (("scales", 0, "spread", None), "scales.0.spread: expected a number, got null"),
    ],
)
def test_a_damaged_drift_guard_is_refused_naming_its_field(
    edit: tuple[str, int, str, Any], problem: str
) -> None:
    state = _drift_state()
    part, index, field, value = edit
    state[part][index][field] = value
    with pytest.raises(StateFormatError) as raised:
        BaselineDriftGuard.from_state(state, DriftGuard())

    assert str(raised.value).startswith(f"BaselineDriftGuard.{problem}")
    if field == "mode":
        assert str(raised.value).endswith("'sideways'")


@pytest.mark.parametrize("field", ["scales", "detectors"])
def test_a_drift_guard_needs_two_of_each(field: str) -> None:
    state = _drift_state()
    state[field] = state[field][:1]
    with pytest.raises(StateFormatError) as raised:
        BaselineDriftGuard.from_state(state, DriftGuard())

    assert str(raised.value) == f"BaselineDriftGuard.{field}: expected 2 items, got 1"


def test_the_stored_detector_is_river_s_own() -> None:
    """A restored detector updates exactly like river's detector fed the same values."""
    reference = PageHinkley(min_instances=4, delta=1.0, threshold=20.0, mode="up")
    guard = BaselineDriftGuard(DriftGuard(), tick=5.0)
    values = [0.5, -1.0, 2.0, 3.5, 0.0, 6.0, 9.0]
    for value in values[:4]:
        reference.update(value)
        guard.detectors[0].update(value)
    state = orjson.loads(orjson.dumps(guard.to_state()))
    restored = BaselineDriftGuard.from_state(state, DriftGuard()).detectors[0]
    for value in values[4:]:
        reference.update(value)
        restored.update(value)
        assert restored.drift_detected == reference.drift_detected
    assert restored.sum_increase == reference._sum_increase
    assert restored.mean == reference._x_mean.get()


# --- the sample-ratio watch ---------------------------------------------------------------


def test_the_band_is_one_plus_the_tolerance_and_its_inverse() -> None:
    watch = SampleRatioWatch(SampleRatioGuard(tolerance=0.25))
    state = watch.to_state()
    assert (state["expected"], state["since"], state["mismatch"], state["folds"]) == (
        0.0,
        0.0,
        False,
        0,
    )
    assert SampleRatioWatch.from_state(state, SampleRatioGuard()).to_state() == state

    assert (watch.high, watch.low) == (1.25, 0.8)
    assert watch.observed_share() is None
    assert watch.reason().message == "canary share n/a vs routed 0%"


def test_folds_start_when_the_router_has_settled() -> None:
    watch = SampleRatioWatch(SampleRatioGuard(settle=30.0))
    watch.restart(0.2, T0)
    watch.fold(50, 50, T0 + 29.9)
    assert watch.observed_share() is None

    watch.fold(20, 80, T0 + 30.0)
    assert watch.observed_share() == 0.2
    assert (watch.test.x_total, watch.test.y_total) == (20, 80)


@pytest.mark.parametrize("expected", [0.0, 1.0])
def test_no_fold_without_two_cohorts_routed(expected: float) -> None:
    watch = SampleRatioWatch(SampleRatioGuard(settle=0.0))
    watch.restart(expected, T0)
    watch.fold(10, 10, T0 + 5.0)

    assert watch.observed_share() is None
    assert watch.to_state()["folds"] == 0


def test_a_disabled_watch_folds_nothing() -> None:
    watch = SampleRatioWatch(SampleRatioGuard(enabled=False, settle=0.0))
    watch.restart(0.5, T0)
    watch.fold(10, 90, T0 + 5.0)

    assert watch.observed_share() is None


def _mismatch(expected: float, alpha: float, test: RatioSequence) -> bool:
    high = 1.25
    return bool(test.lower_bound(alpha / 2) > high or test.upper_bound(alpha / 2) < 1 / high)


@pytest.mark.parametrize(("canary", "baseline"), [(30, 70), (70, 30), (45, 55)])
def test_a_mismatch_is_tested_every_fourth_tick_at_half_the_alpha(
    canary: int, baseline: int
) -> None:
    config = SampleRatioGuard(tolerance=0.25, alpha=0.01, settle=0.0)
    watch = SampleRatioWatch(config)
    watch.restart(0.5, T0)
    reference = RatioSequence(anchors=(0.8, 1.25))
    seen = []
    for k in range(1, 13):
        watch.fold(canary, baseline, T0 + 5.0 * k)
        reference.update(canary, baseline, 0.5, 0.5)
        seen.append(watch.mismatch)
        estimate = reference.estimate()
        assert estimate is not None
        if 0.8 <= estimate <= 1.25:
            assert not watch.mismatch
        elif k % 4 == 0:
            assert watch.mismatch == _mismatch(0.5, 0.01, reference), k
    if canary == 45:
        assert not any(seen)
    else:
        # Decided at the fourth tick at the earliest, and kept between re-tests.
        assert seen[:3] == [False, False, False]
        assert seen[-1] is True
        first = seen.index(True)
        assert (first + 1) % 4 == 0
        assert all(seen[first:])


@pytest.mark.parametrize(
    ("canary", "mismatch", "lower", "upper"),
    [
        (164, False, 1.2214, None),  # at alpha / 2 the lower bound is below 1.25; at 2 alpha not
        (165, False, 1.25, None),  # exactly at the band's end: still within
        (168, True, 1.2712, None),  # above 1.25 at alpha / 2, not at alpha / 3
        (56, False, None, 0.8),  # the upper bound exactly at the band's lower end
        (52, True, None, 0.7558),
    ],
)
def test_a_mismatch_needs_the_whole_interval_at_half_the_alpha_outside_the_band(
    canary: int, mismatch: bool, lower: float | None, upper: float | None
) -> None:
    watch = SampleRatioWatch(SampleRatioGuard(tolerance=0.25, alpha=0.001, settle=0.0))
    watch.restart(0.5, T0)
    for k in range(1, 5):
        watch.fold(canary, 100, T0 + 5.0 * k)

    if lower is not None:
        assert watch.test.lower_bound(0.0005) == pytest.approx(lower, abs=1e-4)
    if upper is not None:
        assert watch.test.upper_bound(0.0005) == pytest.approx(upper, abs=1e-4)
    assert watch.mismatch is mismatch


@pytest.mark.parametrize("extra", [496, 820])
def test_an_estimate_exactly_at_an_end_of_the_band_clears_a_mismatch_at_once(extra: int) -> None:
    """80 canary against 720 baseline requests is a mismatch; 496 more canary requests make
    the estimate 576 / 720 = 0.8 exactly, 820 more make it 1.25: within the band, cleared at
    the ninth fold, without waiting for the twelfth's re-test."""
    watch = SampleRatioWatch(SampleRatioGuard(tolerance=0.25, settle=0.0))
    watch.restart(0.5, T0)
    for k in range(1, 9):
        watch.fold(10, 90, T0 + 5.0 * k)
    assert watch.mismatch
    watch.fold(extra, 0, T0 + 45.0)

    assert watch.test.estimate() in (0.8, 1.25)
    assert watch.mismatch is False


def test_a_mismatch_clears_once_the_estimate_is_back_in_the_band() -> None:
    watch = SampleRatioWatch(SampleRatioGuard(settle=0.0))
    watch.restart(0.5, T0)
    for k in range(1, 9):
        watch.fold(10, 90, T0 + 5.0 * k)
    assert watch.mismatch
    reason = watch.reason()
    assert (reason.check, reason.kind, reason.verdict, reason.critical) == (
        "sample_ratio",
        "guard",
        Verdict.FAIL,
        False,
    )
    assert (reason.canary_samples, reason.baseline_samples, reason.estimate) == (80, 720, 0.1)
    assert reason.tolerance == 0.25
    assert reason.message == "canary share 10% vs routed 50% (mismatch)"

    watch.fold(700, 10, T0 + 45.0)  # 780 against 730: an estimate of 1.07, within the band
    assert not watch.mismatch
    assert watch.reason().verdict is Verdict.PASS
    assert watch.reason().message.endswith("vs routed 50%")


def test_a_restart_forgets_the_counts_the_mismatch_and_the_tick_count() -> None:
    watch = SampleRatioWatch(SampleRatioGuard(settle=10.0))
    watch.restart(0.5, T0)
    for k in range(3, 12):
        watch.fold(10, 90, T0 + 5.0 * k)
    assert watch.mismatch
    watch.restart(0.1, T0 + 60.0)
    assert (watch.mismatch, watch.observed_share(), watch.since) == (False, None, T0 + 70.0)
    for k in range(1, 4):  # a mismatch needs four ticks again
        watch.fold(90, 10, T0 + 70.0 + 5.0 * k)
        assert not watch.mismatch
    watch.fold(90, 10, T0 + 90.0)
    assert watch.mismatch


def _watch_state() -> dict[str, Any]:
    watch = SampleRatioWatch(SampleRatioGuard(tolerance=0.5, settle=7.0))
    watch.restart(0.3, T0)
    for k in range(2, 9):
        watch.fold(10, 90, T0 + 5.0 * k)
    assert watch.mismatch
    return orjson.loads(orjson.dumps(watch.to_state()))


def test_a_stored_sample_ratio_watch_reads_back_and_goes_on_alike() -> None:
    state = _watch_state()
    config = SampleRatioGuard(tolerance=0.5, settle=7.0)
    restored = SampleRatioWatch.from_state(state, config)
    assert restored.to_state() == state
    assert (restored._folds, restored.mismatch) == (7, True)
    original = SampleRatioWatch.from_state(copy.deepcopy(state), config)
    for k in range(9, 14):
        original.fold(40, 60, T0 + 5.0 * k)
        restored.fold(40, 60, T0 + 5.0 * k)
        assert restored.to_state() == original.to_state()


def test_every_number_of_a_stored_sample_ratio_watch_is_the_one_read_back() -> None:
    state = _watch_state()
    edited = dict(state, high=2.0, low=0.5, expected=0.125, since=T0 + 1.5, folds=3)
    edited["mismatch"] = False
    restored = SampleRatioWatch.from_state(edited, SampleRatioGuard())

    assert restored.to_state() == edited
    assert restored.reason().message == "canary share 10% vs routed 12.5%"


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("folds", 1.0, "folds: expected an integer, got float"),
        ("mismatch", None, "mismatch: expected a boolean, got null"),
        ("since", "soon", "since: expected a number, got str"),
        ("test", None, "test: expected an object, got null"),
    ],
)
def test_a_damaged_sample_ratio_watch_is_refused_naming_its_field(
    field: str, value: Any, problem: str
) -> None:
    state = _watch_state()
    state[field] = value
    with pytest.raises(StateFormatError) as raised:
        SampleRatioWatch.from_state(state, SampleRatioGuard())

    assert str(raised.value) == f"SampleRatioWatch.{problem}"


# --- the no-data watch --------------------------------------------------------------------


def test_silence_counts_from_the_latest_telemetry_or_the_given_start() -> None:
    watch = NoDataWatch(NoDataGuard())
    assert watch.silent_for(T0, T0 - 40.0) == 40.0
    watch.saw(T0 + 10.0)
    watch.saw(T0 + 4.0)  # late telemetry does not move the last time back

    assert watch.last_seen == T0 + 10.0
    assert watch.silent_for(T0 + 25.0, T0) == 15.0
    assert watch.silent_for(T0 + 25.0, T0 + 20.0) == 5.0


def test_a_stored_no_data_watch_reads_back() -> None:
    watch = NoDataWatch(NoDataGuard())
    assert watch.to_state() == {"last_seen": "-inf"}
    assert NoDataWatch.from_state({"last_seen": "-inf"}, NoDataGuard()).last_seen == -math.inf
    watch.saw(T0 + 2.5)
    restored = NoDataWatch.from_state(orjson.loads(orjson.dumps(watch.to_state())), NoDataGuard())

    assert restored.last_seen == T0 + 2.5
    assert restored.config == NoDataGuard()
    with pytest.raises(StateFormatError) as raised:
        NoDataWatch.from_state({"last_seen": None}, NoDataGuard())
    assert str(raised.value) == "NoDataWatch.last_seen: expected a number, got null"
