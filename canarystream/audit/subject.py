"""What a message of an audited topic is: a verdict, a decision, an actuation, or unreadable.

Pure: the recorder hands in the topic's kind and the exact bytes of a message its writer signed
(:mod:`canarystream.audit.trust`). One that is not a valid record of its topic is not dropped:
it becomes an ``unreadable`` subject with the reason, its digest and, when it is JSON, its
content, so a trusted writer's contract mismatch stays in the trail.

>>> subject = read_subject(AuditKind.DECISION, b"{not json")
>>> subject.kind.value, subject.value, subject.detail
('unreadable', None, 'malformed_json: not JSON')
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from canarystream.audit.chain import Subject
from canarystream.contracts.actuation import ActuationReport
from canarystream.contracts.audit import MAX_SUBJECT_BYTES, AuditKind
from canarystream.contracts.decision import Decision
from canarystream.contracts.verdict import InputVerdict

__all__ = ["MODELS", "read_subject"]

MODELS: dict[AuditKind, type[BaseModel]] = {
    AuditKind.VERDICT: InputVerdict,
    AuditKind.DECISION: Decision,
    AuditKind.ACTUATION: ActuationReport,
}
"""The contract model of each audited topic's messages."""

_DETAIL_CHARS = 2048


def read_subject(kind: AuditKind, raw: bytes) -> Subject:
    """The subject of a message of the topic carrying ``kind`` records."""
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        reason = "not UTF-8" if _not_utf8(raw) else "not JSON"
        return Subject.of(AuditKind.UNREADABLE, None, raw, f"malformed_json: {reason}")
    kept = value if len(raw) <= MAX_SUBJECT_BYTES else None
    try:
        MODELS[kind].model_validate_json(raw)  # as the topic's consumers read it
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(message)"
        detail = f"invalid_{kind.value}: {field}: {first['msg']}"
        if exc.error_count() > 1:
            detail += f" (and {exc.error_count() - 1} more)"
        return Subject.of(AuditKind.UNREADABLE, kept, raw, detail[:_DETAIL_CHARS])
    return Subject.of(kind, kept, raw)


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
