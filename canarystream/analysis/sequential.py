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

Rollbacks are decided by *change-aware* tests, so that evidence gathered while the canary was
healthy does not have to be outweighed before a later regression shows:

* a :class:`RatioSequence` given ``detect=anchor`` also keeps an e-detector (Shin, Ramdas,
  Rinaldo, "E-detectors: a nonparametric framework for sequential change detection"): a
  mixture, over the step at which a regression might have started (the prior of
  :func:`onset_weight`), of the e-processes started at that step.
* :class:`MeanRestarts` restarts the confidence sequence of a stream of differences every few
  observations, each restart at its own share of alpha (the same prior, by restart).

The guarantee is the one the cumulative tests gave: under no regression, the detector is a
nonnegative supermartingale that starts at 1 (the prior's masses sum to 1, and the mass of
onsets still to come counts as 1 each), so by Ville's inequality the chance that it *ever*
reaches ``1/alpha`` is at most ``alpha``, over any horizon and however often it is looked at;
for the restarted sequences, a union bound over the restarts gives the same. There is no
threshold to tune by horizon: what changes is the price of a late onset, about
``log(1/prior mass)`` more evidence than a regression present from the start needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from canarystream.analysis.state import Reader, State, reader
from canarystream.errors import AnalysisError

__all__ = [
    "ONSET_HORIZON",
    "ONSET_START",
    "MeanRestarts",
    "MeanSequence",
    "RatioGrid",
    "RatioSequence",
    "onset_unspent",
    "onset_weight",
    "rate_upper_bound",
]

_LOG_STEP = 0.02  # 2 % resolution of the reported bounds
_LOG_SPAN = 4.0  # psi from e^-4 (0.018) to e^4 (54.6)

ONSET_START = 0.5
"""Prior mass of a regression present from the first step (the cumulative test's share)."""
ONSET_HORIZON = 360
"""Steps over which later onsets share their prior mass evenly (30 minutes of 5 s ticks)."""
_ONSET_EVEN = 0.75  # of the mass left after the start: even over the horizon; the rest after it


def onset_weight(step: int, horizon: int = ONSET_HORIZON, start: float = ONSET_START) -> float:
    """Prior mass of a regression that starts at ``step`` (1 for the first step).

    ``start`` at step 1; then ``(1 - start) * 3/4`` spread evenly over steps 2 to
    ``horizon + 1``; then the last quarter of what is left over the steps after the horizon, as
    ``h / (j (j - 1))`` with ``j = step - 1``, which sums to 1 over ``j > h``. Every mass is
    fixed in advance, so the mixture stays a supermartingale.

    >>> onset_weight(1), round(onset_weight(2, horizon=100), 6), onset_weight(0)
    (0.5, 0.00375, 0.0)
    >>> round(sum(onset_weight(k, horizon=10) for k in range(1, 100_000)), 4)
    1.0
    """
    if step < 1:
        return 0.0
    if step == 1:
        return start
    j, rest = step - 1, 1.0 - start
    if j <= horizon:
        return rest * _ONSET_EVEN / horizon
    return rest * (1.0 - _ONSET_EVEN) * horizon / (j * (j - 1))


def onset_unspent(steps: int, horizon: int = ONSET_HORIZON, start: float = ONSET_START) -> float:
    """Prior mass of the onsets after ``steps`` steps (closed form of the tail sum).

    >>> onset_unspent(0), onset_unspent(1)
    (1.0, 0.5)
    >>> abs(onset_unspent(30, 10) - (1 - sum(onset_weight(k, 10) for k in range(1, 31)))) < 1e-12
    True
    """
    if steps < 1:
        return 1.0
    j, rest = steps - 1, 1.0 - start
    even = rest * _ONSET_EVEN * min(j, horizon) / horizon
    tail = rest * (1.0 - _ONSET_EVEN) * (1.0 - horizon / j) if j > horizon else 0.0
    return max(rest - even - tail, 0.0)


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
    detect
        One of the anchors: also keep the e-detector against ``H0: psi <= detect`` (see
        :meth:`detector`), for tests that decide rollbacks.

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

    def __init__(self, anchors: Iterable[float] = (1.0,), detect: float | None = None) -> None:
        self.grid = ratio_grid(tuple(sorted({float(a) for a in anchors})))
        if detect is not None and float(detect) not in self.grid.anchor_index:
            raise AnalysisError(f"the detector's anchor {detect} is not one of the anchors")
        self.detect = None if detect is None else float(detect)
        self.loglik = np.zeros_like(self.grid.log_psi)
        self.x_total = 0
        self.y_total = 0
        self._mh_num = 0.0  # Mantel-Haenszel numerator and denominator
        self._mh_den = 0.0
        # The e-detector: steps taken (updates with events), and per grid ratio above the
        # anchor log R(psi) = log sum over onsets s of mass(s) prod_{i >= s} LR_i(psi); ``mass``
        # scales the onset prior (0: only the cumulative test, as a state written before).
        self.steps = 0
        self.mass = 1.0
        above = 0 if detect is None else self.grid.psi.size - self.grid.anchor_index[detect] - 1
        self.log_r = np.full(above, -np.inf)

    def update(self, x: int, y: int, a: float, b: float) -> RatioSequence:
        """Fold one stratum: ``x`` treatment and ``y`` control events, exposures ``a``, ``b``."""
        if x < 0 or y < 0 or a < 0 or b < 0:
            raise AnalysisError("counts and exposures must be non-negative")
        k = x + y
        if k == 0 or a == 0 or b == 0:
            return self  # an empty stratum, or one cohort absent: no information on psi
        ratio = a / b
        step = x * self.grid.log_psi - k * np.log1p(ratio * self.grid.psi)
        self.loglik += step
        if self.detect is not None:
            index = self.grid.anchor_index[self.detect]
            self.steps += 1
            weight = self.mass * onset_weight(self.steps)
            born = np.logaddexp(self.log_r, math.log(weight)) if weight > 0 else self.log_r
            self.log_r = born + (step[index + 1 :] - step[index])
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

    def detector(self) -> float:
        """E-detector against ``H0: psi <= detect`` at every step so far (1 before any).

        ``M_t = sum_s mass(s) E_{s:t} + (mass of onsets after t)``, where ``E_{s:t}`` is the
        mixture e-process of :meth:`e_value` fed only the steps from ``s`` on. Each
        ``E_{s:.}`` is a supermartingale under the null, so ``M`` is one starting at 1 and
        ``P(M ever >= 1/alpha) <= alpha`` (Ville). ``M_t >= mass(1) E_{1:t}``: a regression
        present from the start costs ``log(1/ONSET_START)`` more evidence than the cumulative
        test needs, one starting later about ``log(1/mass(s))`` less the evidence of the
        onsets near ``s``, instead of all that the healthy steps before it gathered.
        """
        if self.detect is None:
            raise AnalysisError("this sequence keeps no detector")
        if self.mass == 0.0:  # no onset after the first step: the cumulative e-process
            return self.e_value(self.detect)
        index = self.grid.anchor_index[self.detect]
        log_prior = self.grid.log_prior[index + 1 :] - self.grid.log_mass_above[index]
        log_m = float(np.logaddexp.reduce(log_prior + self.log_r)) if self.steps else -math.inf
        unspent = self.mass * onset_unspent(self.steps)
        if unspent > 0:
            log_m = float(np.logaddexp(log_m, math.log(unspent)))
        return math.exp(min(log_m, 700.0))

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
            "detect": self.detect,
            "steps": self.steps,
            "mass": self.mass,
            "log_r": self.log_r.tolist() if self.steps else [],
        }

    @classmethod
    def from_state(cls, state: State | Reader) -> RatioSequence:
        """The sequence :meth:`to_state` described (state version 5 on)."""
        r = reader(state, "RatioSequence")
        anchors = r.reals("anchors")
        if not anchors or min(anchors) <= 0:
            raise r.fail("anchors", "expected positive ratios")
        detect = r.real("detect", none=True)
        if detect is not None and detect not in anchors:
            raise r.fail("detect", f"{detect} is not one of the anchors")
        seq = cls(anchors, detect)
        seq.loglik = r.array("loglik", seq.grid.log_psi.size)
        seq.x_total, seq.y_total = r.integer("x_total"), r.integer("y_total")
        seq._mh_num, seq._mh_den = r.real("mh_num"), r.real("mh_den")
        seq.steps, seq.mass = r.integer("steps"), r.real("mass")
        if seq.steps < 0 or (detect is None and seq.steps):
            raise r.fail("steps", "expected 0 without a detector, else a count")
        if not 0.0 <= seq.mass <= 1.0:
            raise r.fail("mass", "expected a share within [0, 1]")
        if seq.steps:
            seq.log_r = r.array("log_r", seq.log_r.size)
        else:
            r.items("log_r", 0)
        return seq

    @staticmethod
    def upgrade_state(state: State, detect: float | None) -> State:
        """A sequence stored before detectors (state version 4) with one against ``detect``.

        The evidence already gathered becomes the detector's whole prior (``mass`` 0, no later
        onsets): the restored detector is exactly the cumulative e-process the rollout was
        judged by, so the rollout keeps its guarantee across the upgrade; a sequence with no
        step yet starts a full detector.
        """
        upgraded = {**state, "detect": detect, "steps": 0, "mass": 1.0, "log_r": []}
        loglik = state.get("loglik")
        anchors = state.get("anchors")
        if detect is None or type(loglik) is not list or type(anchors) is not list:
            return upgraded  # nothing to carry; from_state names any problem
        try:
            grid = ratio_grid(tuple(sorted({float(a) for a in anchors})))
            index = grid.anchor_index[float(detect)]
            values = np.asarray(loglik, dtype=float)
        except (KeyError, TypeError, ValueError, AnalysisError):
            return upgraded
        if values.shape != grid.log_psi.shape or not values.any():
            return upgraded
        log_r = values[index + 1 :] - values[index]
        return {**upgraded, "steps": 1, "mass": 0.0, "log_r": log_r.tolist()}


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
    def m2(self) -> float:
        """Sum of squared deviations from the running mean."""
        return self._m2

    @property
    def variance(self) -> float:
        """Running sample variance, floored so a constant stream keeps a finite width."""
        if self.count < 2:
            return math.inf
        return max(self._m2 / (self.count - 1), self.min_variance)

    def radius(self, alpha: float, variance: float | None = None) -> float:
        """Half-width of the two-sided ``1 - alpha`` confidence sequence at the current count.

        The boundary is applied to the standardised sum ``S_t / sigma`` (Robbins' normal
        mixture with mixing variance ``rho**2``), so its tuning does not depend on the scale of
        the data: a gauge in [0, 1] and a queue depth in the thousands get the same coverage.
        ``variance`` replaces the running one (a restart uses the longer stream's too).
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
        sigma = math.sqrt((self.variance if variance is None else variance) * (t + 1) / (t - 1))
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


class MeanRestarts:
    """Confidence sequences of a stream's mean, restarted every ``every`` observations.

    Restart ``k`` (1, 2, ...) holds the observations from number ``k * every + 1`` on; the
    stream's own cumulative :class:`MeanSequence` (kept by the caller) is restart 0. Restart
    ``k`` is judged at ``alpha * onset_weight(k + 1, horizon)``, where ``horizon`` is the
    restarts in 30 minutes, so the cumulative sequence (at ``alpha * ONSET_START``) and every
    restart together keep the chance that *any* of them ever excludes the true mean within
    ``alpha`` (a union bound). The spread of a restart is the larger of its own and a pooled
    one (:meth:`spread`): the variance of the whole stream (``whole``, the caller's cumulative
    sequence) within the parts the restarts' starts cut it into, but the part just before the
    restart. So a short restart is not judged on a variance estimated from a handful of
    observations, nor one that starts after a change on a spread that the change inflates.
    Only the ``keep`` latest restarts are kept: dropping one only gives up chances to reject.
    Restarts that are not ``live`` (a stream stored before them) never start, and the
    cumulative sequence keeps all of alpha (:meth:`start_share`).

    >>> restarts = MeanRestarts(every=5, horizon=20)
    >>> whole = MeanSequence(target=20)
    >>> for t in range(60):
    ...     value = (0.0 if t < 30 else 1.0) + 0.1 * ((t * 7) % 5 - 2)
    ...     _ = whole.update(value), restarts.update(value)
    >>> whole.mean - whole.radius(0.01) > 0.5, restarts.exceeds(0.5, 0.01, whole, 6)
    (False, True)
    """

    def __init__(self, target: int = 20, every: int = 6, horizon: int = 60, keep: int = 24) -> None:
        if every < 1 or horizon < 1 or keep < 1:
            raise AnalysisError("every, horizon and keep must be at least 1")
        self.target, self.every, self.horizon, self.keep = target, every, horizon, keep
        self.count = 0  # observations seen
        self.live = True
        self.restarts: list[tuple[int, MeanSequence]] = []  # (restart number, its sequence)

    def start_share(self) -> float:
        """The share of alpha the caller's cumulative sequence is judged at."""
        return ONSET_START if self.live else 1.0

    def update(self, value: float) -> MeanRestarts:
        """Add one observation to every kept restart, starting a new one every ``every``."""
        if self.live and self.count and self.count % self.every == 0:
            self.restarts.append((self.count // self.every, MeanSequence(target=self.target)))
            del self.restarts[: -self.keep]
        self.count += 1
        for _, seq in self.restarts:
            seq.update(value)
        return self

    def alpha_of(self, number: int, alpha: float) -> float:
        """The level restart ``number`` is judged at."""
        return alpha * onset_weight(number + 1, self.horizon)

    def parts(self, whole: MeanSequence) -> list[tuple[int, float]]:
        """(count, sum of squared deviations from its own mean) of each part of the stream
        ``whole`` (its cumulative sequence) between the starts of the kept restarts, oldest
        first: the part before the first, one per restart but the last, and the last."""
        out, outer = [], whole
        for _, tail in self.restarts:
            n, k = outer.count, tail.count
            between = n * k / (n - k) * (outer.mean - tail.mean) ** 2 if k < n else 0.0
            out.append((n - k, outer.m2 - tail.m2 - between))
            outer = tail
        out.append((outer.count, outer.m2))
        return out

    def spread(self, whole: MeanSequence, index: int) -> float:
        """The pooled variance the ``index``-th kept restart is judged with (or its own, if
        larger): that of the parts of ``whole`` (:meth:`parts`), each about its own mean, but
        the part just before the restart, where a change of mean lies for the first restart to
        start after it. Which part is left out is fixed by the restart, not chosen by the data,
        so under no change the spread is a plain pooled estimate of the noise; inf without two
        degrees of freedom."""
        return _pooled(self.parts(whole), index, whole.min_variance)

    def highest_lower(self, alpha: float, whole: MeanSequence, min_count: int) -> float:
        """The highest lower bound of the restarts with ``min_count`` observations, each at
        its level (its spread the larger of its own variance and :meth:`spread`);
        -inf if none."""
        highest, parts = -math.inf, self.parts(whole)
        for index, (number, seq) in enumerate(self.restarts):
            if seq.count < max(min_count, 2):
                continue
            variance = max(seq.variance, _pooled(parts, index, whole.min_variance))
            highest = max(highest, seq.mean - seq.radius(self.alpha_of(number, alpha), variance))
        return highest

    def exceeds(self, limit: float, alpha: float, whole: MeanSequence, min_count: int) -> bool:
        """Whether a restart's lower bound (:meth:`highest_lower`) lies above ``limit``."""
        return self.highest_lower(alpha, whole, min_count) > limit

    def to_state(self) -> State:
        """The restarts as plain data."""
        return {
            "target": self.target,
            "every": self.every,
            "horizon": self.horizon,
            "keep": self.keep,
            "count": self.count,
            "live": self.live,
            "restarts": [
                {"number": number, "seq": seq.to_state()} for number, seq in self.restarts
            ],
        }

    @classmethod
    def from_state(cls, state: State | Reader) -> MeanRestarts:
        """The restarts :meth:`to_state` described."""
        r = reader(state, "MeanRestarts")
        try:
            restarts = cls(r.integer("target"), r.integer("every"), r.integer("horizon"))
        except AnalysisError as exc:
            raise r.fail("every", str(exc)) from None
        restarts.keep = r.integer("keep")
        if restarts.keep < 1:
            raise r.fail("keep", "expected at least 1")
        restarts.count, restarts.live = r.integer("count"), r.flag("live")
        restarts.restarts = [
            (item.integer("number"), MeanSequence.from_state(item.child("seq")))
            for item in r.children("restarts")
        ]
        if len(restarts.restarts) > restarts.keep:
            raise r.fail("restarts", f"more than keep ({restarts.keep})")
        return restarts

    @staticmethod
    def upgrade_state(count: int, target: int, every: int = 6, horizon: int = 60) -> State:
        """Restarts for a stream stored before them (state version 4) with ``count``
        observations: none ever started (``live`` false), so the rollout is judged to the end
        as it was, by its cumulative sequence at all of alpha; a stream with no observation
        yet gets live restarts."""
        fresh = MeanRestarts(target, every, horizon).to_state()
        return {**fresh, "count": count, "live": count == 0}


def _pooled(parts: list[tuple[int, float]], leave_out: int, floor: float) -> float:
    """Pooled variance of ``parts`` ((count, sum of squares) each) but part ``leave_out``."""
    kept = [part for i, part in enumerate(parts) if i != leave_out]
    freedom = sum(count for count, _ in kept) - len(kept)
    if freedom < 2:
        return math.inf
    return max(sum(m2 for _, m2 in kept) / freedom, floor)
