"""Property tests of the worker's core: any message, however bad, is one bounded dead letter."""

from __future__ import annotations

import hashlib
import random
import re
from functools import cache
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canarystream.contracts.actuation import MAX_DETAIL_CHARS, MAX_ORIGINAL_BYTES, DeadLetter
from canarystream.contracts.topics import DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC
from canarystream.engine import Engine
from canarystream.streaming.processor import BatchProcessor, Inbound
from tests.streaming.test_processor import MESSAGE_SIZE_LIMIT, TS, aborted, request, started

T, D = TELEMETRY_TOPIC, DEPLOYMENTS_TOPIC
SERVICE, OTHER = "checkout", "payments"
WHOLE_MESSAGE = {"malformed_json", "no_service", "state_unreadable"}
HUGE = {  # messages whose dead letter would exceed the topic's limit if not capped
    "deep": b"[" * 2000 + b"]" * 2000,
    "control characters": b'"' + b"\x01" * 70_000 + b'"',
    "not utf-8": b"\xff" * 70_000,
    "many events": orjson.dumps([{"type": "x" * 300}] * 3000),
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from([SERVICE, OTHER, "request", "deployment_aborted", "v1", "v2", TS + 5])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
templates = st.sampled_from(
    [
        request(SERVICE),
        request(SERVICE, "v1"),
        request(OTHER),
        started(OTHER),
        aborted("checkout-1"),
    ]
)
fields = st.sampled_from(["type", "service", "version", "ts", "status", "deployment", "extra"])


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A real event with one field replaced: often invalid, sometimes another service's."""
    event = dict(draw(templates))
    event[draw(fields)] = draw(json_values | st.sampled_from([["request"], {"request": 1}]))
    return event


events = mutated() | json_values
message_values = (
    st.builds(orjson.dumps, events | st.lists(events, max_size=6))
    | st.binary(max_size=40)
    | st.sampled_from(sorted(HUGE)).map(HUGE.__getitem__)
)
keys = st.sampled_from([SERVICE.encode(), OTHER.encode(), None, b"\xff"]) | st.binary(max_size=6)
bad_messages = st.tuples(st.sampled_from([T, D]), keys, message_values)


def processor() -> BatchProcessor:
    return BatchProcessor(Engine(), {}.get, lambda: 0.0, telemetry_topic=T)


def number(messages: list[tuple[str, bytes | None, bytes]]) -> list[Inbound]:
    """Messages with the offsets a broker would give them, all in partition 0."""
    next_offset = {T: 0, D: 0}
    out = []
    for topic, key, value in messages:
        out.append(Inbound(topic, 0, next_offset[topic], key, value))
        next_offset[topic] += 1
    return out


def check_letters(batch: list[Inbound], letters: list[DeadLetter]) -> dict[str, DeadLetter]:
    """At most one dead letter per message, each bounded and describing its message exactly."""
    by_id = {f"{m.topic}/{m.partition}@{m.offset}": m for m in batch}
    seen: dict[str, DeadLetter] = {}
    for letter in letters:
        assert letter.id not in seen
        seen[letter.id] = letter
        message = by_id[letter.id]
        encoded = orjson.dumps(letter.model_dump(mode="json"))
        assert len(encoded) < MESSAGE_SIZE_LIMIT
        assert len(letter.detail) <= MAX_DETAIL_CHARS
        assert letter.source == letter.id
        assert letter.size == len(message.value)
        assert letter.sha256 == hashlib.sha256(message.value).hexdigest()
        kept = letter.original_bytes()
        assert len(kept) <= MAX_ORIGINAL_BYTES and message.value.startswith(kept)
        assert letter.truncated == (kept != message.value)
    return seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bad_messages, min_size=1, max_size=8))
def test_any_message_is_at_most_one_bounded_dead_letter(messages: list) -> None:
    proc = processor()
    proc.process(number([(D, SERVICE.encode(), orjson.dumps(started(SERVICE))), (D, None, b"{}")]))
    batch = number(messages)
    result = proc.process(batch)  # never raises
    check_letters(batch, result.dead_letters)
    assert sum(result.invalid.values()) >= len(result.dead_letters)


@cache
def good_stream() -> list[tuple[str, bytes | None, bytes]]:
    """A rollout rolled back after a regression: 4 decisions from 6,000 requests."""
    rng = random.Random(1)
    # The low-traffic rule off: the stream stays held at its first stage until the regression.
    policy = {
        "stages": [{"traffic_percent": p, "min_duration": "1m"} for p in (50, 60, 70)],
        "low_traffic": {"enabled": False},
    }
    messages = [(D, SERVICE.encode(), orjson.dumps({**started(SERVICE), "policy": policy}))]
    batch = []
    for i in range(6000):
        ts = TS + 1 + i / 10
        canary = i % 2 == 1
        errors = 0.5 if canary and ts - TS > 240 else 0.01
        status = 503 if rng.random() < errors else 200
        version = "v2" if canary else "v1"
        batch.append(request(SERVICE, version, round(ts, 3), status=status))
        if len(batch) == 50:
            messages.append((T, SERVICE.encode(), orjson.dumps(batch)))
            batch = []
    return messages


def entirely_rejected(message: Inbound, letter: DeadLetter | None) -> bool:
    """Whether nothing of the message reached a rollout (per its dead letter)."""
    try:
        value = orjson.loads(message.value)
    except orjson.JSONDecodeError:
        value = None
    if value == []:
        return True
    if letter is None or letter.reason == "internal_error":
        return False  # applied, passed over, or unknown
    if letter.reason in WHOLE_MESSAGE or type(value) is not list:
        return True
    counted = re.match(r"(\d+) of (\d+) events rejected", letter.detail)
    assert counted is not None, letter.detail
    assert int(counted[2]) == len(value)
    return counted[1] == counted[2]


def decide(batch: list[Inbound]) -> tuple[list[dict[str, Any]], list[DeadLetter]]:
    proc, decisions, letters = processor(), [], []
    for start in range(0, len(batch), 40):
        result = proc.process(batch[start : start + 40])
        decisions += [d.model_dump(mode="json") for d in result.decisions]
        letters += result.dead_letters
    return decisions, letters


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 121), bad_messages), min_size=1, max_size=6))
def test_rejected_messages_change_no_decision(inserted: list) -> None:
    good = good_stream()
    mixed: list[tuple[tuple[str, bytes | None, bytes], bool]] = [(m, False) for m in good]
    for position, message in sorted(inserted, key=lambda x: -x[0]):
        mixed.insert(position, (message, True))
    batch = number([m for m, _ in mixed])
    decisions, letters = decide(batch)
    by_id = check_letters(batch, letters)
    bad = [m for m, (_, is_bad) in zip(batch, mixed, strict=True) if is_bad]
    if not all(entirely_rejected(m, by_id.get(f"{m.topic}/0@{m.offset}")) for m in bad):
        return
    clean = [m for m, (_, is_bad) in zip(batch, mixed, strict=True) if not is_bad]
    expected, clean_letters = decide(clean)
    assert clean_letters == [] and len(expected) == 4
    assert decisions == expected
    assert set(by_id) <= {f"{m.topic}/0@{m.offset}" for m in bad}
