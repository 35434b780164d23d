"""Gauges: canary vs baseline mean of a metric over time windows (absolute difference)."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from canarystream.analysis.checks.base import (
    MAX_DURATION,
    CheckModel,
    Duration,
    Tick,
    Trackers,
)
from canarystream.analysis.checks.shapes import MeanDifferenceUnit
from canarystream.analysis.state import Key, Reader, State
from canarystream.readable import number

__all__ = ["Direction", "GaugeCheck", "GaugeUnit"]


class Direction(StrEnum):
    """Which change of a gauge is a regression."""

    INCREASE = "increase"
    DECREASE = "decrease"


class GaugeUnit(MeanDifferenceUnit):
    """Windowed difference of one gauge's cohort means, with a confidence sequence.

    Within each window both cohorts' samples are averaged; the canary-minus-baseline
    difference of a window is one observation, so swings shared by both cohorts cancel. A
    window closes at the first tick that ends at or after its end. Promotion needs the bound
    within ``tolerance`` itself. A failure whose lower bound passes the check's
    ``critical_margin`` is severe: proven saturation rolls back at once, critical or not.
    """

    kind = "gauge"
    counts = "metric"

    def __init__(self, name: str, metric: str, check: GaugeCheck, alpha: float) -> None:
        super().__init__(target=20, every=3, horizon=20)  # restarts every 3 windows
        self.name, self.critical, self.alpha = name, check.critical, alpha
        self.metric = metric
        self.check = check
        self.tolerance = self.limit = self.promote_limit = check.tolerance
        self.advance_tolerance = self.advance_limit = check.advance_tolerance
        self.min_count = check.min_windows
        self.sign = 1.0 if check.direction is Direction.INCREASE else -1.0
        self.window = [0.0, 0.0, 0.0, 0.0]  # canary sum, count, baseline sum, count
        self.window_end: float | None = None

    def update(self, tick: Tick) -> None:
        now = tick.now
        if self.window_end is None:
            self.window_end = now + self.check.window
        for offset, bucket in ((0, tick.canary), (2, tick.baseline)):
            acc = bucket.metrics.get(self.metric)
            if acc is not None:
                self.window[offset] += acc[0]
                self.window[offset + 1] += acc[1]
                self.samples[offset // 2] += int(acc[1])
        if now >= self.window_end:
            c_sum, c_n, b_sum, b_n = self.window
            if c_n and b_n:
                self.add(self.sign * (c_sum / c_n - b_sum / b_n))
            self.window = [0.0, 0.0, 0.0, 0.0]
            window = self.check.window
            if now - self.window_end > window * 1_000:
                # A long gap in event time: step over it at once, not window by window.
                self.window_end += window * math.floor((now - self.window_end) / window)
            while self.window_end <= now:
                self.window_end += window

    def severe_limit(self) -> float:
        return self.check.severe_margin()

    def severe_text(self) -> str:
        return (
            f"lower bound past the critical margin {self.check.severe_margin():g}: "
            "rolls back at once"
        )

    def describe(self, estimate: float | None, lower: float | None, upper: float | None) -> str:
        worse = "increase" if self.sign > 0 else "decrease"
        return (
            f"{self.metric}: canary-minus-baseline {worse} {number(estimate)} over "
            f"{self.diffs.count} windows [{number(lower)}, {number(upper)}], tolerance "
            f"{self.check.tolerance:g}"
        )

    def to_state(self) -> State:
        return {
            **super().to_state(),
            "metric": self.metric,
            "sign": self.sign,
            "window": list(self.window),
            "window_end": self.window_end,
        }

    def restore(self, r: Reader, check: object, trackers: object) -> None:
        super().restore(r, check, trackers)
        if not isinstance(check, GaugeCheck):
            raise r.fail("kind", f"a gauge unit in a group of {type(check).__name__}")
        self.check = check
        self.metric, self.sign = r.text("metric"), r.real("sign")
        self.window, self.window_end = r.reals("window", 4), r.real("window_end", none=True)


class GaugeCheck(CheckModel):
    """Canary vs baseline mean of a gauge over time windows (absolute difference)."""

    unit: ClassVar[type[GaugeUnit]] = GaugeUnit

    kind: Literal["gauge"] = "gauge"
    metric: str = Field(
        default="*",
        min_length=1,
        max_length=256,
        description="Metric name; '*' checks every gauge seen.",
    )
    tolerance: float = Field(
        default=0.05, ge=0, le=1e12, description="Acceptable absolute difference."
    )
    advance_tolerance: float = Field(
        default=0.10, ge=0, le=1e12, description="Absolute difference ruled out before advancing."
    )
    direction: Direction = Field(default=Direction.INCREASE, description="What is worse.")
    window: Duration = Field(
        default=30.0,
        gt=0,
        le=MAX_DURATION,
        description="Window (s) over which each cohort's mean is taken; from one tick to "
        "10,000 ticks.",
    )
    min_windows: int = Field(
        default=6, ge=3, le=10_000, description="Windows needed before any verdict."
    )
    critical: bool = False
    critical_margin: float | None = Field(
        default=None,
        ge=0,
        le=1e12,
        description="Absolute difference past which a failure rolls back at once even when "
        "the check is not critical: its lower confidence bound beyond this margin is proven "
        "harm far past the tolerance, not evidence to hold on; absent means twice the "
        "tolerance.",
    )

    @model_validator(mode="after")
    def _advance_not_tighter(self) -> GaugeCheck:
        if self.advance_tolerance < self.tolerance:
            raise ValueError("advance_tolerance must be at least tolerance")
        if self.critical_margin is not None and self.critical_margin < self.tolerance:
            raise ValueError("critical_margin must be at least tolerance")
        return self

    def severe_margin(self) -> float:
        """The critical margin in force: the policy's, else twice the tolerance."""
        return 2.0 * self.tolerance if self.critical_margin is None else self.critical_margin

    def default_name(self) -> str:
        return f"gauge-{self.metric}" if self.metric != "*" else "gauges"

    def unit_dimension(self) -> str:
        return "metric" if self.metric == "*" else ""

    def fixed_key(self) -> Key:
        return self.metric

    def windows(self) -> list[tuple[str, float]]:
        return [("window", self.window)]

    def make_unit(self, name: str, key: Key, alpha: float, trackers: Trackers) -> GaugeUnit:
        return GaugeUnit(name, str(key), self, alpha)
