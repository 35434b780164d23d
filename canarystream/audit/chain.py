"""The audit chain: each record sealed by the hash of its content and linked to the one before.

Pure: no I/O and no clock; the recorder hands in what it read and produces what this returns.

A record's ``hash`` is the SHA-256 of its canonical JSON without ``hash`` (:func:`canonical`:
orjson with keys sorted at every level, so the same content has one rendering whatever order
its fields were built or parsed in). Its ``prev`` is the ``hash`` of the record before it in
the deployment's chain (null at seq 0). Changing any field of a record, ``subject`` included,
changes its hash; changing its hash as well breaks the next record's ``prev``: only someone who
rewrites every later record of the chain, and replaces them in the topic, goes unnoticed.

>>> first = append(None, deployment="d1", source="t/0@0", ts=1.0,
...                subject=Subject.of(AuditKind.DECISION, {"seq": 0}, b'{"seq":0}'))
>>> first["seq"], first["prev"], first["hash"] == record_hash(first)
(0, None, True)
>>> second = append(Head.of(first), deployment="d1", source="t/0@1", ts=2.0,
...                 subject=Subject.of(AuditKind.DECISION, {"seq": 1}, b'{"seq":1}'))
>>> second["seq"], second["prev"] == first["hash"]
(1, True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from canarystream.contracts.audit import AUDIT_FORMAT, AUDIT_VERSION, AuditKind

__all__ = ["Head", "Subject", "append", "canonical", "chain_name", "parse_source", "record_hash"]


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash is taken over: its JSON without ``hash``, keys sorted.

    Raises ``orjson.JSONEncodeError`` for content JSON cannot carry (nesting deeper than
    orjson renders, integers beyond 64 bits).
    """
    body = {name: value for name, value in record.items() if name != "hash"}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def record_hash(record: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of :func:`canonical` of ``record``."""
    return hashlib.sha256(canonical(record)).hexdigest()


@dataclass(frozen=True, slots=True)
class Head:
    """The last record of a chain: all a writer needs to append the next."""

    seq: int
    hash: str

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Head:
        """The head a record leaves its chain at."""
        return cls(int(record["seq"]), str(record["hash"]))


@dataclass(frozen=True, slots=True)
class Subject:
    """The message a record is about: what it is, its JSON, the digest of its exact bytes."""

    kind: AuditKind
    value: Any
    sha256: str
    size: int
    detail: str | None = None

    @classmethod
    def of(cls, kind: AuditKind, value: Any, raw: bytes, detail: str | None = None) -> Subject:
        """A subject of ``raw``, the message's exact bytes (digest and size taken here)."""
        return cls(kind, value, hashlib.sha256(raw).hexdigest(), len(raw), detail)


def append(
    head: Head | None,
    *,
    deployment: str,
    source: str,
    ts: float | None,
    subject: Subject,
) -> dict[str, Any]:
    """The record that follows ``head`` (None: the chain's first), as plain JSON data.

    The record's kind is the subject's (a message that is not a record of its topic is
    ``unreadable`` whatever topic it came from). A subject JSON cannot render is kept by its
    digest alone.
    """
    record: dict[str, Any] = {
        "format": AUDIT_FORMAT,
        "version": AUDIT_VERSION,
        "deployment": deployment,
        "seq": 0 if head is None else head.seq + 1,
        "kind": subject.kind.value,
        "source": source,
        "ts": ts,
        "subject": subject.value,
        "subject_sha256": subject.sha256,
        "subject_bytes": subject.size,
        "detail": subject.detail,
        "prev": None if head is None else head.hash,
    }
    try:
        record["hash"] = record_hash(record)
    except orjson.JSONEncodeError as exc:
        record["subject"] = None
        record["detail"] = _clip(f"{subject.detail or 'subject'}: not kept as JSON ({exc})")
        record["hash"] = record_hash(record)
    return record


def chain_name(key: bytes | None) -> str:
    """The chain a message belongs to: its Kafka key as text ('' when unkeyed).

    >>> chain_name(b"dep-1"), chain_name(None), chain_name(b"\\xff")
    ('dep-1', '', '\\\\xff')
    """
    if key is None:
        return ""
    return key.decode("utf-8", errors="backslashreplace")[:1024]


def parse_source(source: str) -> tuple[str, int, int] | None:
    """``(topic, partition, offset)`` of a ``topic/partition@offset`` source; None if not one.

    >>> parse_source("canary.decisions.v1/3@41"), parse_source("file.jsonl:3")
    (('canary.decisions.v1', 3, 41), None)
    """
    where, at, offset = source.rpartition("@")
    topic, slash, partition = where.rpartition("/")
    if not (at and slash and topic and partition.isdigit() and offset.isdigit()):
        return None
    return topic, int(partition), int(offset)


def _clip(text: str, limit: int = 2048) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
