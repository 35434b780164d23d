"""Error rate: canary vs baseline, as a ratio of rates, overall or per breakdown key."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from canarystream.analysis.checks.base import (
    MAX_RATIO,
    Breakdown,
    CheckModel,
    StatusRanges,
    Trackers,
    check_order,
    slice_of,
)
from canarystream.analysis.checks.shapes import RateRatioUnit
from canarystream.analysis.cohort import CohortBucket, count_in
from canarystream.analysis.state import Key, Reader, State, key_to_state

__all__ = ["ErrorRateCheck", "ErrorRateUnit"]


class ErrorRateUnit(RateRatioUnit):
    """Error-rate ratio, overall or for one breakdown key."""

    kind = "error_rate"

    def __init__(self, name: str, check: ErrorRateCheck, key: Key, alpha: float) -> None:
        super().__init__(
            name,
            critical=check.critical,
            alpha=alpha,
            tolerance=check.tolerance,
            advance_tolerance=check.advance_tolerance,
            promote_tolerance=check.promote_bound(),
            abs_margin=check.advance_abs_margin,
        )
        self.key = key
        self.ranges = check.error_statuses

    def extract(self, bucket: CohortBucket) -> tuple[int, int]:
        found = slice_of(bucket, self.key)
        if found is None or not found.latencies:
            return 0, 0
        return count_in(found.statuses, self.ranges), found.requests

    def to_state(self) -> State:
        return {
            **super().to_state(),
            "key": key_to_state(self.key),
            "ranges": [list(pair) for pair in self.ranges],
        }

    def restore(self, r: Reader, check: object, trackers: object) -> None:
        super().restore(r, check, trackers)
        self.key, self.ranges = r.key("key"), r.ranges("ranges")


class ErrorRateCheck(CheckModel):
    """Canary vs baseline error rate, as a ratio (canary / baseline)."""

    unit: ClassVar[type[ErrorRateUnit]] = ErrorRateUnit
    promote_default: ClassVar[float | None] = 1.35

    kind: Literal["error_rate"] = "error_rate"
    tolerance: float = Field(
        default=1.1, ge=1.0, le=MAX_RATIO, description="Largest acceptable error-rate ratio."
    )
    advance_tolerance: float = Field(
        default=1.5,
        ge=1.0,
        le=MAX_RATIO,
        description="Upper confidence bound on the ratio needed to advance.",
    )
    advance_abs_margin: float = Field(
        default=0.002,
        ge=0,
        le=1,
        description="Alternatively, a bound on the extra errors as a share of all requests at "
        "the next stage's traffic (blast radius); lets early, small stages advance when the "
        "evidence does not lean toward harm.",
    )
    promote_tolerance: float | None = Field(
        default=None,
        ge=1.0,
        le=MAX_RATIO,
        description="Upper confidence bound on the ratio needed to promote; absent means 1.35 "
        "kept within [tolerance, advance_tolerance] (errors are rare: a bound at tolerance "
        "itself would need hours of traffic).",
    )
    error_statuses: StatusRanges = Field(
        default=((500, 599),), description="Statuses counted as errors, e.g. '429,500-599'."
    )
    breakdown: Breakdown | None = Field(
        default=None, description="Also run the check per endpoint or per dependency."
    )

    @model_validator(mode="after")
    def _advance_not_tighter(self) -> ErrorRateCheck:
        check_order(self.tolerance, self.promote_tolerance, self.advance_tolerance)
        return self

    def breakdown_field(self) -> str | None:
        return self.breakdown

    def error_statuses_for_recovery(self) -> tuple[tuple[int, int], ...] | None:
        return self.error_statuses

    def make_unit(self, name: str, key: Key, alpha: float, trackers: Trackers) -> ErrorRateUnit:
        return ErrorRateUnit(name, self, key, alpha)
