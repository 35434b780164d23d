"""Guards: conditions under which comparing the cohorts is unsafe, so the rollout HOLDs.

* :class:`BaselineDriftGuard` — the baseline itself degrades (a shared incident: both cohorts
  move together). A Page-Hinkley test (a one-sided CUSUM) watches the baseline's per-tick
  error rate and mean log latency, standardised against their own recent past; an upward
  shift holds the rollout for a cool-down rather than judging the canary.
* :class:`SampleRatioGuard` — the canary's share of requests is not what was routed
  (a broken router, crashing canary instances): comparisons would be biased.
* :class:`NoDataGuard` — the canary is silent; never promote without evidence.
"""

from __future__ import annotations

import math

import numpy as np

from canarystream.analysis.cohort import CohortBucket, count_in
from canarystream.analysis.page_hinkley import PageHinkley
from canarystream.analysis.sequential import RatioSequence
from canarystream.analysis.state import Reader, State, number, reader
from canarystream.contracts.decision import CheckReason, Verdict
from canarystream.policy.model import DriftGuard, NoDataGuard, SampleRatioGuard
from canarystream.readable import instant, percent

__all__ = ["BaselineDriftGuard", "NoDataWatch", "SampleRatioWatch"]

_SERVER_ERRORS = ((500, 599),)


class _Standardiser:
    """Turns a per-tick statistic into a z-score against its own exponentially weighted past.

    Drift detectors take thresholds in the units of their input; an error rate around 0.01
    and a mean log latency varying by 0.02 need very different ones. Standardising by the
    statistic's sampling error makes one threshold fit every metric and traffic level.
    """

    def __init__(self, half_life_ticks: float, warmup: int) -> None:
        self.decay = 0.5 ** (1.0 / half_life_ticks)
        self.warmup = warmup
        self.seen = 0
        self.mean = 0.0
        self.spread = 0.0  # per-request variance, EW-averaged

    def score(self, value: float, per_request_var: float | None, n: int) -> float | None:
        """The z-score of ``value`` (a mean over ``n`` requests), then learn from it.

        ``per_request_var`` of None means a proportion: its variance follows from the
        reference rate itself, p (1 - p), which stays sound when errors are rare.
        """
        if per_request_var is None:
            rate = min(max(self.mean, 1e-3), 0.999)
            per_request_var = rate * (1.0 - rate)
        z = None
        if self.seen >= self.warmup:
            var = max(self.spread, 1e-6) / n
            z = max(-50.0, min(50.0, (value - self.mean) / math.sqrt(var)))
        # A running mean at first, then exponential forgetting.
        weight = max(1.0 / (self.seen + 1), 1.0 - self.decay)
        self.mean += weight * (value - self.mean)
        self.spread += weight * (per_request_var - self.spread)
        self.seen += 1
        return z

    def to_state(self) -> State:
        """The standardiser as plain data."""
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "seen": self.seen,
            "mean": self.mean,
            "spread": self.spread,
        }

    @classmethod
    def from_state(cls, state: State | Reader) -> _Standardiser:
        """The standardiser :meth:`to_state` described."""
        r = reader(state, "_Standardiser")
        scale = cls.__new__(cls)
        scale.decay, scale.warmup = r.real("decay"), r.integer("warmup")
        scale.seen, scale.mean, scale.spread = r.integer("seen"), r.real("mean"), r.real("spread")
        return scale


class BaselineDriftGuard:
    """Detects an upward shift in the baseline's error rate or latency (CUSUM on z-scores)."""

    def __init__(self, config: DriftGuard, tick: float = 5.0) -> None:
        self.config = config
        half_life = max(600.0 / tick, 4.0)  # the reference follows the baseline over ~10 min
        warmup = max(int(20.0 / tick), 4)
        self.scales = (_Standardiser(half_life, warmup), _Standardiser(half_life, warmup))
        self.detectors = tuple(
            PageHinkley(
                min_instances=4, delta=config.allowance, threshold=config.threshold, mode="up"
            )
            for _ in range(2)
        )
        self.active_until = -math.inf
        self.last_shift: str = ""

    def fold(self, baseline: CohortBucket, now: float) -> None:
        """Add the baseline's tick ending at ``now``."""
        if not self.config.enabled:
            return
        requests = baseline.requests
        n = requests.requests
        if n == 0:
            return
        rate = count_in(requests.statuses, _SERVER_ERRORS) / n
        logs = np.log1p(requests.latency_array())
        stats = (
            ("error rate", rate, None),
            ("latency", float(logs.mean()), float(logs.var()) if n > 1 else 0.0),
        )
        for (name, value, per_request_var), scale, detector in zip(
            stats, self.scales, self.detectors, strict=True
        ):
            z = scale.score(value, per_request_var, n)
            if z is None:
                continue
            detector.update(z)
            if detector.drift_detected:
                self.active_until = now + self.config.cooldown
                self.last_shift = f"baseline {name} shifted up at {instant(now)}"

    def active(self, now: float) -> bool:
        """Whether the rollout must hold for a shared degradation at ``now``."""
        return now < self.active_until

    def reason(self, now: float) -> CheckReason:
        """Readable state of the guard."""
        return CheckReason(
            check="baseline_drift",
            kind="guard",
            verdict=Verdict.FAIL if self.active(now) else Verdict.PASS,
            critical=False,
            message=(
                f"{self.last_shift}; holding until {instant(self.active_until)}"
                if self.active(now)
                else "baseline stable"
            ),
        )

    def to_state(self) -> State:
        """The guard as plain data; its configuration is the policy's."""
        return {
            "scales": [scale.to_state() for scale in self.scales],
            "detectors": [detector.to_state() for detector in self.detectors],
            "active_until": number(self.active_until),
            "last_shift": self.last_shift,
        }

    @classmethod
    def from_state(cls, state: State | Reader, config: DriftGuard) -> BaselineDriftGuard:
        """The guard :meth:`to_state` described, with the policy's ``config``."""
        r = reader(state, "BaselineDriftGuard")
        guard = cls.__new__(cls)
        guard.config = config
        first, second = (_Standardiser.from_state(item) for item in r.children("scales", 2))
        guard.scales = (first, second)
        one, two = (PageHinkley.from_state(item) for item in r.children("detectors", 2))
        guard.detectors = (one, two)
        guard.active_until, guard.last_shift = r.real("active_until"), r.text("last_shift")
        return guard


class SampleRatioWatch:
    """Sequential test that the canary's share of cohort requests matches the routed share.

    Restarted at every traffic change, and blind for ``settle`` seconds after it while the
    router converges. Mismatch is declared when the anytime-valid interval for the share's
    odds ratio lies wholly outside ``[1/(1+tolerance), 1+tolerance]``.
    """

    def __init__(self, config: SampleRatioGuard) -> None:
        self.config = config
        self.high = 1.0 + config.tolerance
        self.low = 1.0 / self.high
        self.expected = 0.0
        self.since = 0.0
        self.test = RatioSequence(anchors=(self.low, self.high))
        self.mismatch = False
        self._folds = 0

    def restart(self, expected_share: float, now: float) -> None:
        """A new routed share takes effect at ``now``."""
        self.expected = expected_share
        self.since = now + self.config.settle
        self.test = RatioSequence(anchors=(self.low, self.high))
        self.mismatch = False
        self._folds = 0

    def fold(self, canary_requests: int, baseline_requests: int, now: float) -> None:
        """Add one tick's request counts."""
        if not self.config.enabled or not 0.0 < self.expected < 1.0 or now < self.since:
            return
        self.test.update(canary_requests, baseline_requests, self.expected, 1.0 - self.expected)
        self._folds += 1
        estimate = self.test.estimate()
        if estimate is None or self.low <= estimate <= self.high:
            self.mismatch = False  # the interval contains the estimate, so it meets the band
            return
        if self._folds % 4:
            return  # bounds are costly; a mismatch is re-tested every 4 ticks
        half = self.config.alpha / 2
        self.mismatch = (
            self.test.lower_bound(half) > self.high or self.test.upper_bound(half) < self.low
        )

    def observed_share(self) -> float | None:
        """Canary share of cohort requests since the last restart."""
        total = self.test.x_total + self.test.y_total
        return self.test.x_total / total if total else None

    def reason(self) -> CheckReason:
        """Readable state of the guard."""
        share = self.observed_share()
        return CheckReason(
            check="sample_ratio",
            kind="guard",
            verdict=Verdict.FAIL if self.mismatch else Verdict.PASS,
            critical=False,
            canary_samples=self.test.x_total,
            baseline_samples=self.test.y_total,
            estimate=share,
            tolerance=self.config.tolerance,
            message=(
                f"canary share {percent(share)} vs routed {percent(self.expected)}"
                + (" (mismatch)" if self.mismatch else "")
            ),
        )

    def to_state(self) -> State:
        """The guard as plain data; its configuration is the policy's."""
        return {
            "high": self.high,
            "low": self.low,
            "expected": self.expected,
            "since": self.since,
            "test": self.test.to_state(),
            "mismatch": self.mismatch,
            "folds": self._folds,
        }

    @classmethod
    def from_state(cls, state: State | Reader, config: SampleRatioGuard) -> SampleRatioWatch:
        """The guard :meth:`to_state` described, with the policy's ``config``."""
        r = reader(state, "SampleRatioWatch")
        watch = cls.__new__(cls)
        watch.config = config
        watch.high, watch.low = r.real("high"), r.real("low")
        watch.expected, watch.since = r.real("expected"), r.real("since")
        watch.test = RatioSequence.from_state(r.child("test"))
        watch.mismatch, watch._folds = r.flag("mismatch"), r.integer("folds")
        return watch


class NoDataWatch:
    """Tracks how long the canary has been silent."""

    def __init__(self, config: NoDataGuard) -> None:
        self.config = config
        self.last_seen = -math.inf

    def saw(self, ts: float) -> None:
        """The canary sent telemetry at ``ts``."""
        self.last_seen = max(self.last_seen, ts)

    def silent_for(self, now: float, since: float) -> float:
        """Seconds without canary telemetry, counted from ``since`` at the earliest."""
        return now - max(self.last_seen, since)

    def to_state(self) -> State:
        """The watch as plain data; its configuration is the policy's."""
        return {"last_seen": number(self.last_seen)}

    @classmethod
    def from_state(cls, state: State | Reader, config: NoDataGuard) -> NoDataWatch:
        """The watch :meth:`to_state` described, with the policy's ``config``."""
        watch = cls(config)
        watch.last_seen = reader(state, "NoDataWatch").real("last_seen")
        return watch
