"""Output records of the actuators and of the decoder: actuation reports and dead letters."""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from canarystream.contracts.decision import Action
from canarystream.errors import ContractError

__all__ = [
    "ActuationReport",
    "ActuationStatus",
    "DeadLetter",
]


class ActuationStatus(StrEnum):
    """Outcome of carrying out one decision on one backend."""

    APPLIED = "applied"  # the backend accepted the change (and read-back agreed, if verified)
    FAILED = "failed"  # the backend errored or timed out after all attempts
    REJECTED = "rejected"  # the actuator refused it: stale, duplicate or out-of-order decision


class ActuationReport(BaseModel):
    """What an actuator did with one decision, published on the actuations topic."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    type: Literal["actuation"] = "actuation"
    actuation_id: str = Field(min_length=1, description="Unique id of this report.")
    decision_id: str = Field(min_length=1, description="Id of the decision carried out.")
    deployment: str = Field(description="Id of the rollout.")
    service: str = Field(description="Service being rolled out.")
    seq: int = Field(ge=0, description="Sequence number of the decision carried out.")
    action: Action = Field(description="Action of the decision carried out.")
    backend: str = Field(
        min_length=1, description="Kind of the backend that acted (router or flag provider)."
    )
    status: ActuationStatus
    ts: float = Field(description="Wall-clock time of the report (epoch s), not event time.")
    traffic_percent_requested: float = Field(
        ge=0.0, le=100.0, description="Canary share of traffic the decision asked for, %."
    )
    traffic_percent_observed: float | None = Field(
        default=None,
        ge=0.0,
        le=100.0,
        description="Canary share read back from the backend after the change, %; absent "
        "when the backend cannot report it or was not asked.",
    )
    attempts: int = Field(default=1, ge=1, description="Tries made, the last included.")
    dry_run: bool = Field(
        default=False, description="True when nothing was changed (a drill or a no-op backend)."
    )
    detail: str = Field(default="", description="One readable sentence: what happened or why not.")


class DeadLetter(BaseModel):
    """A message that could not be used, kept with the reason, on the dead-letter topic."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    type: Literal["dead_letter"] = "dead_letter"
    reason: str = Field(
        min_length=1,
        description="Machine-friendly code, as in ContractError.reason (malformed_json, "
        "invalid_field, unknown_type...).",
    )
    detail: str = Field(default="", description="What is wrong, naming the field if one is.")
    source: str = Field(
        min_length=1, description="Where the message came from: a topic name, or file:line."
    )
    ts: float = Field(description="Wall-clock time the message was set aside (epoch s).")
    original: str = Field(description="The message as received, encoded as ``encoding`` says.")
    encoding: Literal["utf-8", "base64"] = Field(
        default="utf-8",
        description="utf-8: ``original`` is the message text; base64: the message bytes were "
        "not valid UTF-8 and ``original`` holds them base64-encoded.",
    )

    @classmethod
    def for_message(
        cls, raw: bytes | str, *, reason: str, detail: str, source: str, ts: float
    ) -> DeadLetter:
        """Wrap a rejected message, as text when it is valid UTF-8 and base64 otherwise.

        >>> DeadLetter.for_message(b"\\xff{", reason="malformed_json", detail="",
        ...                        source="canary.telemetry.v1", ts=0.0).encoding
        'base64'
        """
        if isinstance(raw, str):
            return cls(reason=reason, detail=detail, source=source, ts=ts, original=raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            encoded = base64.b64encode(raw).decode("ascii")
            return cls(
                reason=reason,
                detail=detail,
                source=source,
                ts=ts,
                original=encoded,
                encoding="base64",
            )
        return cls(reason=reason, detail=detail, source=source, ts=ts, original=text)

    def original_bytes(self) -> bytes:
        """The message bytes as received (for replaying a dead letter once fixed)."""
        if self.encoding == "utf-8":
            return self.original.encode("utf-8")
        try:
            return base64.b64decode(self.original, validate=True)
        except binascii.Error as exc:
            raise ContractError(
                f"original: not valid base64: {exc}", reason="invalid_field"
            ) from exc
