"""What one OTLP message converts to: contract events, and a count of every span or point.

Every span and data point is counted once under one outcome (emitted, or why not), so a
converted message accounts for all its input; nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from canarystream.contracts.codec import is_valid_telemetry
from canarystream.contracts.events import MetricSample, RequestSample

__all__ = ["Conversion", "IngestOptions", "contract_violation"]

_MODELS: dict[str, type[BaseModel]] = {"request": RequestSample, "metric": MetricSample}


@dataclass(frozen=True)
class IngestOptions:
    """How resource attributes name the service and the version (the cohort)."""

    service_attribute: str = "service.name"
    version_attribute: str = "service.version"

    def __post_init__(self) -> None:
        if not self.service_attribute or not self.version_attribute:
            raise ValueError("the service and version attributes must be named")


@dataclass
class Conversion:
    """The events of one message, and ``spans`` / ``points`` counted by outcome."""

    events: list[dict[str, Any]] = field(default_factory=list)
    spans: Counter[str] = field(default_factory=Counter)
    points: Counter[str] = field(default_factory=Counter)


def contract_violation(event: dict[str, Any]) -> str | None:
    """None if the event satisfies its contract model, else ``invalid_<field>``.

    >>> contract_violation({"type": "metric", "ts": 1.79e9, "service": "s", "version": "v",
    ...                     "name": "cpu", "value": float("nan")})
    'invalid_value'
    """
    if is_valid_telemetry(event):
        return None
    model = _MODELS[event["type"]]
    try:
        model.model_validate(event)
    except ValidationError as exc:
        location = exc.errors(include_url=False)[0]["loc"]
        return f"invalid_{location[0]}" if location else "invalid_event"
    return "invalid_event"  # the fast check and the model disagree: never seen, still dropped
