"""Anytime-valid sequential statistics: e-processes and confidence sequences.

Two primitives serve every check:

* :class:`RatioSequence` — inference on a rate ratio ``psi`` from counts that are
  conditionally binomial given their exposures. Conditioning on *which cohort each event
  came from* (Lindon, Sanden, Shirikian, KDD 2022) removes the shared nuisance: a load ramp
  or an incident that moves both cohorts together cancels out. A discrete mixture over
  ``log psi`` gives an e-process (Ville's inequality bounds the chance it ever crosses
  ``1/alpha`` under the null, however often it is looked at) and, inverted, a confidence
  sequence (Howard et al. 2021).
* :class:`MeanSequence` — an asymptotic confidence sequence for the mean of a stream
  (Waudby-Smith, Arnold, Wu, Howard, Ramdas 2021, "Time-uniform central limit theory"),
  using Robbins' normal-mixture boundary with a running variance.

and :func:`rate_upper_bound`, a confidence sequence for one Bernoulli rate (the canary's own
error rate), used when no ratio can be judged because neither cohort has any errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from canarystream.analysis.state import Reader, State, reader
from canarystream.errors import AnalysisError

__all__ = ["MeanSequence", "RatioGrid", "RatioSequence", "rate_upper_bound"]

_LOG_STEP = 0.02  # 2 % resolution of the reported bounds
_LOG_SPAN = 4.0  # psi from e^-4 (0.018) to e^4 (54.6)


def rate_upper_bound(events: int, trials: int, alpha: float) -> float:
    """Anytime-valid upper confidence bound on a Bernoulli rate after ``events`` in ``trials``.

    The conjugate Beta(1, 1) mixture of likelihood ratios is a nonnegative martingale under
    any fixed rate ``p``: ``M(p) = B(1 + x, 1 + n - x) / (p^x (1 - p)^(n - x))``. By Ville's
    inequality ``{p : M(p) < 1/alpha}`` covers the true rate at every ``n`` at once with
    probability ``1 - alpha`` (Howard et al. 2021), so the bound may be looked at every tick.

    >>> round(rate_upper_bound(0, 2000, 0.1), 3)  # about log((n + 1) / alpha) / n
    0.005
    >>> rate_upper_bound(0, 0, 0.1)
    1.0
    """
    if trials <= 0:
        return 1.0
    if not 0 <= events <= trials:
        raise AnalysisError(f"events must be within 0..trials, got {events} of {trials}")
    log_threshold = math.log(1.0 / alpha)
    log_mix = math.lgamma(1 + events) + math.lgamma(1 + trials - events) - math.lgamma(2 + trials)

    def log_martingale(p: float) -> float:
        log_lik = (events * math.log(p) if events else 0.0) + (trials - events) * math.log1p(-p)
        return log_mix - log_lik

    lo, hi = events / trials, 1.0 - 1e-12
    if log_martingale(hi) < log_threshold:
        return 1.0
    for _ in range(60):  # bisection: M(p) grows with p above the estimate
        mid = (lo + hi) / 2
        if log_martingale(mid) < log_threshold:
            lo = mid
        else:
            hi = mid
    return hi


class RatioGrid:
    """The discrete support and prior of the mixture (shared, immutable).

    The prior is normal on ``log psi`` with standard deviation ``prior_scale``; the
    ``anchors`` (the tolerances the e-processes test against) are placed exactly on the grid.
    """

    def __init__(self, anchors: tuple[float, ...], prior_scale: float = 1.0) -> None:
        if any(a <= 0 for a in anchors):
            raise AnalysisError("ratio anchors must be positive")
        # Rounded so that ratio 1 (log 0) is one grid point, not two 1e-15 apart.
        base = np.round(np.arange(-_LOG_SPAN, _LOG_SPAN + _LOG_STEP / 2, _LOG_STEP), 9)
        extra = np.log(np.asarray(anchors, dtype=float))
        log_psi = np.unique(np.concatenate([base, extra]))
        self.anchors = anchors
        self.prior_scale = prior_scale
        self.log_psi = log_psi
        self.psi = np.exp(log_psi)
        log_prior = -0.5 * (log_psi / prior_scale) ** 2
        self.log_prior = log_prior - np.logaddexp.reduce(log_prior)
        self.anchor_index = {a: int(np.searchsorted(log_psi, math.log(a))) for a in anchors}
        # Normalisers of the prior restricted below / above each grid point.
        cum = np.logaddexp.accumulate(self.log_prior)
        rcum = np.logaddexp.accumulate(self.log_prior[::-1])[::-1]
        self.log_mass_below = np.concatenate([[-np.inf], cum[:-1]])
        self.log_mass_above = np.concatenate([rcum[1:], [-np.inf]])


@lru_cache(maxsize=256)
def ratio_grid(anchors: tuple[float, ...]) -> RatioGrid:
    """A cached grid for the given anchors (grids are shared by every rollout)."""
    return RatioGrid(anchors)


class RatioSequence:
    """Anytime-valid inference on a ratio of event rates between two cohorts.

    Each :meth:`update` brings ``x`` events from the treatment (canary) and ``y`` from the
    control (baseline), observed with exposures ``a`` and ``b`` (requests, or expected
    shares). Given ``x + y``, ``x`` is binomial with success probability
    ``a * psi / (a * psi + b)``, where ``psi`` is the ratio of per-exposure rates. Under
    sampling without replacement the conditional law is less dispersed than the binomial
    (convex order), so the tests stay valid.

    Parameters
    ----------
    anchors
        Ratios the e-processes test against (the tolerances); placed exactly on the grid.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> seq = RatioSequence(anchors=(1.1,))
    >>> for _ in range(200):  # canary errors at 3x the baseline's rate, equal traffic
    ...     _ = seq.update(rng.poisson(0.3), rng.poisson(0.1), 100, 100)
    >>> seq.e_value(1.1) > 20, seq.lower_bound(0.05) > 1.5
    (True, True)
    """

    def __init__(self, anchors: Iterable[float] = (1.0,)) -> None:
        self.grid = ratio_grid(tuple(sorted({float(a) for a in anchors})))
        self.loglik = np.zeros_like(self.grid.log_psi)
        self.x_total = 0
        self.y_total = 0
        self._mh_num = 0.0  # Mantel-Haenszel numerator and denominator
        self._mh_den = 0.0

    def update(self, x: int, y: int, a: float, b: float) -> RatioSequence:
        """Fold one stratum: ``x`` treatment and ``y`` control events, exposures ``a``, ``b``."""
        if x < 0 or y < 0 or a < 0 or b < 0:
            raise AnalysisError("counts and exposures must be non-negative")
        k = x + y
        if k == 0 or a == 0 or b == 0:
            return self  # an empty stratum, or one cohort absent: no information on psi
        ratio = a / b
        self.loglik += x * self.grid.log_psi - k * np.log1p(ratio * self.grid.psi)
        self.x_total += x
        self.y_total += y
        self._mh_num += x * b / (a + b)
        self._mh_den += y * a / (a + b)
        return self

    def estimate(self) -> float | None:
        """Mantel-Haenszel estimate of ``psi`` (None before any control event)."""
        if self._mh_den == 0:
            return None if self._mh_num == 0 else math.inf
        return self._mh_num / self._mh_den

    def e_value(self, anchor: float) -> float:
        """E-process against ``H0: psi <= anchor`` (mixture over the grid above the anchor)."""
        index = self.grid.anchor_index[anchor]
        above = slice(index + 1, None)
        log_e = (
            np.logaddexp.reduce(self.grid.log_prior[above] + self.loglik[above])
            - self.loglik[index]
            - self.grid.log_mass_above[index]
        )
        return math.exp(min(float(log_e), 700.0))

    def upper_bound(self, alpha: float) -> float:
        """Anytime-valid upper confidence bound on ``psi`` at level ``1 - alpha``.

        The smallest grid ratio that the one-sided test ``H0: psi >= r`` has rejected;
        ``inf`` while none has been.
        """
        log_e = self._log_e_below()
        start = int(np.argmax(self.loglik))
        rejected = np.nonzero(log_e[start:] >= math.log(1.0 / alpha))[0]
        return float(self.grid.psi[start + rejected[0]]) if rejected.size else math.inf

    def lower_bound(self, alpha: float) -> float:
        """Anytime-valid lower confidence bound on ``psi`` at level ``1 - alpha`` (0 if none)."""
        log_e = self._log_e_above()
        stop = int(np.argmax(self.loglik))
        rejected = np.nonzero(log_e[: stop + 1] >= math.log(1.0 / alpha))[0]
        return float(self.grid.psi[rejected[-1]]) if rejected.size else 0.0

    def _log_e_below(self) -> np.ndarray:
        # For each grid point r: mixture over alternatives below r against H0: psi >= r.
        joint = self.grid.log_prior + self.loglik
        cum = np.concatenate([[-np.inf], np.logaddexp.accumulate(joint)[:-1]])
        with np.errstate(invalid="ignore"):
            out: np.ndarray = cum - self.loglik - self.grid.log_mass_below
        out[0] = -np.inf
        return out

    def _log_e_above(self) -> np.ndarray:
        joint = self.grid.log_prior + self.loglik
        rcum = np.logaddexp.accumulate(joint[::-1])[::-1]
        rcum = np.concatenate([rcum[1:], [-np.inf]])
        with np.errstate(invalid="ignore"):
            out: np.ndarray = rcum - self.loglik - self.grid.log_mass_above
        out[-1] = -np.inf
        return out

    def to_state(self) -> State:
        """The sequence as plain data; the grid is the shared one of its anchors."""
        return {
            "anchors": list(self.grid.anchors),
            "loglik": self.loglik.tolist(),
            "x_total": self.x_total,
            "y_total": self.y_total,
            "mh_num": self._mh_num,
            "mh_den": self._mh_den,
        }

    @classmethod
    def from_state(cls, state: State | Reader) -> RatioSequence:
        """The sequence :meth:`to_state` described."""
        r = reader(state, "RatioSequence")
        anchors = r.reals("anchors")
        if not anchors or min(anchors) <= 0:
            raise r.fail("anchors", "expected positive ratios")
        seq = cls(anchors)
        seq.loglik = r.array("loglik", seq.grid.log_psi.size)
        seq.x_total, seq.y_total = r.integer("x_total"), r.integer("y_total")
        seq._mh_num, seq._mh_den = r.real("mh_num"), r.real("mh_den")
        return seq


class MeanSequence:
    """Asymptotic confidence sequence for the mean of a stream of observations.

    Robbins' normal-mixture boundary with a running variance estimate, tuned to be tightest
    after ``target`` observations (Waudby-Smith et al. 2021, Theorem 2.2).

    Examples
    --------
    >>> seq = MeanSequence(target=50)
    >>> for value in [0.1, -0.2, 0.05, 0.0, 0.15, -0.1, 0.02, 0.08]:
    ...     _ = seq.update(value)
    >>> low, high = seq.interval(0.05)
    >>> low < seq.mean < high
    True
    """

    def __init__(self, target: int = 20, min_variance: float = 1e-8) -> None:
        if target < 1:
            raise AnalysisError("target must be at least 1")
        self.target = target
        self.min_variance = min_variance
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0

    def update(self, value: float) -> MeanSequence:
        """Add one observation (Welford's update)."""
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (value - self.mean)
        return self

    @property
    def variance(self) -> float:
        """Running sample variance, floored so a constant stream keeps a finite width."""
        if self.count < 2:
            return math.inf
        return max(self._m2 / (self.count - 1), self.min_variance)

    def radius(self, alpha: float) -> float:
        """Half-width of the two-sided ``1 - alpha`` confidence sequence at the current count.

        The boundary is applied to the standardised sum ``S_t / sigma`` (Robbins' normal
        mixture with mixing variance ``rho**2``), so its tuning does not depend on the scale of
        the data: a gauge in [0, 1] and a queue depth in the thousands get the same coverage.
        """
        if self.count < 2:
            return math.inf
        t = self.count
        log_term = -2.0 * math.log(alpha)
        rho2 = (log_term + math.log(log_term + 1.0)) / self.target
        v = t * rho2 + 1.0
        # sqrt((t+1)/(t-1)) widens the first few looks, where the plug-in variance is itself
        # uncertain; simulated coverage of Gaussian window differences stays within alpha for
        # t >= 6 with it (about twice alpha without it).
        sigma = math.sqrt(self.variance * (t + 1) / (t - 1))
        return sigma * math.sqrt(2.0 * v / (t * t * rho2) * math.log(math.sqrt(v) / alpha))

    def interval(self, alpha: float) -> tuple[float, float]:
        """Two-sided ``1 - alpha`` anytime confidence interval for the mean."""
        r = self.radius(alpha)
        return self.mean - r, self.mean + r

    def to_state(self) -> State:
        """The sequence as plain data."""
        return {
            "target": self.target,
            "min_variance": self.min_variance,
            "count": self.count,
            "mean": self.mean,
            "m2": self._m2,
        }

    @classmethod
    def from_state(cls, state: State | Reader) -> MeanSequence:
        """The sequence :meth:`to_state` described."""
        r = reader(state, "MeanSequence")
        seq = cls(r.integer("target"), r.real("min_variance"))
        seq.count, seq.mean, seq._m2 = r.integer("count"), r.real("mean"), r.real("m2")
        return seq
