"""The audit trail's record: one message of the control plane, hash-chained per deployment.

``canarystream audit record`` appends one :class:`AuditRecord` to ``canary.audit.v1`` for every
message of ``canary.verdicts.v1`` (the worker's verdict on each announcement and control event,
with the principal its signature authenticated), ``canary.decisions.v1`` and
``canary.actuations.v1``. The records of one deployment (the Kafka key of the message recorded)
form a chain: ``seq`` counts from 0, ``prev`` is the ``hash`` of the record before, and
``hash`` is the SHA-256 of the record's canonical JSON without ``hash`` (keys sorted at every
level, orjson's rendering, UTF-8): see :func:`canarystream.audit.chain.record_hash`.

``subject`` is the message recorded, parsed as plain JSON; ``subject_sha256`` is the digest of
its exact bytes, the part that proves which message it was (JSON integers beyond 64 bits read as
floats, and an oversized message keeps only its digest). Only a message its writer signed is
recorded (the worker for verdicts and decisions, the actuator instance a report names for
reports; see :mod:`canarystream.audit.trust`); others are dead-lettered, not recorded. A signed
message that is not a record of its topic (not JSON, wrong schema, not UTF-8) is recorded all
the same as kind ``unreadable``, with the reason in ``detail``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = ["AUDIT_FORMAT", "AUDIT_VERSION", "MAX_SUBJECT_BYTES", "AuditKind", "AuditRecord"]

AUDIT_FORMAT = "canarystream/audit-record"
AUDIT_VERSION = 1
MAX_SUBJECT_BYTES = 256 * 1024
"""A message larger than this is recorded by its digest alone (``subject`` null)."""

_SHA256 = r"^[0-9a-f]{64}$"


class AuditKind(StrEnum):
    """What an audit record holds."""

    VERDICT = "verdict"  # an InputVerdict: an announcement or control event, accepted or refused
    DECISION = "decision"  # a Decision of the engine
    ACTUATION = "actuation"  # an ActuationReport of an actuator
    UNREADABLE = "unreadable"  # a message of those topics that is none of the above


class AuditRecord(BaseModel):
    """One link of a deployment's chain on ``canary.audit.v1``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    format: Literal["canarystream/audit-record"] = Field(
        description="Marks an audit record; with ``version``, how to read it."
    )
    version: Literal[1] = Field(description="Version of the record's format.")
    deployment: str = Field(
        max_length=1024,
        description="The chain: the Kafka key of the message recorded (UTF-8; invalid bytes as "
        "backslash escapes); empty for an unkeyed message.",
    )
    seq: int = Field(ge=0, description="Position in the deployment's chain, from 0.")
    kind: AuditKind
    source: str = Field(
        min_length=1,
        max_length=512,
        description="Where the message recorded was read: topic/partition@offset.",
    )
    ts: float | None = Field(
        description="The message's Kafka timestamp (epoch seconds); null if it had none."
    )
    subject: JsonValue = Field(
        description="The message recorded, parsed as JSON; null when it is not JSON or is "
        f"larger than {MAX_SUBJECT_BYTES} bytes."
    )
    subject_sha256: str = Field(
        pattern=_SHA256, description="SHA-256 of the exact bytes of the message recorded."
    )
    subject_bytes: int = Field(ge=0, description="Size of the message recorded, in bytes.")
    detail: str | None = Field(
        max_length=2048,
        description="Why the message is unreadable (a contract error); null for the others.",
    )
    prev: str | None = Field(
        pattern=_SHA256, description="``hash`` of the record before in the chain; null at seq 0."
    )
    hash: str = Field(
        pattern=_SHA256,
        description="SHA-256 of this record's canonical JSON without ``hash``: keys sorted at "
        "every level, no whitespace, UTF-8.",
    )
