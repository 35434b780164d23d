"""The worker's verdict on each announcement, control event and traffic shift: accepted or
refused, and by whom.

Published on ``canary.verdicts.v1`` (keyed by deployment) for every ``deployment_started``,
``deployment_aborted``, ``deployment_paused``, ``deployment_resumed``,
``deployment_approved`` and ``traffic_shifted`` the worker judges, so the audit trail holds
every attempt to steer a rollout, including the refused ones, with the principal its signature
authenticated.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["InputVerdict"]


class InputVerdict(BaseModel):
    """The outcome of one input event on the deployments topic."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    type: Literal["input_verdict"] = "input_verdict"
    id: str = Field(
        min_length=1,
        max_length=512,
        description="Where the input was read: topic/partition@offset (or file:line in replay).",
    )
    ts: float = Field(description="Event time of the input (epoch seconds).")
    event_type: str = Field(max_length=64, description="The input's type field, as sent.")
    deployment: str | None = Field(
        max_length=256, description="The deployment the input names; null if it names none."
    )
    service: str | None = Field(max_length=256, description="The service it names or is keyed by.")
    principal: str | None = Field(
        max_length=256, description="The principal its signature authenticated; null if none did."
    )
    verdict: Literal["accepted", "refused"]
    reason: str | None = Field(
        default=None,
        max_length=2048,
        description="Why it was refused (a dead-letter reason such as unauthorized).",
    )
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the exact message bytes judged."
    )
