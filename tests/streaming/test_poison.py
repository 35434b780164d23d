"""On the real broker: poison messages in the middle of live rollouts change no decision.

Every kind of hostile or careless input of issue 8 is produced to the telemetry and
deployments topics while two rollouts run: the worker keeps running, sets each message aside
with exactly one dead letter that names it (``topic/partition@offset``), and decides exactly
what a replay of the clean stream decides.
"""

from __future__ import annotations

import time

import orjson
import pytest

from canarystream.contracts.topics import DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC
from tests.support.broker import Stack, announce_then_send, key, replayed, rollout_events

pytestmark = pytest.mark.kafka

DAY = 86_400.0
OLD = "errors-x3-previous"  # a deployment of errors-x3 that ended before this rollout began


def _request(service: str, ts: float, **fields: object) -> dict:
    return {"type": "request", "ts": ts, "service": service, "version": "v1",
            "latency_ms": 20.0, "status": 200, **fields}  # fmt: skip


def _token(ts: float, latency: str) -> bytes:
    """A request whose latency is a bare JSON token (NaN, Infinity) no JSON parser should take."""
    return (
        b'{"type":"request","ts":%.3f,"service":"errors-x3","version":"v2","latency_ms":%s,'
        b'"status":200}' % (ts, latency.encode())
    )


def poisons(start: float, now: float) -> dict[str, list[tuple[str, bytes, bytes]]]:
    """Name -> messages (topic, key, value); ``start``: the rollouts' start, ``now``: mid-way.

    Every value differs from every other, so a dead letter can be traced to its message.
    """
    e, h = b"errors-x3", b"healthy"
    numbers = b"[" + b",".join(b"%d" % (i % 99_991) for i in range(160_000)) + b"]"
    return {
        "malformed JSON": [(TELEMETRY_TOPIC, e, b'{"type": "request", "ts": '),
                           (DEPLOYMENTS_TOPIC, e, b'{"type": "deployment_aborted", ')],
        "invalid UTF-8": [(TELEMETRY_TOPIC, e, b"\xff\xfe\x80 not utf-8"),
                          (DEPLOYMENTS_TOPIC, e, b'{"type": "deployment_paused\xff"}')],
        "type is a list": [
            (TELEMETRY_TOPIC, e, orjson.dumps(_request("errors-x3", now, type=["request"]))),
            (DEPLOYMENTS_TOPIC, e, orjson.dumps({"type": ["deployment_aborted"], "ts": now,
                                                 "deployment": "errors-x3", "actor": "x"})),
        ],
        "type is an object": [(TELEMETRY_TOPIC, e, b'{"type": {}}'),
                              (DEPLOYMENTS_TOPIC, e, b'{"type": {}, "ts": 1790000000.0}')],
        "array nested 300 deep": [(TELEMETRY_TOPIC, e, b"[" * 300 + b"]" * 300),
                                  (DEPLOYMENTS_TOPIC, e, b"[" * 301 + b"]" * 301)],
        "900 kB array of numbers": [(TELEMETRY_TOPIC, e, numbers)],
        "600 kB string": [
            (TELEMETRY_TOPIC, e, orjson.dumps(_request("errors-x3", now, version="x" * 600_000)))
        ],
        "NaN and Infinity tokens": [(TELEMETRY_TOPIC, e, _token(now, "NaN")),
                                    (TELEMETRY_TOPIC, e, _token(now, "Infinity")),
                                    (TELEMETRY_TOPIC, e, _token(now, "-Infinity"))],
        "absurd values": [
            (TELEMETRY_TOPIC, e, orjson.dumps(_request("errors-x3", now, latency_ms=1e12))),
            (TELEMETRY_TOPIC, e, orjson.dumps(_request("errors-x3", now, status=999))),
            (TELEMETRY_TOPIC, e, orjson.dumps(_request("errors-x3", 1e300))),
            (TELEMETRY_TOPIC, e, orjson.dumps(_request("errors-x3", now, latency_ms=-5.0))),
        ],
        "unknown version": [
            (TELEMETRY_TOPIC, e, orjson.dumps(_request("errors-x3", now, version="v9")))
        ],
        "service differs from key": [
            (TELEMETRY_TOPIC, e, orjson.dumps(
                [_request("healthy", now + i / 100, version="v2", status=503) for i in range(60)]
            )),
            (DEPLOYMENTS_TOPIC, e, orjson.dumps({"type": "deployment_aborted", "ts": now,
                                                 "deployment": "healthy", "service": "healthy",
                                                 "actor": "mallory"})),
        ],
        "stamped years ahead": [
            (TELEMETRY_TOPIC, e, orjson.dumps(_request("errors-x3", now + 5 * 365 * DAY)))
        ],
        "stamped 11 days before the deployment": [
            (TELEMETRY_TOPIC, h, orjson.dumps(
                [_request("healthy", start - 11 * DAY + i, version="v2", status=503)
                 for i in range(60)]
            ))
        ],
        "finished deployment announced again": [
            (DEPLOYMENTS_TOPIC, e, orjson.dumps(_announcement(OLD, now)))
        ],
    }  # fmt: skip


def _announcement(deployment: str, ts: float) -> dict:
    return {"type": "deployment_started", "ts": ts, "deployment": deployment,
            "service": "errors-x3", "baseline_version": "v1", "canary_version": "v2"}  # fmt: skip


def test_poison_messages_mid_rollout_are_dead_lettered_and_change_no_decision(
    stack: Stack,
) -> None:
    events = rollout_events("healthy", "errors-x3", rps=40, duration="33m", seed=5)
    start = events[0]["ts"]
    previous = [
        _announcement(OLD, start - 1200),
        {"type": "deployment_aborted", "ts": start - 1100, "deployment": OLD,
         "service": "errors-x3", "actor": "release-bot"},
    ]  # fmt: skip
    clean = previous + events
    expected = replayed(clean)
    starts = [e for e in events if e["type"] == "deployment_started"]
    telemetry = [e for e in events if e["type"] != "deployment_started"]
    half = len(telemetry) // 2

    worker = stack.start_worker()
    stack.produce(previous[:1])
    stack.produce(previous[1:], signed_by="approver")  # the deployer may not abort
    announce_then_send(stack, starts)
    stack.produce(telemetry[:half])
    bad = poisons(start, telemetry[half]["ts"])
    for messages in bad.values():
        for topic, message_key, value in messages:
            stack.produce_raw(topic, [value], key=message_key)
    stack.produce(telemetry[half:])
    stack.wait_until_caught_up(expected, timeout=180)
    time.sleep(3)

    problems: list[str] = []
    if not worker.alive():
        problems.append(f"the worker died:\n{worker.tail()}")
    live = stack.decisions()
    if sorted(map(key, live)) != sorted(map(key, expected)):
        only_live = sorted(set(map(key, live)) - set(map(key, expected)))
        only_replay = sorted(set(map(key, expected)) - set(map(key, live)))
        problems.append(f"decisions differ: live only {only_live}; replay only {only_replay}")

    # Each poison message has exactly one dead letter, identified by where it was read.
    where: dict[bytes, str] = {}
    for topic in (TELEMETRY_TOPIC, DEPLOYMENTS_TOPIC):
        for message in stack.read_messages(topic):
            where[message.value] = f"{message.topic}/{message.partition}@{message.offset}"
    letters = stack.dead_letters()
    by_id: dict[str, list[dict]] = {}
    for letter in letters:
        by_id.setdefault(letter.get("id") or letter["source"], []).append(letter)
    for name, messages in bad.items():
        for topic, _, value in messages:
            found = by_id.pop(where[value], [])
            if len(found) != 1:
                problems.append(f"{name} ({topic}): {len(found)} dead letters, not 1")
    if by_id:
        extra = {k: [letter["reason"] for letter in v] for k, v in by_id.items()}
        problems.append(f"dead letters of clean messages: {extra}")
    assert not problems, "\n".join(problems)
    assert all(letter["detail"] and letter["reason"] for letter in letters)
    assert all(len(orjson.dumps(letter)) < 1_000_000 for letter in letters)
