"""Absolute budgets on the canary alone: its error rate, its latency quantile."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from canarystream.analysis.checks.base import CheckModel, StatusRanges, Trackers
from canarystream.analysis.checks.shapes import OneSampleRateUnit
from canarystream.analysis.cohort import Slice, count_in
from canarystream.analysis.state import Key, Reader, State

__all__ = ["SloErrorRateCheck", "SloErrorRateUnit", "SloLatencyCheck", "SloLatencyUnit"]


class SloErrorRateUnit(OneSampleRateUnit):
    """Canary error rate against an absolute budget."""

    kind = "slo_error_rate"

    def __init__(self, name: str, check: SloErrorRateCheck, alpha: float) -> None:
        super().__init__(
            name,
            critical=check.critical,
            alpha=alpha,
            budget=check.max_error_rate,
            describe="error rate",
        )
        self.ranges = check.error_statuses

    def extract(self, requests: Slice) -> int:
        return count_in(requests.statuses, self.ranges)

    def to_state(self) -> State:
        return {**super().to_state(), "ranges": [list(pair) for pair in self.ranges]}

    def restore(self, r: Reader, check: object, trackers: object) -> None:
        super().restore(r, check, trackers)
        self.ranges = r.ranges("ranges")


class SloLatencyUnit(OneSampleRateUnit):
    """Canary latency quantile against an absolute budget in milliseconds."""

    kind = "slo_latency"

    def __init__(self, name: str, check: SloLatencyCheck, alpha: float) -> None:
        super().__init__(
            name,
            critical=check.critical,
            alpha=alpha,
            budget=1.0 - check.quantile,
            describe=f"share of requests over {check.max_ms:g} ms",
        )
        self.limit = check.max_ms

    def extract(self, requests: Slice) -> int:
        return int(np.count_nonzero(requests.latency_array() > self.limit))

    def to_state(self) -> State:
        return {**super().to_state(), "limit": self.limit}

    def restore(self, r: Reader, check: object, trackers: object) -> None:
        super().restore(r, check, trackers)
        self.limit = r.real("limit")


class SloErrorRateCheck(CheckModel):
    """Absolute budget: the canary's error rate must stay at or under ``max_error_rate``."""

    unit: ClassVar[type[SloErrorRateUnit]] = SloErrorRateUnit

    kind: Literal["slo_error_rate"] = "slo_error_rate"
    max_error_rate: float = Field(default=0.01, gt=0, lt=1)
    error_statuses: StatusRanges = Field(default=((500, 599),))

    def make_unit(self, name: str, key: Key, alpha: float, trackers: Trackers) -> SloErrorRateUnit:
        return SloErrorRateUnit(name, self, alpha)


class SloLatencyCheck(CheckModel):
    """Absolute budget: the canary's latency quantile must stay at or under ``max_ms``."""

    unit: ClassVar[type[SloLatencyUnit]] = SloLatencyUnit

    kind: Literal["slo_latency"] = "slo_latency"
    quantile: float = Field(default=0.99, ge=0.001, le=0.9999)
    max_ms: float = Field(gt=0, le=3_600_000, description="Latency budget in milliseconds.")

    def default_name(self) -> str:
        return f"{self.kind}-p{round(self.quantile * 100, 3):g}"

    def make_unit(self, name: str, key: Key, alpha: float, trackers: Trackers) -> SloLatencyUnit:
        return SloLatencyUnit(name, self, alpha)
