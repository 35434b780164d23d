"""Change-aware rollback tests: the e-detector and the restarted confidence sequences.

The detector's value is checked against a direct recomputation (scipy's binomial likelihood,
one e-process per onset, summed with the prior's masses), its false-alarm rate under repeated
looks by simulation at the null's boundary, and its point: a regression that starts after a
long healthy run is found about as fast as one present from the start.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from scipy.stats import binom, norm

from canarystream.analysis.sequential import (
    MeanRestarts,
    MeanSequence,
    RatioSequence,
    onset_unspent,
    onset_weight,
)
from canarystream.errors import AnalysisError, StateFormatError


def _direct_detector(
    steps: list[tuple[int, int, float, float]], anchors: tuple[float, ...], anchor: float
) -> float:
    """sum_s w(s) sum_psi prior(psi) prod_{i >= s} LR_i(psi) + unspent, recomputed directly."""
    grid = RatioSequence(anchors).grid
    index = grid.anchor_index[anchor]
    psi = grid.psi[index + 1 :]
    prior = np.exp(grid.log_prior[index + 1 :])
    prior /= prior.sum()
    # log LR of each informative step for every alternative, from scipy's binomial pmf
    rows = []
    for x, y, a, b in steps:
        if x + y == 0:
            continue
        p_alt = a * psi / (a * psi + b)
        p_null = a * anchor / (a * anchor + b)
        rows.append(binom.logpmf(x, x + y, p_alt) - binom.logpmf(x, x + y, p_null))
    log_lr = np.array(rows)
    total = 0.0
    for start in range(len(rows)):
        e_s = float(np.sum(prior * np.exp(log_lr[start:].sum(axis=0))))
        total += onset_weight(start + 1) * e_s
    return total + onset_unspent(len(rows))


def test_the_detector_is_the_prior_weighted_sum_of_e_processes_over_onsets() -> None:
    rng = np.random.default_rng(11)
    steps: list[tuple[int, int, float, float]] = []
    for t in range(40):
        rate = 0.3 if t >= 25 else 0.1  # the canary's errors triple at step 25
        steps.append((int(rng.poisson(rate * 20)), int(rng.poisson(0.1 * 20)), 20.0, 20.0))
    steps.append((0, 0, 20.0, 20.0))  # an empty step is no step
    seq = RatioSequence((1.1, 1.5), detect=1.1)
    for step in steps:
        seq.update(*step)

    assert seq.steps == sum(1 for x, y, _, _ in steps if x + y)
    assert math.isclose(seq.detector(), _direct_detector(steps, (1.1, 1.5), 1.1), rel_tol=1e-9)


def test_before_any_event_the_detector_is_one_and_a_sequence_without_one_refuses() -> None:
    assert RatioSequence((1.1,), detect=1.1).detector() == 1.0
    with pytest.raises(AnalysisError):
        RatioSequence((1.1,)).detector()
    with pytest.raises(AnalysisError):
        RatioSequence((1.1,), detect=1.2)


def test_the_onset_prior_sums_to_one_and_its_tail_has_a_closed_form() -> None:
    weights = [onset_weight(k, horizon=50) for k in range(1, 20_001)]
    assert math.isclose(sum(weights), 1.0, abs_tol=1e-3)  # the tail beyond decays as 1/k
    for steps in (0, 1, 2, 50, 51, 52, 400):
        spent = sum(weights[:steps])
        assert math.isclose(onset_unspent(steps, horizon=50), 1.0 - spent, abs_tol=1e-12)


def test_at_the_null_boundary_the_detector_rarely_crosses_under_looks_at_every_step() -> None:
    """psi exactly at the anchor, 80 steps looked at one by one: crossings within alpha."""
    rng = np.random.default_rng(5)
    alpha, runs, crossed = 0.2, 100, 0
    p = 1.1 / 2.1  # equal exposures, canary's rate 1.1 x the baseline's
    for _ in range(runs):
        seq = RatioSequence((1.1,), detect=1.1)
        for k in rng.poisson(4.0, size=80):
            x = int(rng.binomial(k, p))
            seq.update(x, int(k) - x, 1.0, 1.0)
            if seq.detector() >= 1 / alpha:
                crossed += 1
                break
    # Ville gives <= 0.2; 0.32 is beyond the binomial noise of 100 runs at 0.2 (p < 0.01).
    assert crossed / runs <= 0.32


def test_a_late_regression_is_found_about_as_fast_as_one_present_from_the_start() -> None:
    """Errors x3 after 300 healthy steps: the cumulative e-process must first outweigh the
    healthy evidence; the detector does not."""
    alpha = 0.01

    def steps_to_detect(onset: int, seed: int) -> tuple[int, int]:
        rng = np.random.default_rng(seed)
        seq = RatioSequence((1.1,), detect=1.1)
        found: dict[str, int] = {}
        for t in range(onset + 400):
            rate = 0.3 if t >= onset else 0.1
            seq.update(int(rng.poisson(rate * 10)), int(rng.poisson(1.0)), 10.0, 10.0)
            if "detector" not in found and seq.detector() >= 1 / alpha:
                found["detector"] = t - onset
            if "cumulative" not in found and seq.e_value(1.1) >= 1 / alpha:
                found["cumulative"] = t - onset
        return found.get("detector", 10_000), found.get("cumulative", 10_000)

    start = [steps_to_detect(0, seed)[0] for seed in range(5)]
    late = [steps_to_detect(300, seed) for seed in range(5)]
    assert np.median([d for d, _ in late]) <= 1.5 * np.median(start) + 3
    assert np.median([c for _, c in late]) >= 3 * np.median([d for d, _ in late])


def test_a_restored_detector_goes_on_as_the_original() -> None:
    rng = np.random.default_rng(3)
    seq = RatioSequence((1.1, 1.5), detect=1.1)
    for _ in range(30):
        seq.update(int(rng.poisson(2)), int(rng.poisson(1)), 10.0, 10.0)
    restored = RatioSequence.from_state(orjson.loads(orjson.dumps(seq.to_state())))
    for _ in range(10):
        x, y = int(rng.poisson(3)), int(rng.poisson(1))
        seq.update(x, y, 10.0, 10.0)
        restored.update(x, y, 10.0, 10.0)
    assert (restored.steps, restored.mass, restored.detect) == (seq.steps, seq.mass, seq.detect)
    assert restored.detector() == seq.detector()


def _stored(seq: RatioSequence) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(seq.to_state()))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("detect", 1.3, "RatioSequence.detect: 1.3 is not one of the anchors"),
        ("mass", 1.5, "RatioSequence.mass: expected a share within [0, 1]"),
        ("steps", -1, "RatioSequence.steps: expected 0 without a detector, else a count"),
    ],
)
def test_a_damaged_detector_state_is_refused(field: str, value: Any, problem: str) -> None:
    state = _stored(RatioSequence((1.1, 1.5), detect=1.1).update(3, 1, 10.0, 10.0))
    state[field] = value
    with pytest.raises(StateFormatError) as refused:
        RatioSequence.from_state(state)
    assert str(refused.value) == problem


def test_a_sequence_stored_before_detectors_keeps_judging_by_its_cumulative_evidence() -> None:
    seq = RatioSequence((1.1, 1.5)).update(9, 2, 10.0, 10.0).update(7, 1, 10.0, 10.0)
    old = {k: v for k, v in _stored(seq).items() if k not in ("detect", "steps", "mass", "log_r")}
    upgraded = RatioSequence.from_state(RatioSequence.upgrade_state(old, 1.1))
    assert upgraded.detector() == seq.e_value(1.1)
    upgraded.update(5, 1, 10.0, 10.0)
    seq.update(5, 1, 10.0, 10.0)
    assert upgraded.detector() == seq.e_value(1.1)  # no onset mass: the cumulative test
    fresh = RatioSequence.from_state(
        RatioSequence.upgrade_state(_stored(RatioSequence((1.1,))), 1.1)
    )
    assert (fresh.steps, fresh.mass, fresh.detector()) == (0, 1.0, 1.0)


# --- restarted confidence sequences ----------------------------------------------------------


def test_each_restart_holds_the_observations_from_its_start() -> None:
    values = np.random.default_rng(2).normal(size=40)
    restarts = MeanRestarts(target=20, every=6, keep=3)
    for value in values:
        restarts.update(float(value))
    assert [number for number, _ in restarts.restarts] == [4, 5, 6]
    for number, seq in restarts.restarts:
        part = values[number * 6 :]
        assert seq.count == part.size
        assert math.isclose(seq.mean, part.mean(), abs_tol=1e-12)
        assert math.isclose(seq.variance, part.var(ddof=1), rel_tol=1e-9)


def test_a_restart_is_judged_at_its_share_of_alpha() -> None:
    restarts, whole = MeanRestarts(target=20, every=5, horizon=10), MeanSequence(target=20)
    before = [0.1, -0.2, 0.3, -0.1, 0.0, 0.2, -0.3, 0.1, -0.1, 0.0]  # wider than after
    for value in [*before, 1.0, 1.2, 0.8, 1.1, 0.9, 1.0, 1.05, 0.95]:
        restarts.update(value)
        whole.update(value)
    number, seq = restarts.restarts[1]  # observations 11.. : the shifted ones only
    assert (number, seq.count) == (2, 8)
    level = 0.01 * onset_weight(number + 1, 10)
    assert math.isclose(level, 0.01 * 0.5 * 0.75 / 10)
    # Parts 1-5, 6-10, 11-15, 16-18 (restart 3): all but 6-10, each about its own mean (the
    # last two have the same mean, so together they hold the restart's own spread).
    pooled = restarts.spread(whole, 1)
    assert seq.variance < pooled < whole.variance / 10  # the noise's, not the shift's
    assert math.isclose(pooled, (np.var(before[:5]) * 5 + seq.variance * 7) / (13 - 3))
    lower = seq.mean - seq.radius(level, pooled)
    assert restarts.exceeds(lower - 1e-9, 0.01, whole, 6)
    assert not restarts.exceeds(lower + 1e-9, 0.01, whole, 6)
    assert not restarts.exceeds(lower - 1e-9, 0.01, whole, seq.count + 1)  # too few yet


def test_a_restart_is_judged_on_the_noise_of_the_parts_but_the_one_before_it() -> None:
    # A shift of 6 sd after observation 32: in the part before restart 4 (observations 31-40).
    rng = np.random.default_rng(3)
    values = rng.normal(0.0, 0.5, 60) + np.where(np.arange(60) >= 32, 3.0, 0.0)
    whole, restarts = MeanSequence(), MeanRestarts(every=10, keep=3)
    for value in values:
        whole.update(float(value))
        restarts.update(float(value))
    assert [number for number, _ in restarts.restarts] == [3, 4, 5]
    parts = np.split(values, [30, 40, 50])
    assert [count for count, _ in restarts.parts(whole)] == [30, 10, 10, 10]
    for (_, m2), part in zip(restarts.parts(whole), parts, strict=True):
        assert math.isclose(m2, ((part - part.mean()) ** 2).sum(), rel_tol=1e-9)
    clean = [p for i, p in enumerate(parts) if i != 1]  # for restart 4, from observation 41
    pooled = sum(((p - p.mean()) ** 2).sum() for p in clean) / (50 - 3)
    assert math.isclose(restarts.spread(whole, 1), pooled, rel_tol=1e-9)
    assert 0.15 < restarts.spread(whole, 1) < 0.35  # the noise's 0.25
    assert restarts.spread(whole, 0) > 2 * restarts.spread(whole, 1)  # the shift counted
    assert whole.variance > 8 * restarts.spread(whole, 1)
    few = MeanRestarts(every=2)
    few_whole = MeanSequence()
    for value in (1.0, 2.0, 3.0):
        few.update(value)
        few_whole.update(value)
    assert math.isinf(few.spread(few_whole, 0))  # one degree of freedom left


@pytest.mark.parametrize(("every", "looks", "below"), [(6, 90, 0.0), (3, 60, 0.0), (3, 60, 4.0)])
def test_restarts_and_the_cumulative_sequence_rarely_exclude_a_mean_at_the_limit(
    every: int, looks: int, below: float
) -> None:
    """Gaussian differences with mean exactly at the limit, at every look: within alpha. With
    ``below``, the mean is that far under the limit until a random step, then at it: a
    restart after the step is judged on the noise alone (not on a spread the step inflates),
    and still keeps its share of alpha. ``every=3`` is the gauges' spacing."""
    rng = np.random.default_rng(8)
    alpha, runs, crossed = 0.1, 120, 0
    for _ in range(runs):
        whole = MeanSequence(target=30)
        restarts = MeanRestarts(target=30, every=every, horizon=60 // every)
        step = np.where(np.arange(looks) < rng.integers(6, looks - 10), -below, 0.0)
        for value in rng.normal(0.0, 1.0, size=looks) + step:
            whole.update(float(value))
            restarts.update(float(value))
            if whole.count < 6:
                continue
            if whole.mean - whole.radius(alpha * restarts.start_share()) > 0 or restarts.exceeds(
                0.0, alpha, whole, 6
            ):
                crossed += 1
                break
    assert crossed / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_restarts_find_a_late_shift_that_the_cumulative_sequence_does_not_yet() -> None:
    rng = np.random.default_rng(4)
    whole, restarts = MeanSequence(target=30), MeanRestarts(target=30, every=6, horizon=60)
    values = np.concatenate([rng.normal(0.0, 1.0, 300), rng.normal(2.0, 1.0, 60)])
    for value in values:
        whole.update(float(value))
        restarts.update(float(value))
    assert restarts.exceeds(1.0, 0.01, whole, 6)
    assert whole.mean - whole.radius(0.01 * restarts.start_share()) < 1.0
    assert norm.sf(2.0) > 0  # the shift is 2 sd: plain to see once it is looked at alone


def test_restarts_round_trip_and_an_old_stream_gets_none() -> None:
    restarts = MeanRestarts(target=20, every=3, horizon=20)
    for value in np.random.default_rng(1).normal(size=20):
        restarts.update(float(value))
    again = MeanRestarts.from_state(orjson.loads(orjson.dumps(restarts.to_state())))
    assert again.to_state() == restarts.to_state()
    old = MeanRestarts.from_state(MeanRestarts.upgrade_state(17, 20, 3, 20))
    for value in range(30):
        old.update(float(value))
    assert (old.live, old.restarts, old.start_share(), old.count) == (False, [], 1.0, 47)
    assert MeanRestarts.from_state(MeanRestarts.upgrade_state(0, 20)).live
