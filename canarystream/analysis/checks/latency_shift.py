"""Typical latency: the ratio of the cohorts' geometric means, from per-tick differences."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from canarystream.analysis.checks.base import CheckModel, Tick, Trackers, check_order
from canarystream.analysis.checks.shapes import MeanDifferenceUnit
from canarystream.analysis.state import Key
from canarystream.readable import change

__all__ = ["LatencyShiftCheck", "LatencyShiftUnit"]


class LatencyShiftUnit(MeanDifferenceUnit):
    """Ratio of the cohorts' geometric-mean latencies, from per-tick differences of mean logs.

    Each tick with both cohorts gives ``mean(log canary) - mean(log baseline)``; load swings
    and incidents shared by both cohorts cancel within the tick. The check fails when the lower
    bound of the mean difference exceeds ``log(1 + tolerance)``.
    """

    kind = "latency_shift"

    def __init__(self, name: str, check: LatencyShiftCheck, alpha: float) -> None:
        super().__init__(target=30)
        self.name, self.critical, self.alpha = name, check.critical, alpha
        self.tolerance = check.tolerance
        self.advance_tolerance = check.advance_tolerance
        self.limit = math.log1p(check.tolerance)
        self.advance_limit = math.log1p(check.advance_tolerance)
        self.promote_limit = math.log1p(check.promote_bound())
        self.min_count = check.min_ticks

    def update(self, tick: Tick) -> None:
        c, b = tick.canary.requests, tick.baseline.requests
        self.samples[0] += c.requests
        self.samples[1] += b.requests
        if c.requests >= 2 and b.requests >= 2:
            # log1p keeps zero latencies finite; at millisecond scale it is log(x) + tiny.
            self.add(float(np.log1p(c.latency_array()).mean() - np.log1p(b.latency_array()).mean()))

    def bound_text(self, value: float) -> str:
        return f"≤ {change(1.0 + value)}"

    def shown(self, value: float) -> float:
        return math.expm1(value)  # a relative change, like the tolerance

    def describe(self, estimate: float | None, lower: float | None, upper: float | None) -> str:
        def relative(value: float | None) -> str:
            return change(None if value is None else 1.0 + value)

        return (
            f"typical latency canary vs baseline {relative(estimate)} over {self.diffs.count} "
            f"ticks [{relative(lower)}, {relative(upper)}], tolerance +{self.tolerance:.0%}"
        )


class LatencyShiftCheck(CheckModel):
    """Canary vs baseline typical latency: the ratio of geometric means, per tick.

    Uses every request (not only those near one quantile), so a slowdown of the whole
    distribution is seen with far fewer requests than a quantile check needs.
    """

    unit: ClassVar[type[LatencyShiftUnit]] = LatencyShiftUnit
    promote_default: ClassVar[float | None] = 0.075

    kind: Literal["latency_shift"] = "latency_shift"
    tolerance: float = Field(
        default=0.05, ge=0, le=10, description="Acceptable relative increase (0.05 = +5 %)."
    )
    advance_tolerance: float = Field(
        default=0.15, ge=0, le=10, description="Relative increase ruled out before advancing."
    )
    promote_tolerance: float | None = Field(
        default=None,
        ge=0,
        le=10,
        description="Relative increase the upper bound must rule out to promote; absent means "
        "+7.5 % kept within [tolerance, advance_tolerance].",
    )
    min_ticks: int = Field(
        default=6, ge=3, le=10_000, description="Ticks with both cohorts needed before any verdict."
    )

    @model_validator(mode="after")
    def _advance_not_tighter(self) -> LatencyShiftCheck:
        check_order(self.tolerance, self.promote_tolerance, self.advance_tolerance)
        return self

    def make_unit(self, name: str, key: Key, alpha: float, trackers: Trackers) -> LatencyShiftUnit:
        return LatencyShiftUnit(name, self, alpha)
