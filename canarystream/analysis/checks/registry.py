"""The check kinds: each is one module; this maps kinds to their policy models and units.

Adding a kind: write its module (a ``CheckModel`` with its ``Unit``) and add the model to
:data:`KINDS`; policies, their JSON Schema, the engine and the state format follow from here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from canarystream.analysis.checks.base import CheckModel, Unit
from canarystream.analysis.checks.error_rate import ErrorRateCheck
from canarystream.analysis.checks.gauge import GaugeCheck
from canarystream.analysis.checks.latency import LatencyCheck
from canarystream.analysis.checks.latency_shift import LatencyShiftCheck
from canarystream.analysis.checks.probe import ProbeCheck
from canarystream.analysis.checks.slo import SloErrorRateCheck, SloLatencyCheck

__all__ = ["KINDS", "UNIT_CLASSES", "Check", "CheckKind", "check_name", "model_for"]

KINDS: tuple[type[CheckModel], ...] = (
    ErrorRateCheck,
    LatencyCheck,
    LatencyShiftCheck,
    GaugeCheck,
    ProbeCheck,
    SloErrorRateCheck,
    SloLatencyCheck,
)
"""Every check kind's policy model, in the order the policy's schema lists them."""

_BY_KIND: dict[str, type[CheckModel]] = {
    model.model_fields["kind"].default: model for model in KINDS
}

# An enum built at run time from KINDS, which a type checker cannot follow.
CheckKind = StrEnum("CheckKind", {kind.upper(): kind for kind in _BY_KIND})  # type: ignore[misc]
"""The kinds of check a policy can declare."""

if TYPE_CHECKING:
    Check = CheckModel  # what a type checker can know of a union built at run time
else:
    Check = Annotated[Union[KINDS], Field(discriminator="kind")]  # noqa: UP007
"""One policy check, of whichever kind its ``kind`` names."""

UNIT_CLASSES: dict[str, type[Unit]] = {model.unit.kind: model.unit for model in KINDS}
"""Unit classes by the ``kind`` their state is written with."""


def model_for(kind: str) -> type[CheckModel]:
    """The policy model of ``kind``; an unknown kind is an error, never a fallback."""
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise KeyError(f"unknown check kind {kind!r}; known: {', '.join(_BY_KIND)}") from None


def check_name(check: Any) -> str:
    """The check's own name, or one derived from its kind and parameters."""
    return str(check.name or check.default_name())
