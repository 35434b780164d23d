"""The drift guard's Page-Hinkley test and the recovery check's normal quantile, held to the
libraries they replace (river's detector, scipy's ``norm.ppf``) float for float."""

from __future__ import annotations

import math
import random

import orjson
import pytest
from river.drift import PageHinkley as RiverPageHinkley
from scipy import stats

from canarystream.analysis import recovery
from canarystream.analysis.page_hinkley import PageHinkley
from canarystream.analysis.state import reader
from canarystream.errors import StateFormatError


def _river_state(detector: RiverPageHinkley) -> dict[str, object]:
    """River's detector in the stored format (as the guard wrote it before version 6)."""
    return {
        "min_instances": detector.min_instances,
        "delta": detector.delta,
        "threshold": detector.threshold,
        "alpha": detector.alpha,
        "mode": detector.mode,
        "drift_detected": detector.drift_detected,
        "x_mean": [detector._x_mean.n, detector._x_mean.get()],
        "sum_increase": detector._sum_increase,
        "sum_decrease": detector._sum_decrease,
        "min_increase": detector._min_increase if math.isfinite(detector._min_increase) else "inf",
        "max_decrease": detector._max_decrease,
    }


def _stream(rng: random.Random, length: int) -> list[float]:
    """z-scores with shifts up and down, the guard's clipping, and exact repeats."""
    values: list[float] = []
    level = 0.0
    for _ in range(length):
        if rng.random() < 0.05:
            level = rng.choice((-4.0, 0.0, 0.0, 3.0, 8.0))
        values.append(max(-50.0, min(50.0, level + rng.gauss(0.0, 1.0))))
    return values


@pytest.mark.parametrize("mode", ["up", "down", "both"])
@pytest.mark.parametrize("seed", range(4))
def test_page_hinkley_is_rivers_step_for_step(mode: str, seed: int) -> None:
    rng = random.Random(seed)
    params = {
        "min_instances": rng.choice((1, 4, 30)),
        "delta": rng.choice((0.0, 0.005, 0.5)),
        "threshold": rng.choice((2.0, 8.0, 50.0)),
        "mode": mode,
    }
    ours, theirs = PageHinkley(**params), RiverPageHinkley(**params)
    detections = 0
    for x in _stream(rng, 400):
        ours.update(x)
        theirs.update(x)
        assert ours.to_state() == _river_state(theirs)
        detections += ours.drift_detected
    assert detections > 0  # the comparison went through resets


def test_a_stored_detector_reads_back_the_same() -> None:
    detector = PageHinkley(min_instances=4, delta=0.5, threshold=8.0, mode="up")
    fresh = orjson.loads(orjson.dumps(detector.to_state()))
    assert fresh["max_decrease"] == -1 and fresh["min_increase"] == "inf"
    for x in _stream(random.Random(9), 50):
        detector.update(x)
    state = orjson.loads(orjson.dumps(detector.to_state()))
    assert PageHinkley.from_state(reader(state, "detector")).to_state() == state
    with pytest.raises(StateFormatError, match="sideways"):
        PageHinkley.from_state(reader({**state, "mode": "sideways"}, "detector"))


def test_the_recovery_checks_normal_quantile_is_scipy_stats_own() -> None:
    grid = [0.5 + 0.4999 * k / 999 for k in range(1000)] + [0.9, 0.95, 0.975, 0.99, 0.9999]
    assert [recovery.normal_quantile(p) for p in grid] == [float(stats.norm.ppf(p)) for p in grid]


def test_the_defaults_are_rivers() -> None:
    ours, theirs = PageHinkley(), RiverPageHinkley()
    assert (ours.min_instances, ours.delta, ours.threshold, ours.alpha, ours.mode) == (
        theirs.min_instances,
        theirs.delta,
        theirs.threshold,
        theirs.alpha,
        theirs.mode,
    )


def test_an_unknown_mode_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"^Invalid 'mode'\. Valid values are: \['up', 'down', 'both'\]$"
    ):
        PageHinkley(mode="sideways")


@pytest.mark.parametrize(("mode", "step"), [("up", 2.0), ("down", -2.0)])
def test_a_change_exactly_at_the_threshold_is_not_yet_a_drift(mode: str, step: float) -> None:
    # 0 then ±2 with no fading and no delta: the mean is ±1, the cumulated deviation ±1,
    # exactly the threshold: no drift, as in river; a hair beyond it is one.
    for threshold, detected in ((1.0, False), (0.999, True)):
        ours = PageHinkley(min_instances=1, delta=0.0, threshold=threshold, alpha=1.0, mode=mode)
        theirs = RiverPageHinkley(
            min_instances=1, delta=0.0, threshold=threshold, alpha=1.0, mode=mode
        )
        for x in (0.0, step):
            ours.update(x)
            theirs.update(x)
        assert ours.drift_detected is theirs.drift_detected is detected
