"""Audit chains: a clean trail verifies; any single change to it that the chain can reveal is
found and named; what it cannot reveal is stated."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from canarystream.audit.chain import Head, Subject, append, canonical, chain_name, record_hash
from canarystream.audit.subject import read_subject
from canarystream.audit.verify import MAX_PROBLEMS, ChainVerifier, verify_records
from canarystream.contracts.audit import AuditKind, AuditRecord
from canarystream.contracts.schemas import json_schemas

KINDS = [AuditKind.VERDICT, AuditKind.DECISION, AuditKind.ACTUATION, AuditKind.UNREADABLE]


def trail(owners: list[int], names: tuple[str, ...] = ("a", "b", "c")) -> list[dict[str, Any]]:
    """A clean trail: record n belongs to chain ``names[owners[n]]``, in log order."""
    heads: dict[str, Head] = {}
    out = []
    for n, owner in enumerate(owners):
        name = names[owner]
        raw = orjson.dumps({"n": n, "deployment": name})
        record = append(
            heads.get(name),
            deployment=name,
            source=f"canary.decisions.v1/{owner}@{n}",
            ts=1_790_000_000.0 + n / 7,
            subject=Subject.of(KINDS[n % 4], orjson.loads(raw), raw),
        )
        heads[name] = Head.of(record)
        out.append(record)
    return out


@cache
def audit_schema() -> Draft202012Validator:
    return Draft202012Validator(json_schemas()["audit-record"])


def kinds(log: list[Any]) -> set[str]:
    return {problem.kind for problem in verify_records(log).problems}


def is_last_of_chain(log: list[dict[str, Any]], index: int) -> bool:
    name = log[index]["deployment"]
    return all(record["deployment"] != name for record in log[index + 1 :])


owners = st.lists(st.integers(0, 2), min_size=2, max_size=30)


@settings(deadline=None)
@given(owners)
def test_a_clean_trail_verifies(owners: list[int]) -> None:
    log = trail(owners)
    report = verify_records(log)
    assert report.ok, report.problems
    assert report.records == len(owners)
    assert report.deployments == len(set(owners))
    schema = audit_schema()
    for record in log:  # every record the chain builds fits the contract
        AuditRecord.model_validate(record)
        schema.validate(record)


def test_records_are_sealed_over_sorted_canonical_json() -> None:
    (record,) = trail([0])
    shuffled = dict(reversed(list(record.items())))
    assert canonical(shuffled) == canonical(record)
    assert b'"hash"' not in canonical(record)
    assert record_hash(record) == record["hash"]
    assert canonical(record).startswith(b'{"deployment":"a","detail":null,"format":')


FIELDS: dict[str, Any] = {
    "subject": {"n": -1},
    "ts": 1.5,
    "source": "canary.decisions.v1/9@999",
    "kind": "unreadable",
    "subject_sha256": "0" * 64,
    "subject_bytes": 123456,
    "detail": "changed",
    "deployment": "z",
    "seq": 40,
    "prev": "f" * 64,
    "hash": "e" * 64,
}


def _modify(record: dict[str, Any], name: str) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    value = FIELDS[name]
    if changed[name] == value:
        value = {"n": -2} if name == "subject" else "verdict" if name == "kind" else None
    changed[name] = value
    return changed


@settings(max_examples=300, deadline=None)
@given(owners, st.data())
def test_any_modification_is_found(owners: list[int], data: st.DataObject) -> None:
    log = trail(owners)
    index = data.draw(st.integers(0, len(log) - 1))
    name = data.draw(st.sampled_from(sorted(FIELDS)))
    rehash = data.draw(st.booleans()) and name != "hash"
    changed = _modify(log[index], name)
    if rehash:
        # Re-sealed: only the next record of its chain can tell, so it needs one.
        if is_last_of_chain(log, index):
            return
        changed["hash"] = record_hash(changed)
    log[index] = changed
    assert not verify_records(log).ok


@settings(max_examples=300, deadline=None)
@given(owners, st.data())
def test_any_deletion_but_a_chains_newest_is_found(owners: list[int], data: st.DataObject) -> None:
    log = trail(owners)
    index = data.draw(st.integers(0, len(log) - 1))
    last = is_last_of_chain(log, index)
    del log[index]
    assert verify_records(log).ok is last


@settings(max_examples=300, deadline=None)
@given(owners, st.data())
def test_any_swap_that_reorders_a_chain_is_found(owners: list[int], data: st.DataObject) -> None:
    log = trail(owners)
    i = data.draw(st.integers(0, len(log) - 1))
    j = data.draw(st.integers(0, len(log) - 1))
    log[i], log[j] = log[j], log[i]
    in_order = all(
        [r["seq"] for r in log if r["deployment"] == name]
        == sorted(r["seq"] for r in log if r["deployment"] == name)
        for name in "abc"
    )
    # The order of records of different deployments carries no meaning: only a swap that
    # moves a record past another of its own chain changes anything.
    assert verify_records(log).ok is in_order


@settings(max_examples=300, deadline=None)
@given(owners, st.data())
def test_any_insertion_is_found(owners: list[int], data: st.DataObject) -> None:
    log = trail(owners)
    original = log[data.draw(st.integers(0, len(log) - 1))]
    inserted = copy.deepcopy(original)
    if data.draw(st.booleans()):  # a forgery sealed in place of the original's content
        inserted["subject"] = {"forged": True}
        inserted["hash"] = record_hash(inserted)
    log.insert(data.draw(st.integers(0, len(log))), inserted)
    assert not verify_records(log).ok


def test_each_kind_of_problem_is_named() -> None:
    log = trail([0, 0, 0, 0, 0])
    swapped = [log[0], log[1], log[3], log[2], log[4]]
    report = verify_records(swapped)
    assert [(p.kind, p.seq) for p in report.problems] == [("reordered", 2)]

    assert [(p.kind, p.seq) for p in verify_records([*log[:2], *log[3:]]).problems] == [
        ("missing", 2)
    ]
    assert kinds([*log, log[1]]) == {"duplicated"}

    edited = copy.deepcopy(log)
    edited[2]["subject"] = {"n": 99}
    assert [(p.kind, p.seq) for p in verify_records(edited).problems] == [("modified", 2)]

    edited[2]["hash"] = record_hash(edited[2])  # re-sealed: the next link breaks
    report = verify_records(edited)
    assert [(p.kind, p.seq) for p in report.problems] == [("modified", 3)]
    assert "its prev does not match seq 2 at #2" in report.problems[0].detail

    assert kinds([*log, b"garbage", b'{"format": "x"}']) == {"unreadable"}
    truncated = verify_records(log[3:])  # the oldest records deleted
    assert [(p.kind, p.seq, p.detail) for p in truncated.problems] == [
        ("missing", 0, "seqs 0 to 2 never appeared (3 records)")
    ]


def test_a_deployment_filter_checks_that_chain_alone() -> None:
    log = trail([0, 1, 0, 1])
    del log[1]  # b's seq 0
    assert not verify_records(log).ok
    assert verify_records(log, deployment="a").ok
    assert verify_records(log, deployment="a").records == 2
    verifier = ChainVerifier("a")
    verifier.feed(b"not json", "x", key=b"a")
    verifier.feed(b"not json", "y", key=b"b")
    assert [(p.kind, p.deployment, p.where) for p in verifier.report().problems] == [
        ("unreadable", "a", "x")
    ]


def test_problems_beyond_the_limit_are_counted_not_kept() -> None:
    verifier = ChainVerifier()
    for n in range(MAX_PROBLEMS + 50):
        verifier.feed(b"[]", f"#{n}")
    report = verifier.report()
    assert len(report.problems) == MAX_PROBLEMS
    assert report.counts == {"unreadable": MAX_PROBLEMS + 50}


@pytest.mark.parametrize(
    ("kind", "raw", "expected", "detail"),
    [
        (AuditKind.DECISION, b"\xff\xfe", "unreadable", "malformed_json: not UTF-8"),
        (AuditKind.ACTUATION, b'{"type": "actuation"}', "unreadable", "invalid_actuation: "),
        (AuditKind.VERDICT, b"[1, 2]", "unreadable", "invalid_verdict: "),
    ],
)
def test_messages_that_are_not_records_of_their_topic_are_unreadable(
    kind: AuditKind, raw: bytes, expected: str, detail: str
) -> None:
    subject = read_subject(kind, raw)
    assert subject.kind.value == expected
    assert subject.detail is not None and subject.detail.startswith(detail)
    assert subject.size == len(raw)


def test_a_subject_json_cannot_render_is_kept_by_its_digest() -> None:
    deep: Any = []
    for _ in range(400):  # orjson reads this, but renders at most 254 levels
        deep = [deep]
    raw = orjson.dumps({"x": 1})
    record = append(
        None,
        deployment="d",
        source="t/0@0",
        ts=None,
        subject=Subject(AuditKind.UNREADABLE, deep, "a" * 64, len(raw), "invalid_decision: x"),
    )
    assert record["subject"] is None
    assert record["detail"].startswith("invalid_decision: x: not kept as JSON")
    assert verify_records([record]).ok


def test_chain_names_come_from_keys() -> None:
    assert chain_name(b"dep") == "dep"
    assert chain_name(None) == ""
    assert chain_name(b"x" * 5000) == "x" * 1024
