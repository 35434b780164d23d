"""An independent account of the ratio tests' e-values and bounds, for checking them.

:class:`MixtureOracle` takes a grid of ratios with its log prior (the product's, which is
the statement of the test) and accumulates the log likelihood of each stratum with
``scipy.stats.binom``: given ``x + y`` events, ``x`` is binomial with success probability
``a psi / (a psi + b)``. From that it computes, by the definitions and one point at a
time, the e-value against ``psi <= anchor`` (the prior mixture above the anchor over the
likelihood at it), the anytime-valid bounds (the first ratio that the mixture on its far
side rejects at ``1 / alpha``), and the change detector: the same e-value computed afresh
from each onset's strata on, weighted by the onset prior.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp
from scipy.stats import binom

from canarystream.analysis.sequential import onset_unspent, onset_weight

__all__ = ["MixtureOracle"]


class MixtureOracle:
    """Log likelihood over ``psi`` of binomial strata, and the tests built on it."""

    def __init__(self, psi: np.ndarray, log_prior: np.ndarray) -> None:
        self.psi = np.asarray(psi, dtype=float)
        self.prior = np.asarray(log_prior, dtype=float)
        self.loglik = np.zeros_like(self.psi)
        self.strata: list[np.ndarray] = []  # each informative stratum's log likelihood

    def add(self, x: int, y: int, a: float, b: float) -> MixtureOracle:
        """One stratum: ``x`` events of exposure ``a`` and ``y`` of exposure ``b``."""
        if x + y and a and b:
            step = binom.logpmf(x, x + y, a * self.psi / (a * self.psi + b))
            self.loglik = self.loglik + step
            self.strata.append(step)
        return self

    def detector(self, anchor: float) -> float:
        """sum over onsets s of prior(s) x the e-value of the strata from s on, plus the
        prior mass of onsets still to come."""
        index = int(np.flatnonzero(np.isclose(self.psi, anchor, rtol=1e-12))[0])
        above = slice(index + 1, None)
        total = onset_unspent(len(self.strata))
        for start in range(len(self.strata)):
            loglik = np.sum(self.strata[start:], axis=0)
            log_e = logsumexp(self.prior[above] + loglik[above]) - logsumexp(self.prior[above])
            total += onset_weight(start + 1) * math.exp(min(float(log_e - loglik[index]), 700.0))
        return total

    def _log_e(self, index: int, side: slice) -> float:
        mixture = logsumexp(self.prior[side] + self.loglik[side]) - logsumexp(self.prior[side])
        return float(mixture - self.loglik[index])

    def e_value(self, anchor: float) -> float:
        """The e-value against ``psi <= anchor`` (``anchor`` a point of the grid)."""
        index = int(np.flatnonzero(np.isclose(self.psi, anchor, rtol=1e-12))[0])
        return math.exp(min(self._log_e(index, slice(index + 1, None)), 700.0))

    def upper(self, alpha: float) -> float:
        """The smallest ratio at or above the likeliest whose mixture below rejects it."""
        for j in range(max(int(np.argmax(self.loglik)), 1), self.psi.size):
            if self._log_e(j, slice(0, j)) >= math.log(1.0 / alpha):
                return float(self.psi[j])
        return math.inf

    def lower(self, alpha: float) -> float:
        """The largest ratio at or below the likeliest whose mixture above rejects it."""
        found = 0.0
        for j in range(min(int(np.argmax(self.loglik)) + 1, self.psi.size - 1)):
            if self._log_e(j, slice(j + 1, None)) >= math.log(1.0 / alpha):
                found = float(self.psi[j])
        return found
