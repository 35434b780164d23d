"""Did the service come back after a rollback? A comparison with its levels before.

The reference is the baseline cohort's traffic while the rollout ran; after the rollback, all
of the service's traffic is compared with it over a fixed window of event time. The question
is one-sided and asked once, at the end of the window, so fixed-sample confidence bounds are
valid here: a normal lower bound on the excess of the error rate over the allowed level (with
Agresti-Caffo pseudo-counts, and the reference's own uncertainty), and one on the shift of
mean log latency.
"""

from __future__ import annotations

import math

import numpy as np

from canarystream.analysis.cohort import Slice, count_in
from canarystream.analysis.state import Reader, State, reader
from canarystream.contracts.decision import CheckReason, Verdict
from canarystream.policy.model import RollbackVerification
from canarystream.readable import change, percent

__all__ = ["RecoveryWatch", "normal_quantile"]


def normal_quantile(p: float) -> float:
    """The standard normal's ``p`` quantile: scipy's ``ndtri``, the function behind
    ``scipy.stats.norm.ppf``, to the last bit.

    Imported when first asked for (at a rollback's first verdict): ``scipy.special`` takes
    about 0.25 s to load, ``scipy.stats`` a second, and neither is needed to start.
    """
    from scipy.special import ndtri  # noqa: PLC0415

    return float(ndtri(p))


class _Tally:
    """Requests, errors, and the sum and sum of squares of log latency."""

    __slots__ = ("errors", "log_sq", "log_sum", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.log_sum = 0.0
        self.log_sq = 0.0

    def add(self, requests: Slice, error_ranges: tuple[tuple[int, int], ...]) -> None:
        n = requests.requests
        if not n:
            return
        logs = np.log1p(requests.latency_array())
        self.requests += n
        self.errors += count_in(requests.statuses, error_ranges)
        self.log_sum += float(logs.sum())
        self.log_sq += float(np.dot(logs, logs))

    def mean_var(self) -> tuple[float, float]:
        n = self.requests
        mean = self.log_sum / n
        return mean, max(self.log_sq / n - mean * mean, 0.0)

    def to_state(self) -> State:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "log_sum": self.log_sum,
            "log_sq": self.log_sq,
        }

    @classmethod
    def from_state(cls, state: State | Reader) -> _Tally:
        r = reader(state, "_Tally")
        tally = cls()
        tally.requests, tally.errors = r.integer("requests"), r.integer("errors")
        tally.log_sum, tally.log_sq = r.real("log_sum"), r.real("log_sq")
        return tally


class RecoveryWatch:
    """Reference levels during a rollout, then a verdict over a window after its rollback."""

    def __init__(
        self, config: RollbackVerification, error_ranges: tuple[tuple[int, int], ...]
    ) -> None:
        self.config = config
        self.error_ranges = error_ranges
        self.reference = _Tally()
        self.after = _Tally()
        self.since: float | None = None  # event time of the rollback while watching

    @property
    def watching(self) -> bool:
        return self.since is not None

    def fold_reference(self, baseline: Slice) -> None:
        """Add one tick of the baseline cohort while the rollout runs."""
        self.reference.add(baseline, self.error_ranges)

    def start(self, ts: float) -> None:
        """The rollback happened at ``ts``: start the window."""
        self.since = ts

    def stop(self) -> None:
        """Stop watching without a verdict (a newer rollout of the service took over)."""
        self.since = None

    def fold_after(self, *slices: Slice) -> None:
        """Add one tick of the service's traffic after the rollback."""
        for requests in slices:
            self.after.add(requests, self.error_ranges)

    def due(self, now: float) -> bool:
        return self.since is not None and now - self.since >= self.config.window

    def verdict(self) -> tuple[bool, str, list[CheckReason]]:
        """``(recovered, summary, reasons)``; ends the watch."""
        self.since = None
        config = self.config
        ref, after = self.reference, self.after
        if after.requests < config.min_requests or ref.requests == 0:
            summary = (
                f"only {after.requests} requests in the {config.window:g}s after the rollback "
                f"(needs {config.min_requests}): recovery not shown"
            )
            return False, summary, []
        z = normal_quantile(config.confidence)
        tol = config.error_ratio_tolerance
        ref_rate = ref.errors / ref.requests
        rate = after.errors / after.requests
        allowed = ref_rate * tol + config.error_abs_margin
        # Excess of the error rate over the allowed level; both rates are estimates.
        p_after = (after.errors + 1) / (after.requests + 2)
        p_ref = (ref.errors + 1) / (ref.requests + 2)
        excess = rate - allowed
        spread_errors = math.sqrt(
            p_after * (1 - p_after) / (after.requests + 2)
            + tol * tol * p_ref * (1 - p_ref) / (ref.requests + 2)
        )
        lower = rate - z * spread_errors  # the error rate's lower bound, for the reason
        errors_bad = excess - z * spread_errors > 0
        ref_mean, ref_var = ref.mean_var()
        mean, var = after.mean_var()
        shift = mean - ref_mean
        spread = math.sqrt(var / after.requests + ref_var / ref.requests)
        shift_lower = shift - z * spread
        latency_bad = shift_lower > math.log1p(config.latency_tolerance)
        reasons = [
            CheckReason(
                check="recovery-error-rate",
                kind="recovery",
                verdict=Verdict.FAIL if errors_bad else Verdict.PASS,
                canary_samples=after.requests,
                baseline_samples=ref.requests,
                estimate=rate,
                lower=lower,
                threshold=allowed,
                message=(
                    f"error rate {percent(rate)} after the rollback vs {percent(ref_rate)} before"
                ),
            ),
            CheckReason(
                check="recovery-latency",
                kind="recovery",
                verdict=Verdict.FAIL if latency_bad else Verdict.PASS,
                canary_samples=after.requests,
                baseline_samples=ref.requests,
                estimate=math.expm1(shift),
                lower=math.expm1(shift_lower),
                tolerance=config.latency_tolerance,
                message=f"typical latency {change(math.exp(shift))} vs before the rollout",
            ),
        ]
        if errors_bad or latency_bad:
            worse = [r.check for r in reasons if r.verdict is Verdict.FAIL]
            return False, f"not back at baseline levels: {', '.join(worse)}", reasons
        return True, "back at baseline levels", reasons

    def to_state(self) -> State:
        """The watch as plain data; its configuration is the policy's."""
        return {
            "error_ranges": [list(pair) for pair in self.error_ranges],
            "reference": self.reference.to_state(),
            "after": self.after.to_state(),
            "since": self.since,
        }

    @classmethod
    def from_state(cls, state: State | Reader, config: RollbackVerification) -> RecoveryWatch:
        """The watch :meth:`to_state` described, with the policy's ``config``."""
        r = reader(state, "RecoveryWatch")
        watch = cls(config, r.ranges("error_ranges"))
        watch.reference = _Tally.from_state(r.child("reference"))
        watch.after = _Tally.from_state(r.child("after"))
        watch.since = r.real("since", none=True)
        return watch
