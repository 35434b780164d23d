"""Synthetic probes: canary vs baseline failure rate, as a ratio of rates."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from canarystream.analysis.checks.base import MAX_RATIO, CheckModel, Trackers, check_order
from canarystream.analysis.checks.shapes import RateRatioUnit
from canarystream.analysis.cohort import CohortBucket
from canarystream.analysis.state import Key, Reader, State

__all__ = ["ProbeCheck", "ProbeUnit"]


class ProbeUnit(RateRatioUnit):
    """Probe failure-rate ratio, for one probe or all of them pooled."""

    kind = "probe"
    counts = "probe"

    def __init__(self, name: str, check: ProbeCheck, alpha: float) -> None:
        super().__init__(
            name,
            critical=check.critical,
            alpha=alpha,
            tolerance=check.tolerance,
            advance_tolerance=check.advance_tolerance,
            promote_tolerance=check.promote_bound(),
            abs_margin=check.advance_abs_margin,
        )
        self.probe = check.probe

    def extract(self, bucket: CohortBucket) -> tuple[int, int]:
        if self.probe == "*":
            ok = sum(acc[0] for acc in bucket.probes.values())
            failed = sum(acc[1] for acc in bucket.probes.values())
        else:
            ok, failed = bucket.probes.get(self.probe, (0, 0))
        return failed, ok + failed

    def to_state(self) -> State:
        return {**super().to_state(), "probe": self.probe}

    def restore(self, r: Reader, check: object, trackers: object) -> None:
        super().restore(r, check, trackers)
        self.probe = r.text("probe")


class ProbeCheck(CheckModel):
    """Canary vs baseline synthetic-probe failure rate, as a ratio."""

    unit: ClassVar[type[ProbeUnit]] = ProbeUnit
    promote_default: ClassVar[float | None] = 2.0

    kind: Literal["probe"] = "probe"
    probe: str = Field(
        default="*", min_length=1, max_length=256, description="Probe name; '*' pools all."
    )
    tolerance: float = Field(default=1.5, ge=1.0, le=MAX_RATIO)
    advance_tolerance: float = Field(default=3.0, ge=1.0, le=MAX_RATIO)
    advance_abs_margin: float = Field(default=0.01, ge=0, le=1)
    promote_tolerance: float | None = Field(default=None, ge=1.0, le=MAX_RATIO)

    @model_validator(mode="after")
    def _ordered(self) -> ProbeCheck:
        check_order(self.tolerance, self.promote_tolerance, self.advance_tolerance)
        return self

    def default_name(self) -> str:
        return f"probe-{self.probe}" if self.probe != "*" else "probes"

    def make_unit(self, name: str, key: Key, alpha: float, trackers: Trackers) -> ProbeUnit:
        return ProbeUnit(name, self, alpha)
