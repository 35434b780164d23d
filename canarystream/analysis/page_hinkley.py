"""The Page-Hinkley test (a one-sided CUSUM with a fading factor) that the drift guard runs.

The same arithmetic, step for step, as ``river.drift.PageHinkley`` (river 0.26), whose state
format it keeps; ``tests/analysis/test_page_hinkley.py`` holds the two to the same floats.
Importing river's ``drift`` package loads scipy and its data sets (about 1.5 s); this module
loads nothing.
"""

from __future__ import annotations

import math

from canarystream.analysis.state import Reader, State, number

__all__ = ["MODES", "PageHinkley"]

MODES = ("up", "down", "both")


class PageHinkley:
    """Page-Hinkley change detection on a stream of floats.

    ``mode`` "up" signals increases of the mean, "down" decreases, "both" either. After a
    detection, the next :meth:`update` starts afresh.
    """

    __slots__ = (
        "alpha",
        "delta",
        "drift_detected",
        "max_decrease",
        "mean",
        "min_increase",
        "min_instances",
        "mode",
        "seen",
        "sum_decrease",
        "sum_increase",
        "threshold",
    )

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: str = "both",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"Invalid 'mode'. Valid values are: {list(MODES)}")
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        self._reset()

    def _reset(self) -> None:
        self.drift_detected = False
        self.seen = 0.0  # the running mean's weight, a float as river keeps it
        self.mean = 0.0
        self.sum_increase = 0.0
        self.sum_decrease = 0.0
        self.min_increase = math.inf
        self.max_decrease: float = -1  # an int until the first update, as river has it

    def update(self, x: float) -> None:
        """Add one observation; :attr:`drift_detected` tells whether it signalled a change."""
        if self.drift_detected:
            self._reset()
        self.seen += 1.0
        self.mean += (1.0 / self.seen) * (x - self.mean)
        dev = x - self.mean
        self.sum_increase = self.alpha * self.sum_increase + dev - self.delta
        self.sum_decrease = self.alpha * self.sum_decrease + dev + self.delta
        self.min_increase = min(self.min_increase, self.sum_increase)  # the old one on a tie
        self.max_decrease = max(self.max_decrease, self.sum_decrease)
        if self.seen >= self.min_instances:
            up = self.sum_increase - self.min_increase > self.threshold
            down = self.max_decrease - self.sum_decrease > self.threshold
            mode = self.mode
            self.drift_detected = up if mode == "up" else down if mode == "down" else up or down

    def to_state(self) -> State:
        """The detector as plain data: its parameters and running sums."""
        return {
            "min_instances": self.min_instances,
            "delta": self.delta,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "mode": self.mode,
            "drift_detected": self.drift_detected,
            "x_mean": [self.seen, self.mean],
            "sum_increase": self.sum_increase,
            "sum_decrease": self.sum_decrease,
            "min_increase": number(self.min_increase),  # +inf before the first update
            "max_decrease": number(self.max_decrease),
        }

    @classmethod
    def from_state(cls, r: Reader) -> PageHinkley:
        """The detector :meth:`to_state` described."""
        mode = r.text("mode")
        if mode not in MODES:
            raise r.fail("mode", f"unknown Page-Hinkley mode {mode!r}")
        detector = cls(
            min_instances=r.integer("min_instances"),
            delta=r.real("delta"),
            threshold=r.real("threshold"),
            alpha=r.real("alpha"),
            mode=mode,
        )
        detector.drift_detected = r.flag("drift_detected")
        detector.seen, detector.mean = (float(v) for v in r.reals("x_mean", 2))
        detector.sum_increase = r.real("sum_increase")
        detector.sum_decrease = r.real("sum_decrease")
        detector.min_increase = r.real("min_increase")
        detector.max_decrease = r.real("max_decrease")
        return detector
