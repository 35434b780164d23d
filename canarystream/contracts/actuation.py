"""Output records of the actuators and of the decoder: actuation reports and dead letters."""

from __future__ import annotations

import base64
import binascii
import hashlib
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from canarystream.contracts.decision import Action
from canarystream.errors import ContractError

__all__ = [
    "MAX_DETAIL_CHARS",
    "MAX_ORIGINAL_BYTES",
    "ActuationReport",
    "ActuationStatus",
    "DeadLetter",
    "clip",
]


class ActuationStatus(StrEnum):
    """Outcome of carrying out one decision on one backend."""

    APPLIED = "applied"  # the backend accepted the change (and read-back agreed, if verified)
    FAILED = "failed"  # the backend errored or timed out after all attempts
    REJECTED = "rejected"  # the actuator refused it: stale, duplicate or out-of-order decision
    # Hooks are about to run: the intent, published (and acknowledged) before they run, so that
    # after a restart they are never run again; the outcome follows in a report of its own.
    STARTED = "started"


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
    actuator: str | None = Field(
        default=None,
        description="The actuator instance that wrote the report: its backend kind and instance "
        "name (``haproxy/edge-1``). Each instance rebuilds what it applied from its own reports "
        "after a restart. Absent in reports written before this field.",
    )


MAX_ORIGINAL_BYTES = 64 * 1024  # bytes of a rejected message kept in its dead letter
MAX_DETAIL_CHARS = 1024  # characters of a dead letter's detail


class DeadLetter(BaseModel):
    """A message that could not be used, kept with the reason, on the dead-letter topic.

    One dead letter per message, however many of its events were rejected. It always fits the
    topic: at most :data:`MAX_ORIGINAL_BYTES` of the message are kept (``truncated`` says when
    that is not all of it; ``size`` and ``sha256`` describe the whole) and the detail is cut to
    :data:`MAX_DETAIL_CHARS`: about 400 kB at most, when every kept byte needs a six-byte JSON
    escape, well under the producer's 1 MB limit. Records written before ``id``, ``size``,
    ``sha256`` and ``truncated`` existed read with those absent (``None``, ``False``): their
    original is complete.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    type: Literal["dead_letter"] = "dead_letter"
    reason: str = Field(
        min_length=1,
        description="Machine-friendly code, as in ContractError.reason (malformed_json, "
        "invalid_field, unknown_type, key_mismatch, internal_error...); ``mixed`` when the "
        "events of one message were rejected for different reasons (the detail counts them).",
    )
    detail: str = Field(
        default="",
        description="What is wrong, naming the field if one is; for a JSON array, how many of "
        f"its events were rejected and the first few by index. At most {MAX_DETAIL_CHARS} "
        "characters.",
    )
    source: str = Field(
        min_length=1,
        description="Where the message came from: topic/partition@offset, a topic name, or "
        "file:line.",
    )
    id: str | None = Field(
        default=None,
        description="Stable id of the rejected message (topic/partition@offset, or file:line): "
        "the same message rejected again, say after a crash, has the same id. Absent in "
        "records written before this field.",
    )
    ts: float = Field(description="Wall-clock time the message was set aside (epoch s).")
    original: str = Field(
        description="The message as received, encoded as ``encoding`` says; only its first "
        f"{MAX_ORIGINAL_BYTES} bytes when ``truncated`` (cut at a character boundary in "
        "utf-8)."
    )
    encoding: Literal["utf-8", "base64"] = Field(
        default="utf-8",
        description="utf-8: ``original`` is the message text; base64: the message bytes were "
        "not valid UTF-8 and ``original`` holds them base64-encoded.",
    )
    truncated: bool = Field(
        default=False, description="True when ``original`` holds only the start of the message."
    )
    size: int | None = Field(
        default=None, ge=0, description="Bytes of the whole message; absent in older records."
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the whole message (lowercase hex); absent in older records.",
    )

    @classmethod
    def for_message(  # noqa: PLR0913 -- keyword-only fields of the dead letter
        cls,
        raw: bytes | str,
        *,
        reason: str,
        detail: str,
        source: str,
        ts: float,
        id: str | None = None,
    ) -> DeadLetter:
        """Wrap a rejected message, as text when it is valid UTF-8 and base64 otherwise.

        The original and the detail are capped; ``id`` defaults to ``source``.

        >>> letter = DeadLetter.for_message(b"\\xff{", reason="malformed_json", detail="",
        ...                                 source="canary.telemetry.v1/0@7", ts=0.0)
        >>> letter.encoding, letter.size, letter.truncated, letter.id
        ('base64', 2, False, 'canary.telemetry.v1/0@7')
        """
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogatepass")
        kept = raw[:MAX_ORIGINAL_BYTES]
        encoding: Literal["utf-8", "base64"] = "utf-8"
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            original = base64.b64encode(kept).decode("ascii")
            encoding = "base64"
        else:
            # Valid UTF-8 cut anywhere is invalid only in its last character: drop that part.
            original = kept.decode("utf-8", "ignore")
        return cls(
            reason=reason,
            detail=clip(detail, MAX_DETAIL_CHARS),
            source=source,
            id=source if id is None else id,
            ts=ts,
            original=original,
            encoding=encoding,
            truncated=len(kept) < len(raw),
            size=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
        )

    def original_bytes(self) -> bytes:
        """The message bytes as received (for replaying a dead letter once fixed).

        Only the first bytes of the message when ``truncated``.
        """
        if self.encoding == "utf-8":
            return self.original.encode("utf-8")
        try:
            return base64.b64decode(self.original, validate=True)
        except binascii.Error as exc:
            raise ContractError(
                f"original: not valid base64: {exc}", reason="invalid_field"
            ) from exc


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, an ellipsis marking the cut.

    >>> clip("abcdef", 4), clip("abc", 4)
    ('abc…', 'abc')
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"
