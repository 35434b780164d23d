"""The worker's core in detail: the exact words and counts of dead letters, and the migration."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from canarystream.contracts.decision import Decision
from canarystream.contracts.topics import service_partition
from canarystream.engine import Engine
from canarystream.errors import ContractError
from canarystream.streaming import processor
from canarystream.streaming.processor import ServiceSnapshot
from tests.streaming.test_processor import (
    A,
    B,
    D,
    Feed,
    T,
    aborted,
    letter_of,
    make_processor,
    request,
    started,
)


def test_a_malformed_message_counts_once() -> None:
    feed, proc = Feed(), make_processor()
    message = feed(T, b"{not json")
    result = proc.process([feed(D, started()), message])
    assert result.invalid == {"malformed_json": 1}
    assert letter_of(result, message).reason == "malformed_json"


def test_an_unkeyed_message_naming_no_service_says_so() -> None:
    feed, proc = Feed(), make_processor()
    message = feed(D, {"type": "deployment_aborted", "ts": 1.0}, key=None)
    result = proc.process([message])
    assert letter_of(result, message).detail == (
        "message has no key and its event names no service; key telemetry and deployment "
        "messages by service"
    )
    assert result.invalid == {"no_service": 1}


def test_key_mismatches_name_both_services_and_what_the_message_belongs_to() -> None:
    feed, proc = Feed(), make_processor()
    keyed = feed(T, request(B))
    unkeyed = feed(T, [request(A), request(B)], key=None)
    result = proc.process([feed(D, started()), keyed, unkeyed])
    assert letter_of(result, keyed).detail == (
        "event of service 'payments' in a message of service 'checkout' (its key); a message "
        "holds events of one service"
    )
    assert letter_of(result, unkeyed).detail == (
        "1 of 2 events rejected (key_mismatch 1): [1] key_mismatch: event of service "
        "'payments' in a message of service 'checkout' (its first event (the message has no "
        "key)); a message holds events of one service"
    )


def test_long_service_names_are_clipped_to_100_characters_and_each_listing_to_150() -> None:
    long_a, long_b = "a" * 120, "b" * 120
    feed, proc = Feed(), make_processor()
    single = feed(T, request(long_b), key=long_a)
    batched = feed(T, [request(long_b), request(long_b)], key=long_a)
    result = proc.process([feed(D, started(long_a), key=long_a), single, batched])
    clipped_a, clipped_b = "a" * 99 + "…", "b" * 99 + "…"
    whole = (
        f"event of service {clipped_b!r} in a message of service {clipped_a!r} (its key); "
        "a message holds events of one service"
    )
    assert letter_of(result, single).detail == whole
    listed = whole[:149] + "…"
    assert letter_of(result, batched).detail == (
        f"2 of 2 events rejected (key_mismatch 2): [0] key_mismatch: {listed}; "
        f"[1] key_mismatch: {listed}"
    )


def test_more_rejections_than_listed_are_counted_and_no_more_otherwise() -> None:
    feed, proc = Feed(), make_processor()
    eight = feed(T, [request(status=0)] * 8)
    five = feed(T, [request(status=0)] * 5)
    result = proc.process([feed(D, started()), eight, five])
    assert letter_of(result, eight).detail.endswith("; 3 more")
    assert letter_of(result, eight).detail.count("[") == processor.LISTED
    assert not letter_of(result, five).detail.endswith("more")
    assert letter_of(result, five).detail.count("; [") == processor.LISTED - 1


@pytest.mark.parametrize(
    ("invalid", "named"),
    [(10, ["2", "4", "10", "20", "30"]), (35, ["2", "4", "20", "30", "35"])],
)
def test_rejections_reported_out_of_order_list_the_lowest_indices(
    invalid: int, named: list[str]
) -> None:
    # Events of another service are rejected first, before the engine sees the others; an
    # invalid event the engine reports afterwards still takes its place among the first five.
    events: list[Any] = [request() for _ in range(60)]
    for index in (2, 4, 20, 30, 40, 50):
        events[index] = request(B)
    events[invalid] = request(status=0)
    feed, proc = Feed(), make_processor()
    message = feed(T, events)
    result = proc.process([feed(D, started()), message])
    detail = letter_of(result, message).detail
    assert [part.split("]", 1)[0] for part in detail.split("[")[1:]] == named
    assert detail.startswith("7 of 60 events rejected (invalid_field 1, key_mismatch 6): ")
    assert detail.endswith("; 2 more")


class _FailingAfterARejection(Engine):
    """An engine that rejects the first event of a batch of requests, then fails on it."""

    def process_batch(self, events: Any, on_error: Any = None, *args: Any) -> list[Decision]:
        if events[0].get("type") != "request":
            return super().process_batch(events, on_error, *args)
        on_error(0, ContractError("bad field", reason="invalid_field"))
        raise RuntimeError("boom")


def test_an_internal_error_after_rejections_reports_both() -> None:
    feed, proc = Feed(), make_processor(engine=_FailingAfterARejection())
    message = feed(T, [request(), request()])
    start = feed(D, started())
    result = proc.process([start, message])
    letter = letter_of(result, message)
    assert letter.reason == "internal_error"
    assert letter.detail == (
        "internal error: RuntimeError: boom; before it, 1 of 2 events rejected "
        "(internal_error 1, invalid_field 1): [0] invalid_field: bad field"
    )
    assert result.invalid == {"internal_error": 1, "invalid_field": 1}


def test_the_version_1_migration_gives_version_2_without_tombstones() -> None:
    migrate = processor.MIGRATIONS[1]
    rollout = {"deployment": f"{A}-1", "service": A}
    state = {"format": processor.STATE_FORMAT, "version": 1, "service": A, "rollouts": [rollout]}
    upgraded = migrate(dict(state))
    assert upgraded["version"] == 2
    assert upgraded["tombstones"] == {}
    assert (upgraded["format"], upgraded["service"]) == (processor.STATE_FORMAT, A)
    # Each rollout learns the partition of its service.
    (migrated,) = upgraded["rollouts"]
    assert migrated["partition"] == service_partition(A) != service_partition(B)
    assert {k: v for k, v in migrated.items() if k != "partition"} == rollout
    assert orjson.dumps(upgraded)


def test_the_version_2_migration_gives_no_starter_and_no_command_taken() -> None:
    rollout = {"deployment": f"{A}-1", "service": A, "partition": service_partition(A)}
    state = {"format": processor.STATE_FORMAT, "version": 2, "service": A, "rollouts": [rollout]}
    upgraded = processor.MIGRATIONS[2](dict(state))
    assert upgraded["version"] == 3
    assert upgraded["rollouts"] == [{**rollout, "started_by": None, "controls": []}]
    assert {k: v for k, v in upgraded.items() if k not in ("version", "rollouts")} == {
        k: v for k, v in state.items() if k not in ("version", "rollouts")
    }


def test_the_version_3_migration_gives_no_routing_observed() -> None:
    last = {"decision_id": "d-7", "action": "hold"}
    rollout = {"deployment": f"{A}-1", "service": A, "last_decision": last}
    state = {"format": processor.STATE_FORMAT, "version": 3, "service": A, "rollouts": [rollout]}
    upgraded = processor.MIGRATIONS[3](dict(state))
    assert upgraded["version"] == 4
    routing = {"share": None, "at": None, "awaited": None, "awaited_since": None, "paged": None}
    assert upgraded["rollouts"] == [{**rollout, "routing": {**routing, "decided": "d-7"}}]
    assert {k: v for k, v in upgraded.items() if k not in ("version", "rollouts")} == {
        k: v for k, v in state.items() if k not in ("version", "rollouts")
    }


def test_three_finished_rollouts_are_kept_beside_the_active_one() -> None:
    # Each rollback is verified afterwards: the last one aborted stays active meanwhile.
    feed, proc = Feed(), make_processor()
    batch = []
    for n in range(1, 6):
        batch += [feed(D, started(deployment=f"{A}-{n}")), feed(D, aborted(f"{A}-{n}"))]
    result = proc.process(batch)
    assert A in proc.engine.active_by_service
    assert [r.deployment for r in result.snapshots[A].rollouts] == [
        f"{A}-{n}" for n in (2, 3, 4, 5)
    ]
    result = proc.process([feed(D, started(deployment=f"{A}-6"))])
    assert [r.deployment for r in result.snapshots[A].rollouts] == [
        f"{A}-{n}" for n in (3, 4, 5, 6)
    ]


def test_a_key_that_is_not_utf8_is_no_service_not_ignored() -> None:
    feed, proc = Feed(), make_processor()
    message = feed(T, request(), key=b"\xff\xfe")
    result = proc.process([feed(D, started()), message])
    assert result.ignored == 0
    assert letter_of(result, message).reason == "no_service"


def test_telemetry_of_services_without_an_active_rollout_is_counted_exactly() -> None:
    # B has stored state without a rollout; "search" has none at all.
    feed, store = Feed(), {B: ServiceSnapshot(B, 0).dumps()}
    proc = make_processor(store)
    batch = [feed(T, request(B), key=B), feed(T, request(B), key=B)]
    batch.append(feed(T, request("search"), key="search"))
    result = proc.process(batch)
    assert result.ignored == 3
    assert result.dead_letters == [] and result.snapshots == {}


@pytest.mark.parametrize("topic", [T, D])
def test_an_unreadable_service_is_forgotten_with_its_partition(topic: str) -> None:
    feed, store = Feed(), {A: b"garbage"}
    proc = make_processor(store)
    value = [request(), request(), request()] if topic == T else started()
    message = feed(topic, value, partition=3)
    result = proc.process([message])
    letter = letter_of(result, message)
    assert letter.reason == "state_unreadable"
    assert letter.detail.startswith(
        "the stored state of service 'checkout' cannot be read, so its messages are set aside: "
    )
    assert result.invalid == {"state_unreadable": 3 if topic == T else 1}
    assert (proc.services[A].service, proc.services[A].partition) == (A, 3)
    assert proc.revoke({2}) == 0 and A in proc.services
    assert proc.revoke({3}) == 1 and A not in proc.services


def test_a_malformed_message_names_the_parse_error() -> None:
    feed, proc = Feed(), make_processor()
    message = feed(T, b'{"type": ')
    result = proc.process([feed(D, started()), message])
    assert letter_of(result, message).detail.startswith("malformed JSON: ")


@pytest.mark.parametrize("service", ["", 5, None, ["checkout"]])
def test_an_unkeyed_first_event_without_a_service_name_is_no_service(service: Any) -> None:
    feed, proc = Feed(), make_processor()
    message = feed(T, [request(service=service), request()], key=None)
    result = proc.process([feed(D, started()), message])
    assert letter_of(result, message).reason == "no_service"
    assert result.invalid == {"no_service": 2}


class _Failing(Engine):
    def process_batch(self, events: Any, on_error: Any = None, *args: Any) -> list[Decision]:
        if events[0].get("type") != "request":
            return super().process_batch(events, on_error, *args)
        raise RuntimeError("boom")


def test_an_internal_error_alone_says_only_that() -> None:
    feed, proc = Feed(), make_processor(engine=_Failing())
    message = feed(T, [request(), request()])
    result = proc.process([feed(D, started()), message])
    assert letter_of(result, message).detail == "internal error: RuntimeError: boom"
    assert result.invalid == {"internal_error": 1}


def test_a_record_of_another_service_is_unreadable_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed, store = Feed(), {A: ServiceSnapshot(B, 0).dumps()}
    proc = make_processor(store)
    message = feed(T, request())
    with caplog.at_level(logging.ERROR, logger=processor.__name__):
        result = proc.process([message])
    assert letter_of(result, message).detail.endswith(
        "cannot be read, so its messages are set aside: the record holds service 'payments'"
    )
    (record,) = [r for r in caplog.records if "stored state" in r.getMessage()]
    assert record.getMessage() == (
        "stored state of service 'checkout' cannot be read; its messages are dead-lettered "
        "(state_unreadable) until it can: the record holds service 'payments'"
    )


def test_one_traceback_per_batch_and_each_failure_logged_with_its_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed, proc = Feed(), make_processor(engine=_Failing())
    first, second = feed(T, [request()], partition=0), feed(T, [request()], partition=0)
    with caplog.at_level(logging.ERROR, logger=processor.__name__):
        proc.process([feed(D, started()), first, second])
    records = [r for r in caplog.records if r.getMessage().startswith("internal error")]
    assert [r.getMessage() for r in records] == [
        f"internal error on message {T}/0@{first.offset}, dead-lettered: RuntimeError: boom",
        f"internal error on message {T}/0@{second.offset}, dead-lettered: RuntimeError: boom",
    ]
    assert records[0].exc_info is not None and records[0].exc_info[0] is RuntimeError
    assert not records[1].exc_info
    with caplog.at_level(logging.ERROR, logger=processor.__name__):
        caplog.clear()
        proc.process([feed(T, [request()])])  # a new batch: a traceback again
    (again,) = [r for r in caplog.records if r.getMessage().startswith("internal error")]
    assert again.exc_info is not None


def test_a_service_known_only_by_its_tombstones_keeps_its_offsets() -> None:
    feed, store = Feed(), {}
    stored = ServiceSnapshot(B, 0, tombstones={f"{B}-1": 1_790_000_000.0})
    store[B] = stored.dumps()
    proc = make_processor(store)
    again = feed(D, started(B), key=B)
    result = proc.process([again])
    assert letter_of(result, again).reason == "duplicate_deployment"
    assert result.snapshots[B].offsets == {D: again.offset}
    assert result.snapshots[B].tombstones == stored.tombstones
