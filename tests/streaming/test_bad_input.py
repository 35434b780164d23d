"""Bad input never stops the worker: it is counted and dead-lettered, good input flows on."""

from __future__ import annotations

import base64

import orjson
import pytest

from canarystream.contracts.topics import DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC
from tests.support.broker import Stack, announce_then_send, key, replayed, rollout_events

pytestmark = pytest.mark.kafka

START = 1_790_000_000.0
BAD: list[tuple[bytes, str]] = [
    (b'{"type": "request", "ts": ', "malformed_json"),
    (b"\xff\xfe not utf-8", "malformed_json"),
    (b'{"type":"request","ts":1790000100.0,"service":"errors-x3","version":"v1",'
     b'"latency_ms":NaN,"status":200}', "malformed_json"),
    (b'{"type":"request","ts":1790000100.0,"service":"errors-x3","version":"v1",'
     b'"latency_ms":"12","status":200}', "invalid_field"),
    (b'{"type":"request","ts":1790000100.0,"service":"errors-x3","version":"v1",'
     b'"latency_ms":1e12,"status":200}', "invalid_field"),
    (b'{"type":"request","ts":1790000100.0,"service":"errors-x3","version":"v9",'
     b'"latency_ms":12.0,"status":200}', "unknown_version"),
    (b'{"type":"teleport","ts":1790000100.0,"service":"errors-x3"}', "unknown_type"),
    (b'"just a string"', "not_an_object"),
]  # fmt: skip


def test_malformed_and_invalid_messages_are_dead_lettered_while_good_ones_flow(
    stack: Stack,
) -> None:
    events = rollout_events("errors-x3", rps=40, duration="15m", seed=11)
    expected = replayed(events)
    worker = stack.start_worker()
    starts = [e for e in events if e["type"] == "deployment_started"]
    telemetry = [e for e in events if e["type"] != "deployment_started"]
    announce_then_send(stack, starts)
    half = len(telemetry) // 2
    stack.produce(telemetry[:half])
    stack.produce_raw(TELEMETRY_TOPIC, [raw for raw, _ in BAD], key=b"errors-x3")
    stack.produce_raw(DEPLOYMENTS_TOPIC, [b'{"type":"deployment_aborted"}'], key=b"errors-x3")
    stack.produce(telemetry[half:])
    stack.wait_until_caught_up(expected)

    assert sorted(map(key, stack.decisions())) == sorted(map(key, expected))
    stack.wait_for(lambda: len(stack.dead_letters()) >= len(BAD) + 1, what="dead letters")
    letters = stack.dead_letters()
    assert len(letters) == len(BAD) + 1
    got = sorted((_original(letter), letter["reason"]) for letter in letters)
    want = sorted([*BAD, (b'{"type":"deployment_aborted"}', "invalid_field")])
    assert got == want
    assert all(letter["source"].startswith(stack.prefix) for letter in letters)
    assert all(letter["detail"] for letter in letters)

    metrics = worker.metrics()
    for reason in {reason for _, reason in BAD}:
        assert f'canarystream_invalid_events_total{{reason="{reason}"}}' in metrics
    assert worker.alive()


def _original(letter: dict) -> bytes:
    if letter["encoding"] == "base64":
        return base64.b64decode(letter["original"])
    return letter["original"].encode()


def test_a_batch_with_one_bad_event_keeps_the_good_ones(stack: Stack) -> None:
    events = rollout_events("errors-x3", rps=40, duration="8m", seed=12)
    expected = replayed(events)
    stack.start_worker()
    starts = [e for e in events if e["type"] == "deployment_started"]
    telemetry = [e for e in events if e["type"] != "deployment_started"]
    announce_then_send(stack, starts, batch=1)
    bad = dict(telemetry[10], status=999)
    mixed = [*telemetry[:10], bad, *telemetry[10:20]]
    stack.produce_raw(TELEMETRY_TOPIC, [orjson.dumps(mixed)], key=b"errors-x3")
    stack.produce(telemetry[20:])
    stack.wait_until_caught_up(expected)
    assert sorted(map(key, stack.decisions())) == sorted(map(key, expected))
    stack.wait_for(stack.dead_letters, what="the dead letter")
    (letter,) = stack.dead_letters()  # one per message, its original the whole message
    assert letter["reason"] == "invalid_field"
    assert letter["original"].encode() == orjson.dumps(mixed)
    assert letter["detail"].startswith("1 of 21 events rejected (invalid_field 1): [10] ")
    assert "status" in letter["detail"]
