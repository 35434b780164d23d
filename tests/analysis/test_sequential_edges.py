"""Confidence bounds at the edges of the grid and beyond its resolution.

The bounds are checked against the brute-force inversion of the one-sided tests
(``tests/analysis/test_sequential.py``) where the evidence is one-sided (the maximum
likelihood at an end of the grid: every event from one cohort) and where it is so strong that
the interval is narrower than one step of the grid.
"""

from __future__ import annotations

import numpy as np
import pytest

from canarystream.analysis.sequential import RatioSequence
from tests.analysis.test_sequential import ANCHORS, _binomial_loglik, _bounds_by_brute_force

# name: (canary events, baseline events, canary exposure, baseline exposure) per stratum
EDGES = {
    "canary-errors-only": (40, 0, 100.0, 100.0),
    "canary-errors-only-at-length": (4_000, 0, 100.0, 100.0),
    "baseline-errors-only": (0, 40_000, 100.0, 100.0),
    "narrower-than-a-step": (1_300_000, 1_000_000, 1e7, 1e7),
}


@pytest.mark.parametrize("alpha", [0.01, 0.2])
@pytest.mark.parametrize("edge", sorted(EDGES))
def test_bounds_at_the_grid_ends_and_below_its_resolution_invert_the_tests(
    edge: str, alpha: float
) -> None:
    x, y, a, b = EDGES[edge]
    strata = tuple(np.full(5, value, dtype=float) for value in (x, y, a, b))
    seq = RatioSequence(ANCHORS)
    for _ in range(5):
        seq.update(x, y, a, b)
    lower, upper = _bounds_by_brute_force(seq.grid, _binomial_loglik(seq.grid.psi, strata), alpha)

    assert (seq.lower_bound(alpha), seq.upper_bound(alpha)) == (lower, upper)
    assert lower <= upper
