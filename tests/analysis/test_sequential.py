"""Validation of the sequential primitives against independent oracles.

Exact checks recompute log-likelihoods, e-values, confidence bounds and the Mantel-Haenszel
estimate with scipy from the grid and prior the object exposes. Simulation checks measure
error rates under continuous monitoring (a look after every stratum, or every few). Each
simulation has a fixed seed, and each of its thresholds is a one-sided binomial test at
p < 0.01 against a rate measured well below it (the margins are given beside each test), so
a failure points at a real loss of validity, not at Monte-Carlo noise.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from scipy import stats
from scipy.special import logsumexp

from canarystream.analysis.sequential import (
    MeanSequence,
    RatioGrid,
    RatioSequence,
    rate_upper_bound,
    ratio_grid,
)
from canarystream.errors import AnalysisError

ANCHORS = (1.0, 1.1)  # no change, and the default tolerance
ALPHAS = (0.05, 0.1, 0.2)
STAGES = (0.01, 0.05, 0.10, 0.25, 0.50)  # canary share of traffic, by rollout stage

Strata = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _not_above(failures: int, runs: int, rate: float) -> bool:
    """False when ``failures / runs`` exceeds ``rate`` by a one-sided binomial test at 1 %."""
    return stats.binomtest(failures, runs, rate, alternative="greater").pvalue >= 0.01


def _anchor_index(grid: RatioGrid, anchor: float) -> int:
    """Grid position of an anchor, found from the grid values alone."""
    (hits,) = np.nonzero(grid.log_psi == math.log(anchor))
    assert hits.size == 1, f"anchor {anchor} is not exactly on the grid"
    return int(hits[0])


def _strata(
    rng: np.random.Generator,
    count: int,
    *,
    psi: float,
    rate: float,
    requests: tuple[int, int],
    share: tuple[float, float],
    absent: float = 0.0,
) -> Strata:
    """Random strata (x, y, a, b): Poisson events on exposures that change every stratum.

    With probability ``absent`` one cohort has no exposure in a stratum (and so no events).
    """
    load = rng.integers(*requests, size=count).astype(float)
    canary_share = rng.uniform(*share, size=count)
    a = load * canary_share
    b = load - a
    gone = rng.random(count) < absent
    side = rng.random(count) < 0.5
    a[gone & side] = 0.0
    b[gone & ~side] = 0.0
    x = rng.poisson(rate * a * psi)
    y = rng.poisson(rate * b)
    return x, y, a, b


def _fold(seq: RatioSequence, strata: Strata) -> RatioSequence:
    for x, y, a, b in zip(*strata, strict=True):
        seq.update(int(x), int(y), float(a), float(b))
    return seq


def _binomial_loglik(psi: np.ndarray, strata: Strata) -> np.ndarray:
    """Sum over strata of ``log P(x | x + y)`` at every ``psi``, by ``scipy.stats.binom``."""
    x, y, a, b = strata
    p = a[:, None] * psi / (a[:, None] * psi + b[:, None])
    return stats.binom.logpmf(x[:, None], (x + y)[:, None], p).sum(axis=0)


def _mixture_log_e(grid: RatioGrid, loglik: np.ndarray, index: int, *, above: bool) -> float:
    """Log e-value at grid point ``index``: prior mixture over one side against that point."""
    side = slice(index + 1, None) if above else slice(0, index)
    prior = grid.log_prior[side]
    return float(
        logsumexp(prior + loglik[side]) - logsumexp(prior) - loglik[index],
    )


STRATA_PROFILES = {
    # name: keyword arguments of _strata
    "sparse": {"psi": 1.0, "rate": 0.002, "requests": (20, 400), "share": (0.01, 0.5)},
    "dense": {"psi": 1.3, "rate": 0.05, "requests": (1000, 5000), "share": (0.05, 0.5)},
    "lopsided": {"psi": 0.7, "rate": 0.02, "requests": (100, 3000), "share": (0.001, 0.999)},
    "absent-cohorts": {
        "psi": 2.0,
        "rate": 0.01,
        "requests": (100, 1000),
        "share": (0.05, 0.5),
        "absent": 0.2,
    },
}


# --- the grid ---------------------------------------------------------------------------


def test_grid_prior_is_standard_normal_on_log_psi_with_anchors_on_the_grid() -> None:
    grid = RatioSequence(anchors=(1.1, 1.0, 1.1)).grid

    assert grid.anchors == ANCHORS  # sorted, duplicates dropped
    assert grid is ratio_grid(ANCHORS)  # shared by every sequence with these anchors
    assert np.all(np.diff(grid.log_psi) > 0)
    assert grid.psi[0] == pytest.approx(math.exp(-4.0))
    assert grid.psi[-1] == pytest.approx(math.exp(4.0))
    assert np.max(np.diff(grid.log_psi)) <= 0.02 + 1e-12  # 2 % resolution
    for anchor in ANCHORS:
        assert grid.anchor_index[anchor] == _anchor_index(grid, anchor)
    prior = np.exp(grid.log_prior)
    assert prior.sum() == pytest.approx(1.0, rel=1e-12)
    expected = stats.norm.pdf(grid.log_psi)
    np.testing.assert_allclose(prior, expected / expected.sum(), rtol=1e-10)


def test_grid_rejects_non_positive_anchors() -> None:
    with pytest.raises(AnalysisError):
        RatioSequence(anchors=(1.0, 0.0))


def test_restored_sequence_shares_the_cached_grid() -> None:
    seq = RatioSequence(ANCHORS).update(3, 1, 10.0, 10.0)
    restored = RatioSequence.from_state(orjson.loads(orjson.dumps(seq.to_state())))

    assert restored.grid is ratio_grid(ANCHORS) is seq.grid


# --- exact agreement with scipy ---------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(STRATA_PROFILES))
def test_loglik_differences_equal_binomial_logpmf_sums(profile: str) -> None:
    rng = np.random.default_rng(sorted(STRATA_PROFILES).index(profile) + 11)
    strata = _strata(rng, 250, **STRATA_PROFILES[profile])
    seq = _fold(RatioSequence(ANCHORS), strata)

    oracle = _binomial_loglik(seq.grid.psi, strata)
    assert np.all(np.isfinite(oracle))
    x, y, a, b = strata
    scale = float(np.sum(x + y)) + 1.0
    references = [0, seq.grid.psi.size - 1, *seq.grid.anchor_index.values()]
    references += rng.choice(seq.grid.psi.size, size=5, replace=False).tolist()
    for ref in references:
        np.testing.assert_allclose(
            seq.loglik - seq.loglik[ref], oracle - oracle[ref], rtol=1e-9, atol=1e-11 * scale
        )
    informative = (a > 0) & (b > 0)
    assert seq.x_total == int(x[informative].sum())
    assert seq.y_total == int(y[informative].sum())


@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize(
    ("x", "y", "a", "b"),
    [
        (0, 3, 50.0, 950.0),
        (4, 1, 100.0, 100.0),
        (7, 2, 1.0, 9.0),
        (12, 0, 0.3, 0.7),
        (1, 40, 5.0, 5.0),
    ],
)
def test_e_value_of_one_stratum_equals_mixture_of_pmf_ratios(
    anchor: float, x: int, y: int, a: float, b: float
) -> None:
    seq = RatioSequence(ANCHORS).update(x, y, a, b)
    grid = seq.grid
    i = _anchor_index(grid, anchor)
    prior = np.exp(grid.log_prior[i + 1 :])
    p = a * grid.psi / (a * grid.psi + b)
    ratios = stats.binom.pmf(x, x + y, p[i + 1 :]) / stats.binom.pmf(x, x + y, p[i])

    assert seq.e_value(anchor) == pytest.approx(prior @ ratios / prior.sum(), rel=1e-9)


@pytest.mark.parametrize("psi", [0.7, 1.0, 1.25, 1.6])
def test_e_value_equals_brute_force_mixture_at_every_look(psi: float) -> None:
    rng = np.random.default_rng(int(psi * 100))
    strata = _strata(rng, 120, psi=psi, rate=0.01, requests=(200, 2000), share=(0.02, 0.5))
    seq = RatioSequence(ANCHORS)
    seen = []
    for t, stratum in enumerate(zip(*strata, strict=True), start=1):
        x, y, a, b = stratum
        seq.update(int(x), int(y), float(a), float(b))
        if t % 10:
            continue
        oracle = _binomial_loglik(seq.grid.psi, tuple(part[:t] for part in strata))
        for anchor in ANCHORS:
            index = _anchor_index(seq.grid, anchor)
            expected = _mixture_log_e(seq.grid, oracle, index, above=True)
            assert math.log(seq.e_value(anchor)) == pytest.approx(expected, rel=1e-9, abs=1e-9)
            seen.append(expected)
    if psi >= 1.25:  # the comparison covered decisive evidence, not only e-values near 1
        assert max(seen) > math.log(20.0)


def test_e_value_saturates_instead_of_overflowing() -> None:
    seq = RatioSequence(ANCHORS).update(5000, 0, 1.0, 1.0)
    assert seq.e_value(1.0) == math.exp(700.0)


def _bounds_by_brute_force(
    grid: RatioGrid, loglik: np.ndarray, alpha: float
) -> tuple[float, float]:
    """Invert the one-sided grid tests: the rejected ratios nearest the maximum likelihood."""
    threshold = math.log(1.0 / alpha)
    top = int(np.argmax(loglik))
    upper = math.inf
    for i in range(max(top, 1), grid.psi.size):
        if _mixture_log_e(grid, loglik, i, above=False) >= threshold:
            upper = float(grid.psi[i])
            break
    lower = 0.0
    for i in range(min(top, grid.psi.size - 2), -1, -1):
        if _mixture_log_e(grid, loglik, i, above=True) >= threshold:
            lower = float(grid.psi[i])
            break
    return lower, upper


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
@pytest.mark.parametrize("profile", sorted(STRATA_PROFILES))
def test_bounds_invert_the_brute_force_one_sided_tests(alpha: float, profile: str) -> None:
    rng = np.random.default_rng(sorted(STRATA_PROFILES).index(profile) + 31)
    strata = _strata(rng, 60, **STRATA_PROFILES[profile])
    seq = RatioSequence(ANCHORS)
    done = 0
    for cut in (5, 20, 60):
        _fold(seq, tuple(part[done:cut] for part in strata))
        done = cut
        oracle = _binomial_loglik(seq.grid.psi, tuple(part[:cut] for part in strata))
        lower, upper = _bounds_by_brute_force(seq.grid, oracle, alpha)

        assert seq.lower_bound(alpha) == lower
        assert seq.upper_bound(alpha) == upper
        assert lower <= seq.grid.psi[int(np.argmax(seq.loglik))] <= upper


def test_bounds_before_any_evidence_are_vacuous() -> None:
    seq = RatioSequence(ANCHORS).update(0, 0, 10.0, 10.0).update(3, 0, 0.0, 10.0)
    assert seq.upper_bound(0.05) == math.inf
    assert seq.lower_bound(0.05) == 0.0
    assert seq.e_value(1.0) == pytest.approx(1.0)
    assert seq.estimate() is None


def test_rejecting_an_anchor_puts_the_lower_bound_at_or_above_it() -> None:
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(40):
        psi = float(rng.uniform(1.0, 2.5))
        strata = _strata(rng, 30, psi=psi, rate=0.01, requests=(200, 1000), share=(0.1, 0.5))
        seq = _fold(RatioSequence(ANCHORS), strata)
        for anchor in ANCHORS:
            for alpha in ALPHAS:
                if seq.e_value(anchor) >= 1.0 / alpha:
                    checked += 1
                    assert seq.lower_bound(alpha) >= anchor
    assert checked > 20


# --- Mantel-Haenszel estimate -----------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(STRATA_PROFILES))
def test_estimate_is_the_mantel_haenszel_rate_ratio(profile: str) -> None:
    rng = np.random.default_rng(sorted(STRATA_PROFILES).index(profile) + 51)
    strata = _strata(rng, 200, **STRATA_PROFILES[profile])
    seq = _fold(RatioSequence(ANCHORS), strata)

    x, y, a, b = strata
    keep = (a > 0) & (b > 0)
    x, y, a, b = x[keep], y[keep], a[keep], b[keep]
    # Rothman & Greenland: sum x_i b_i / T_i over sum y_i a_i / T_i, T_i = a_i + b_i.
    expected = np.sum(x * b / (a + b)) / np.sum(y * a / (a + b))
    assert seq.estimate() == pytest.approx(expected, rel=1e-12)


def test_estimate_is_consistent_and_ignores_exposure_units() -> None:
    rng = np.random.default_rng(8)
    strata = _strata(rng, 2000, psi=2.0, rate=0.02, requests=(200, 2000), share=(0.01, 0.5))
    seq = _fold(RatioSequence(ANCHORS), strata)
    x, y, a, b = strata
    scale = rng.uniform(0.001, 1000.0, size=a.size)  # e.g. requests vs expected shares
    rescaled = _fold(RatioSequence(ANCHORS), (x, y, a * scale, b * scale))

    # About 4,000 canary events: the standard error of log psi is ~0.02.
    assert seq.estimate() == pytest.approx(2.0, rel=0.08)
    assert rescaled.estimate() == pytest.approx(seq.estimate(), rel=1e-12)
    assert seq.lower_bound(0.05) < 2.0 < seq.upper_bound(0.05)


def test_estimate_edge_cases() -> None:
    assert RatioSequence().estimate() is None
    assert RatioSequence().update(3, 0, 1.0, 1.0).estimate() == math.inf
    assert RatioSequence().update(0, 4, 1.0, 1.0).estimate() == 0.0
    assert RatioSequence().update(6, 3, 2.0, 3.0).estimate() == pytest.approx((6 / 2) / (3 / 3))


def test_update_rejects_negative_counts_and_exposures() -> None:
    for bad in [(-1, 0, 1.0, 1.0), (0, -1, 1.0, 1.0), (0, 0, -1.0, 1.0), (0, 0, 1.0, -1.0)]:
        with pytest.raises(AnalysisError):
            RatioSequence().update(*bad)


# --- sampling without replacement: the convex-order argument ----------------------------

# (canary requests, baseline requests, errors among them)
HYPERGEOMETRIC = [
    (5, 95, 10),
    (50, 50, 30),
    (10, 10, 10),
    (1, 99, 20),
    (25, 75, 60),
    (200, 800, 100),
]


@pytest.mark.parametrize(("n_c", "n_b", "errors"), HYPERGEOMETRIC)
def test_hypergeometric_counts_keep_expected_likelihood_ratios_at_most_one(
    n_c: int, n_b: int, errors: int
) -> None:
    """Fixed requests with equal error probability: given the errors, x is hypergeometric.

    Hypergeometric is smaller than the binomial in convex order (Hoeffding 1963) and each
    likelihood ratio is convex in x, so E[LR] <= 1 for every alternative above the anchor and
    the e-value's expectation is at most one. Computed exactly over the support.
    """
    support = np.arange(max(0, errors - n_b), min(errors, n_c) + 1)
    pmf = stats.hypergeom.pmf(support, n_c + n_b, errors, n_c)
    assert pmf.sum() == pytest.approx(1.0)
    sequences = [RatioSequence(ANCHORS).update(int(x), errors - int(x), n_c, n_b) for x in support]
    for anchor in ANCHORS:
        i = _anchor_index(sequences[0].grid, anchor)
        ratios = np.exp(np.array([seq.loglik[i + 1 :] - seq.loglik[i] for seq in sequences]))
        assert np.max(pmf @ ratios) <= 1.0 + 1e-12
        e_values = np.array([seq.e_value(anchor) for seq in sequences])
        assert pmf @ e_values <= 1.0 + 1e-12


def test_hypergeometric_expectation_holds_across_two_strata() -> None:
    """The mixture over two independent strata with different shares still has E[e] <= 1."""
    (n_c, n_b, k1), (m_c, m_b, k2) = (10, 90, 8), (40, 60, 12)
    xs1 = np.arange(0, k1 + 1)
    xs2 = np.arange(0, k2 + 1)
    p1 = stats.hypergeom.pmf(xs1, n_c + n_b, k1, n_c)
    p2 = stats.hypergeom.pmf(xs2, m_c + m_b, k2, m_c)
    expected = 0.0
    for x1, q1 in zip(xs1.tolist(), p1, strict=True):
        for x2, q2 in zip(xs2.tolist(), p2, strict=True):
            seq = RatioSequence(ANCHORS).update(x1, k1 - x1, n_c, n_b)
            expected += q1 * q2 * seq.update(x2, k2 - x2, m_c, m_b).e_value(1.0)
    # Well below one (the hypergeometric is less dispersed), but not trivially so.
    assert 0.3 < expected <= 1.0


@pytest.mark.parametrize("baseline_rate", [0.001, 0.01, 0.1])
def test_bernoulli_requests_under_the_tolerance_keep_expected_e_value_at_most_one(
    baseline_rate: float,
) -> None:
    """Canary error probability 5 % above baseline, tolerance 10 %: a composite null.

    Given the errors, x follows Fisher's noncentral hypergeometric law with the odds ratio.
    At error rates up to 10 % the odds ratio stays under the tolerance and E[e] <= 1 for
    every total. (The model is one of rate ratios: at error rates near 50 % the odds ratio of
    a 1.05 risk ratio exceeds 1.1 and this expectation reaches ~1.001.)
    """
    n_c, n_b = 40, 160
    p_c = 1.05 * baseline_rate
    odds = p_c * (1 - baseline_rate) / (baseline_rate * (1 - p_c))
    worst = 0.0
    for errors in range(1, 61):
        support = np.arange(max(0, errors - n_b), min(errors, n_c) + 1)
        pmf = stats.nchypergeom_fisher.pmf(support, n_c + n_b, n_c, errors, odds)
        e_values = [
            RatioSequence(ANCHORS).update(int(x), errors - int(x), n_c, n_b).e_value(1.1)
            for x in support
        ]
        worst = max(worst, float(pmf @ np.array(e_values)))
    assert worst <= 1.0


# --- validity under continuous monitoring -----------------------------------------------


def _schedule(
    kind: str, rng: np.random.Generator, strata: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exposures (a, b) and the shared per-request event rate for one rollout.

    ``steady``: 5 % canary share of a constant load. ``staged``: the share steps through
    1, 5, 10, 25, 50 %, the load swings (daily-like cycle times noise) and 5 % of strata are
    incidents where both cohorts' error rate jumps tenfold.
    """
    t = np.arange(strata)
    if kind == "steady":
        share = np.full(strata, 0.05)
        load = np.full(strata, 2000.0)
        rate = np.full(strata, 0.01)
    else:
        share = np.asarray(STAGES)[t * len(STAGES) // strata]
        load = 2000.0 * (1.0 + 0.8 * np.sin(2 * np.pi * t / 40)) * rng.lognormal(0, 0.3, strata)
        rate = 0.005 * np.where(rng.random(strata) < 0.05, 10.0, 1.0)
    a = share * load
    return a, load - a, rate


def _max_log_e(
    x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, anchors: tuple[float, ...]
) -> dict[float, np.ndarray]:
    """Running maximum over every look of each run's log e-value, clipped below at 0.

    Vectorised over runs, from the binomial likelihood ``x log p + y log(1 - p)`` on the
    class's grid and prior (independent of the class's ``log1p`` parametrisation). One
    exponential serves all anchors: ``e(anchor)`` is a weighted sum of ``L_j / L_lowest``
    rescaled by ``L_lowest / L_anchor``. When that shared sum underflows for a higher anchor,
    its likelihood is already falling above the anchor, so its e-value is below 1 and the
    clip at 0 makes the result exact.
    """
    grid = RatioSequence(anchors).grid
    runs, strata = x.shape
    low = _anchor_index(grid, min(anchors))
    weights = np.zeros((grid.psi.size - low - 1, len(anchors)))
    indices = []
    for k, anchor in enumerate(anchors):
        i = _anchor_index(grid, anchor)
        prior = np.exp(grid.log_prior[i + 1 :])
        weights[i - low :, k] = prior / prior.sum()
        indices.append(i)
    counts = np.ascontiguousarray(np.stack([x.T, y.T], axis=2), dtype=np.float64)
    loglik = np.zeros((runs, grid.psi.size))
    rel = np.empty((runs, grid.psi.size - low - 1))
    best = np.zeros((runs, len(anchors)))
    with np.errstate(divide="ignore"):
        for t in range(strata):
            p = a[t] * grid.psi / (a[t] * grid.psi + b[t])
            loglik += counts[t] @ np.vstack([np.log(p), np.log1p(-p)])
            np.subtract(loglik[:, low + 1 :], loglik[:, low : low + 1], out=rel)
            top = rel.max(axis=1, keepdims=True)
            rel -= top
            np.exp(rel, out=rel)
            log_e = np.log(rel @ weights) + top
            log_e += loglik[:, [low]] - loglik[:, indices]
            np.maximum(best, log_e, out=best)
    return {anchor: best[:, k] for k, anchor in enumerate(anchors)}


def _null_runs(kind: str, psi: float, seed: int, runs: int, strata: int) -> Strata:
    """Counts of ``runs`` rollouts (rows) on one shared schedule, true ratio ``psi``."""
    rng = np.random.default_rng(seed)
    a, b, rate = _schedule(kind, rng, strata)
    x = rng.poisson(rate * a * psi, size=(runs, strata))
    y = rng.poisson(rate * b, size=(runs, strata))
    return x, y, a, b


NULL_SCENARIOS = [
    pytest.param("steady", 1.0, id="aa-steady-5pct"),
    pytest.param("staged", 1.0, id="aa-staged-load-swings-incidents"),
    pytest.param("staged", 0.8, id="composite-psi-0.8"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "psi"), NULL_SCENARIOS)
def test_e_process_false_crossings_stay_below_alpha_under_continuous_monitoring(
    kind: str, psi: float
) -> None:
    """Ville's inequality: P(e ever >= 1/alpha) <= alpha, looking after every stratum.

    1,000 rollouts of 300 strata each; both anchors are true nulls (psi <= 1.0 <= 1.1).
    Measured crossing rates, anchor 1.0 / 1.1: 1.8-2.3 % / 0.3-0.5 % at alpha = 5 % and
    9-12 % / 2-5 % at alpha = 20 % (lower still for psi = 0.8). The binomial test flags a
    rate above alpha from 6.8 % observed at alpha = 5 % (12.4 % at 10 %, 23.1 % at 20 %):
    about 10 sigma above the measured rates. An e-value inflated twofold, by contrast,
    crosses 1/alpha in 25 % of the staged runs at alpha = 20 % and fails.
    """
    x, y, a, b = _null_runs(kind, psi, seed=2024, runs=1000, strata=300)
    best = _max_log_e(x, y, a, b, ANCHORS)
    for anchor in ANCHORS:
        for alpha in ALPHAS:
            crossed = int(np.count_nonzero(best[anchor] >= math.log(1.0 / alpha)))
            assert _not_above(crossed, x.shape[0], alpha), (anchor, alpha, crossed)
    # The simulation is not vacuous: under the A/A null, anchor 1.0 does cross sometimes.
    if psi == 1.0:
        assert np.count_nonzero(best[1.0] >= math.log(10.0)) > 20


def test_vectorised_monitoring_matches_the_class_look_by_look() -> None:
    """The simulation above follows exactly what RatioSequence reports after every stratum."""
    x, y, a, b = _null_runs("staged", 1.0, seed=2024, runs=40, strata=300)
    best = _max_log_e(x, y, a, b, ANCHORS)
    for run in range(x.shape[0]):
        seq = RatioSequence(ANCHORS)
        seen = dict.fromkeys(ANCHORS, 0.0)
        for t in range(x.shape[1]):
            seq.update(int(x[run, t]), int(y[run, t]), float(a[t]), float(b[t]))
            for anchor in ANCHORS:
                seen[anchor] = max(seen[anchor], math.log(seq.e_value(anchor)))
        for anchor in ANCHORS:
            assert seen[anchor] == pytest.approx(best[anchor][run], abs=1e-8)


def _coverage_misses(
    psi: float, alphas: tuple[float, ...], seed: int, runs: int, strata: int, every: int
) -> dict[float, tuple[int, int]]:
    """Runs in which the upper (lower) bound was ever below (above) the true ``psi``."""
    x, y, a, b = _null_runs("staged", psi, seed=seed, runs=runs, strata=strata)
    misses = {alpha: [0, 0] for alpha in alphas}
    for run in range(runs):
        seq = RatioSequence(ANCHORS)
        missed = {alpha: [False, False] for alpha in alphas}
        for t in range(strata):
            seq.update(int(x[run, t]), int(y[run, t]), float(a[t]), float(b[t]))
            if (t + 1) % every:
                continue
            for alpha in alphas:
                missed[alpha][0] |= seq.upper_bound(alpha) < psi
                missed[alpha][1] |= seq.lower_bound(alpha) > psi
        for alpha in alphas:
            misses[alpha][0] += missed[alpha][0]
            misses[alpha][1] += missed[alpha][1]
    return {alpha: (upper, lower) for alpha, (upper, lower) in misses.items()}


@pytest.mark.slow
@pytest.mark.parametrize("psi", [1.0, 1.37], ids=["on-grid", "between-grid-points"])
def test_confidence_bounds_cover_under_continuous_monitoring(psi: float) -> None:
    """P(upper bound ever < psi) <= alpha and P(lower bound ever > psi) <= alpha.

    300 staged rollouts of 150 strata, bounds read every 5 strata. Measured miss rates are
    0.3-2.7 % at alpha = 5 % and 6-12 % at alpha = 20 %; failing needs a rate that a
    binomial test at p < 0.01 puts above alpha (from 8.3 % and 26 % observed), > 6 sigma away.
    """
    runs = 300
    misses = _coverage_misses(psi, (0.05, 0.2), seed=77, runs=runs, strata=150, every=5)
    for alpha, (upper, lower) in misses.items():
        assert _not_above(upper, runs, alpha), ("upper", alpha, upper)
        assert _not_above(lower, runs, alpha), ("lower", alpha, lower)


def test_a_doubled_rate_is_detected_with_modest_counts() -> None:
    """psi = 2 at a 10 % share: ~1 canary error per stratum against ~4.5 baseline ones.

    Over 60 strata (about 60 canary errors, 30 expected without the regression) the
    e-process against the 10 % tolerance crosses 20 in 91 % of runs (median after 23
    strata); the test asks for 80 %, 5 binomial standard errors below.
    """
    rng = np.random.default_rng(99)
    runs, strata = 200, 60
    x = rng.poisson(0.005 * 100 * 2.0, size=(runs, strata))
    y = rng.poisson(0.005 * 900, size=(runs, strata))
    detected = 0
    for run in range(runs):
        seq = RatioSequence(ANCHORS)
        for t in range(strata):
            seq.update(int(x[run, t]), int(y[run, t]), 100.0, 900.0)
            if seq.e_value(1.1) >= 20.0:
                detected += 1
                assert seq.lower_bound(0.05) >= 1.1
                break
    assert detected >= 0.80 * runs


# --- stored state -----------------------------------------------------------------------


def test_ratio_sequence_state_round_trip_continues_identically() -> None:
    x, y, a, b = _strata(
        np.random.default_rng(4), 80, psi=1.4, rate=0.01, requests=(100, 1000), share=(0.05, 0.5)
    )
    strata = list(zip(x.tolist(), y.tolist(), a.tolist(), b.tolist(), strict=True))
    seq = RatioSequence(ANCHORS)
    for stratum in strata[:40]:
        seq.update(*stratum)
    restored = RatioSequence.from_state(orjson.loads(orjson.dumps(seq.to_state())))
    assert restored.grid is seq.grid
    for stratum in strata[40:]:
        seq.update(*stratum)
        restored.update(*stratum)

    np.testing.assert_array_equal(restored.loglik, seq.loglik)
    assert (restored.x_total, restored.y_total) == (seq.x_total, seq.y_total)
    assert restored.estimate() == seq.estimate()
    for anchor in ANCHORS:
        assert restored.e_value(anchor) == seq.e_value(anchor)
    for alpha in ALPHAS:
        assert restored.upper_bound(alpha) == seq.upper_bound(alpha)
        assert restored.lower_bound(alpha) == seq.lower_bound(alpha)


def test_mean_sequence_state_round_trip_continues_identically() -> None:
    values = np.random.default_rng(6).normal(2.0, 3.0, 200).tolist()
    seq = MeanSequence(target=30)
    for value in values[:100]:
        seq.update(value)
    restored = MeanSequence.from_state(orjson.loads(orjson.dumps(seq.to_state())))
    for value in values[100:]:
        seq.update(value)
        restored.update(value)

    assert (restored.count, restored.mean, restored.variance) == (seq.count, seq.mean, seq.variance)
    assert restored.interval(0.05) == seq.interval(0.05)


# --- MeanSequence -----------------------------------------------------------------------


def _rho2(alpha: float, target: int) -> float:
    """Mixing variance making the normal-mixture boundary tightest at ``target`` (intrinsic
    time of the standardised sum), as in Howard et al. (2021) and Waudby-Smith et al. (2021)."""
    return (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / target


def _closed_form_radius(values: np.ndarray, alpha: float, target: int) -> float:
    """Robbins' normal-mixture boundary on the standardised sum, divided by ``t``.

    The plug-in standard deviation is widened by ``sqrt((t + 1) / (t - 1))``, which tends to
    one, so the sequence keeps the asymptotic guarantee of Waudby-Smith et al., Thm 2.2.
    """
    t = values.size
    sigma2 = max(float(np.var(values, ddof=1)), 1e-8) * (t + 1) / (t - 1)
    rho2 = _rho2(alpha, target)
    v = t * rho2 + 1
    return math.sqrt(sigma2) * math.sqrt(2 * v / (t**2 * rho2) * math.log(math.sqrt(v) / alpha))


@pytest.mark.parametrize("target", [1, 20, 500])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
def test_mean_sequence_matches_the_closed_form(target: int, alpha: float) -> None:
    values = np.random.default_rng(target).lognormal(1.0, 0.8, 400)
    seq = MeanSequence(target=target)
    for t, value in enumerate(values.tolist(), start=1):
        seq.update(value)
        if t in (2, 3, 10, 57, 400):
            seen = values[:t]
            assert seq.mean == pytest.approx(np.mean(seen), rel=1e-12)
            assert seq.variance == pytest.approx(np.var(seen, ddof=1), rel=1e-9)
            radius = seq.radius(alpha)
            assert radius == pytest.approx(_closed_form_radius(seen, alpha, target), rel=1e-9)
            # The boundary is where Robbins' normal-mixture martingale of the standardised
            # sum z (intrinsic time t, mixing variance rho^2) reaches 1 / alpha.
            rho2 = _rho2(alpha, target)
            z = t * radius / math.sqrt(seq.variance * (t + 1) / (t - 1))
            log_m = -0.5 * math.log1p(rho2 * t) + rho2 * z**2 / (2 * (1 + rho2 * t))
            assert log_m == pytest.approx(math.log(1 / alpha), rel=1e-9)
            assert seq.interval(alpha) == (seq.mean - radius, seq.mean + radius)


def test_mean_sequence_width_follows_the_units_of_the_data() -> None:
    """Scaling the stream scales the interval; shifting it moves the interval unchanged."""
    values = np.random.default_rng(21).normal(0.3, 1.0, 50)
    base, scaled, shifted = MeanSequence(), MeanSequence(), MeanSequence()
    for value in values.tolist():
        base.update(value)
        scaled.update(value * 1e-3)  # e.g. a CPU share rather than milli-cores
        shifted.update(value + 250.0)
    assert scaled.radius(0.05) == pytest.approx(base.radius(0.05) * 1e-3, rel=1e-9)
    assert shifted.radius(0.05) == pytest.approx(base.radius(0.05), rel=1e-9)


def test_mean_sequence_is_stable_far_from_zero_and_floors_the_variance() -> None:
    values = 1e9 + np.random.default_rng(3).normal(0.0, 1.0, 5000)
    seq = MeanSequence()
    for value in values.tolist():
        seq.update(value)
    # Welford's update keeps the variance of a stream sitting at 1e9 (a naive sum of squares
    # would lose it entirely); the mean is exact to a few ulps of 1e9.
    assert seq.mean == pytest.approx(np.mean(values), rel=1e-14)
    assert seq.variance == pytest.approx(np.var(values, ddof=1), rel=1e-6)

    constant = MeanSequence(min_variance=1e-6)
    for _ in range(50):
        constant.update(4.2)
    assert constant.variance == 1e-6
    assert 0.0 < constant.radius(0.05) < 1.0


def test_mean_sequence_needs_two_values_and_a_positive_target() -> None:
    seq = MeanSequence()
    assert seq.radius(0.05) == math.inf
    seq.update(1.0)
    assert seq.interval(0.05) == (-math.inf, math.inf)
    with pytest.raises(AnalysisError):
        MeanSequence(target=0)


def test_mean_sequence_radius_shrinks_like_sqrt_log_t_over_t() -> None:
    values = np.random.default_rng(12).normal(0.0, 1.0, 10_000)
    seq = MeanSequence()
    radii = {}
    for t, value in enumerate(values.tolist(), start=1):
        seq.update(value)
        if t in (10, 100, 1000, 10_000):
            radii[t] = seq.radius(0.05)
            # Wider than the fixed-sample 95 % interval (the price of looking at every t),
            # but only by a logarithmic factor.
            fixed = stats.norm.ppf(0.975) * math.sqrt(seq.variance / t)
            assert 1.0 < radii[t] / fixed < 2.5
    assert radii[10] > radii[100] > radii[1000] > radii[10_000]
    assert radii[10_000] / radii[100] < 0.15
    assert seq.radius(0.01) > seq.radius(0.05) > seq.radius(0.2)


def _mean_misses(samples: np.ndarray, mean: float, alpha: float) -> dict[str, int]:
    """Runs whose interval ever misses ``mean``: on either side from the 20th value on, and
    on each side from the 6th value on (the burn-in the gauge check uses by default)."""
    missed = {"both-from-20": 0, "above-from-6": 0, "below-from-6": 0}
    for row in samples:
        seq = MeanSequence(target=20)
        both = above = below = False
        for t, value in enumerate(row.tolist(), start=1):
            seq.update(value)
            if t < 6:
                continue
            radius = seq.radius(alpha)
            above |= seq.mean - radius > mean
            below |= seq.mean + radius < mean
            both |= t >= 20 and abs(seq.mean - mean) > radius
        missed["both-from-20"] += both
        missed["above-from-6"] += above
        missed["below-from-6"] += below
    return missed


@pytest.mark.slow
def test_mean_sequence_coverage_under_repeated_looks_gaussian() -> None:
    """Time-uniform coverage for Gaussian data, looking at every value up to the 300th.

    The sequence is only asymptotically valid (the running variance stands in for the true
    one), so looks start after a burn-in. Measured at alpha = 5 % over 2,000 runs: 2.8 %
    two-sided from the 20th value, 2.5 % per side from the 6th (from the 2nd value on it
    is ~17 %). The binomial test at p < 0.01 fails only from 6.2 % observed, > 9 sigma away.
    """
    rng = np.random.default_rng(404)
    runs, alpha = 2000, 0.05
    missed = _mean_misses(rng.normal(3.0, 2.0, size=(runs, 300)), 3.0, alpha)
    for kind, count in missed.items():
        assert _not_above(count, runs, alpha), (kind, count)


@pytest.mark.slow
def test_mean_sequence_coverage_under_repeated_looks_skewed() -> None:
    """Coverage for centred lognormal(0, 0.5) data (skewness 1.75), with slack.

    Skew makes the running variance too small while the mean is still low, so misses fall
    below the mean and the asymptotic guarantee arrives later. Measured at alpha = 5 %:
    5.5 % two-sided from the 20th value, 0.6 % above and 12 % below from the 6th. Allowed:
    1.5 alpha from the 20th value (flags from 9 % observed, ~7 sigma away) and alpha for a
    false "above" (the side a right-skewed stream cannot fake).
    """
    rng = np.random.default_rng(405)
    runs, alpha = 2000, 0.05
    samples = rng.lognormal(0.0, 0.5, size=(runs, 300)) - math.exp(0.125)
    missed = _mean_misses(samples, 0.0, alpha)
    assert _not_above(missed["both-from-20"], runs, 1.5 * alpha), missed
    assert _not_above(missed["above-from-6"], runs, alpha), missed


def test_rate_upper_bound_covers_the_true_rate_at_every_look() -> None:
    """Simulation oracle: under repeated looks the bound falls below the true rate in at
    most alpha of the streams (Ville), and it is never tighter than the fixed-n exact bound."""
    rng = np.random.default_rng(7)
    alpha, rate, runs, looks = 0.1, 0.01, 300, range(50, 3001, 50)
    misses = 0
    for _ in range(runs):
        draws = np.cumsum(rng.random(3000) < rate)
        if any(rate_upper_bound(int(draws[n - 1]), n, alpha) < rate for n in looks):
            misses += 1
    assert misses / runs <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / runs)
    for events, trials in ((0, 100), (3, 500), (40, 1000)):
        exact = stats.beta.ppf(1 - alpha, events + 1, trials - events)
        assert rate_upper_bound(events, trials, alpha) >= exact
