"""Checking audit chains: every record sealed, linked and in place.

Pure and incremental: :class:`ChainVerifier` is fed the records of ``canary.audit.v1`` (or of
an export) in log order, one at a time, and keeps per deployment only the chain's next seq,
its last hash and the seqs still missing, so a trail of any length is checked in memory
bounded by its deployments and its problems. Per record, in this order:

* ``unreadable``: not JSON, or not an audit record of a known format;
* ``modified``: its ``hash`` is not the hash of its content (its content was changed), or its
  ``prev`` is not the hash of the record before (that record, or this link, was changed and
  re-hashed);
* ``duplicated``: its seq was seen already;
* ``reordered``: its seq was skipped earlier and comes late.

At the end, seqs never seen below a chain's last are ``missing``. What a chain cannot show:
the loss of its newest records (nothing follows them), and a chain rewritten from the first
changed record to its end and put back in place of the original.

>>> from canarystream.audit.chain import Head, Subject, append
>>> from canarystream.contracts.audit import AuditKind
>>> head, log = None, []
>>> for n in range(3):
...     record = append(head, deployment="d", source=f"t/0@{n}", ts=None,
...                     subject=Subject.of(AuditKind.DECISION, {"n": n}, b"x"))
...     log.append(record)
...     head = Head.of(record)
>>> verify_records([log[0], log[2]]).problems[0].kind
'missing'
>>> verify_records(log).ok
True
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from canarystream.audit.chain import chain_name, record_hash
from canarystream.contracts.audit import AuditRecord

__all__ = ["MAX_PROBLEMS", "ChainVerifier", "Problem", "ProblemKind", "Report", "verify_records"]

ProblemKind = Literal["unreadable", "modified", "duplicated", "reordered", "missing"]
MAX_PROBLEMS = 1000
"""Problems kept in full; beyond, only counted (a flood of garbage must not exhaust memory)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a trail, where it is and why it counts."""

    kind: ProblemKind
    deployment: str | None
    seq: int | None
    where: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "deployment": self.deployment,
            "seq": self.seq,
            "where": self.where,
            "detail": self.detail,
        }

    def __str__(self) -> str:
        chain = "(no deployment)" if self.deployment is None else repr(self.deployment)
        seq = "" if self.seq is None else f" seq {self.seq}"
        return f"{self.kind}: {chain}{seq} at {self.where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of checking a trail."""

    records: int
    deployments: int
    kinds: dict[str, int]
    counts: dict[str, int]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.counts

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "deployments": self.deployments,
            "kinds": self.kinds,
            "problem_counts": self.counts,
            "problems": [problem.to_json() for problem in self.problems],
        }


@dataclass(slots=True)
class _Chain:
    next_seq: int = 0
    last_hash: str | None = None
    last_where: str = ""
    gaps: list[tuple[int, int]] = field(default_factory=list)  # sorted, inclusive


class ChainVerifier:
    """Checks records fed in log order; :meth:`report` gives the outcome so far.

    ``deployment`` restricts the check to that chain (unreadable records count for it when
    their Kafka key names it).
    """

    def __init__(self, deployment: str | None = None) -> None:
        self.deployment = deployment
        self._chains: dict[str, _Chain] = {}
        self._records = 0
        self._kinds: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._problems: list[Problem] = []

    def feed(self, raw: bytes | Mapping[str, Any], where: str, key: bytes | None = None) -> None:
        """Check the next record: its bytes as stored (or parsed JSON), where it was read."""
        try:
            data = orjson.loads(raw) if isinstance(raw, bytes | bytearray | memoryview) else raw
            record = AuditRecord.model_validate(data)
            digest = record_hash(data)
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, ValidationError, TypeError) as exc:
            keyed = None if key is None else chain_name(key)
            if self.deployment is None or keyed == self.deployment:
                self._records += 1
                self._note("unreadable", keyed, None, where, _why_unreadable(exc))
            return
        name = record.deployment
        if self.deployment is not None and name != self.deployment:
            return
        self._records += 1
        self._kinds[record.kind.value] += 1
        chain = self._chains.setdefault(name, _Chain())
        seq = record.seq
        if digest != record.hash:
            self._note("modified", name, seq, where, "its hash is not the hash of its content")
        if seq == chain.next_seq:
            if record.prev != chain.last_hash:
                before = "no record" if seq == 0 else f"seq {seq - 1} at {chain.last_where}"
                self._note(
                    "modified",
                    name,
                    seq,
                    where,
                    f"its prev does not match {before}: that record or this link was changed",
                )
        elif seq > chain.next_seq:
            chain.gaps.append((chain.next_seq, seq - 1))
        elif _fill(chain.gaps, seq):
            self._note("reordered", name, seq, where, f"comes after seq {chain.next_seq - 1}")
            return
        else:
            self._note("duplicated", name, seq, where, "this seq appeared before")
            return
        chain.next_seq = seq + 1
        chain.last_hash = record.hash
        chain.last_where = where

    def report(self) -> Report:
        """The outcome: records fed so far, and the seqs still missing counted as missing."""
        counts = Counter(self._counts)
        problems = list(self._problems)
        for name, chain in sorted(self._chains.items()):
            for low, high in chain.gaps:
                counts["missing"] += high - low + 1
                if len(problems) < MAX_PROBLEMS:
                    what = f"seq {low}" if low == high else f"seqs {low} to {high}"
                    detail = f"{what} never appeared ({high - low + 1} records)"
                    problems.append(Problem("missing", name, low, "-", detail))
        return Report(
            records=self._records,
            deployments=len(self._chains),
            kinds=dict(sorted(self._kinds.items())),
            counts=dict(sorted(counts.items())),
            problems=tuple(problems),
        )

    def _note(
        self, kind: ProblemKind, deployment: str | None, seq: int | None, where: str, detail: str
    ) -> None:
        self._counts[kind] += 1
        if len(self._problems) < MAX_PROBLEMS:
            self._problems.append(Problem(kind, deployment, seq, where, detail))


def verify_records(
    records: Iterable[bytes | Mapping[str, Any]], deployment: str | None = None
) -> Report:
    """Check records in log order (where: their index); see :class:`ChainVerifier`."""
    verifier = ChainVerifier(deployment)
    for index, record in enumerate(records):
        verifier.feed(record, f"#{index}")
    return verifier.report()


def _fill(gaps: list[tuple[int, int]], seq: int) -> bool:
    """Take ``seq`` out of the gap holding it; False if no gap holds it."""
    index = bisect.bisect_right(gaps, (seq, float("inf"))) - 1
    if index < 0 or not gaps[index][0] <= seq <= gaps[index][1]:
        return False
    low, high = gaps.pop(index)
    rest = [(lo, hi) for lo, hi in ((low, seq - 1), (seq + 1, high)) if lo <= hi]
    gaps[index:index] = rest
    return True


def _why_unreadable(exc: Exception) -> str:
    if isinstance(exc, orjson.JSONDecodeError):
        return "not JSON"
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(record)"
        return f"not an audit record: {where}: {first['msg']}"
    return f"not renderable as canonical JSON: {exc}"
