"""Inserting any invalid or out-of-range event anywhere into a valid stream changes no decision.

The stream is the fuzzer's base stream, one event per line. Hypothesis picks a position and an
event that breaks the contract (a field of the wrong type or out of its range, a missing field,
an unknown type or version), one whose time is out of range for its rollout (far ahead of its
clock, before its start less the grace, outside the contract's years), a control event for an
unknown deployment, or an announcement of an id already used. Both drivers of the engine must
decide exactly as without it: the engine as the worker calls it (``Engine.process``, each
``ContractError`` caught and the event skipped) and ``replay_lines``; and the event must be
rejected for what it is, not for an exception the engine contained (``internal_error``).
"""

from __future__ import annotations

import json
import math
from functools import cache
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canarystream.contracts.events import MAX_LATENCY_MS, MAX_TS, MIN_TS
from canarystream.engine import Engine
from canarystream.errors import ContractError
from canarystream.replay import replay_lines
from tests.fuzz.base import GRACE, MAX_SKEW, SERVICES, TICK, build_stream, decision_key

Event = dict[str, Any]


@cache
def _events() -> tuple[Event, ...]:
    return build_stream().events


def _engine_decisions(events: list[Event]) -> list[tuple]:
    engine = Engine()
    out: list[tuple] = []
    for event in events:
        try:
            out += [decision_key(d) for d in engine.process(event)]
        except ContractError as exc:  # counted and dead-lettered by the drivers
            # An exception the engine contained is a bug all the same, not a rejection.
            assert exc.reason != "internal_error", str(exc)
    return out


def _line(event: Event) -> bytes:
    try:
        return orjson.dumps(event) + b"\n"
    except TypeError:  # an integer beyond 64 bits: the standard library writes it as it is
        return json.dumps(event).encode() + b"\n"


def _replay_decisions(events: list[Event]) -> list[tuple]:
    lines = [_line(event) for event in events]
    out: list[tuple] = []
    rejected = replay_lines(
        [("stream", lines)], on_decision=lambda d: out.append(decision_key(d))
    ).rejected
    assert not rejected.get("internal_error"), rejected
    return out


@cache
def _expected() -> list[tuple]:
    decisions = _engine_decisions(list(_events()))
    assert decisions == _replay_decisions(list(_events()))
    return decisions


def _context(position: int) -> tuple[dict[str, Event], dict[str, float], list[str]]:
    """Before ``position``: each service's current announcement and time, and every id."""
    current: dict[str, Event] = {}
    now: dict[str, float] = {}
    ids: list[str] = []
    for event in _events()[:position]:
        if event["type"] == "deployment_started":
            current[event["service"]] = event
            ids.append(event["deployment"])
        if "service" in event:
            now[event["service"]] = event["ts"]
    return current, now, ids


# Values of the wrong kind for each kind of field (none of them is ever valid there).
NOT_A_NUMBER = st.one_of(
    st.text(max_size=5), st.booleans(), st.none(), st.lists(st.integers(), max_size=2), st.just({})
)
NOT_AN_INT = st.one_of(NOT_A_NUMBER, st.floats(allow_nan=False, allow_infinity=False))
NOT_A_NAME = st.one_of(
    st.integers(), st.floats(), st.booleans(), st.none(), st.just(""), st.just(["request"]),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.text(min_size=257),
)  # fmt: skip
NOT_A_STRING = st.one_of(
    st.lists(st.sampled_from(("request", "metric", "deployment_paused")), max_size=2),
    st.dictionaries(st.sampled_from(("type", "request")), st.booleans(), max_size=2),
    st.integers(-5, 5), st.floats(), st.booleans(), st.none(),
)  # fmt: skip
CONTROLS = ("aborted", "paused", "resumed", "approved")
NOT_A_BOOL = st.one_of(st.integers(), st.text(max_size=5), st.none(), st.just([True]))
WRONG = {
    "ts": NOT_A_NUMBER,
    "latency_ms": st.one_of(
        NOT_A_NUMBER,
        st.floats(max_value=-1e-9),
        st.floats(min_value=MAX_LATENCY_MS, exclude_min=True),
    ),
    "status": st.one_of(
        NOT_AN_INT, st.integers(max_value=99), st.integers(min_value=600, max_value=2**63 - 1)
    ),
    "value": st.one_of(NOT_A_NUMBER, st.sampled_from([1e16, -1e16, math.nan, math.inf])),
    "service": NOT_A_NAME,
    "version": NOT_A_NAME,
    "type": NOT_A_NAME,
    "ok": NOT_A_BOOL,
    "name": NOT_A_NAME,
    "probe": NOT_A_NAME,
    "deployment": NOT_A_NAME,
    "actor": NOT_A_NAME,
    "baseline_version": NOT_A_NAME,
    "canary_version": NOT_A_NAME,
}
REQUIRED = {
    "request": ("type", "ts", "service", "version", "latency_ms", "status"),
    "metric": ("type", "ts", "service", "version", "name", "value"),
    "probe": ("type", "ts", "service", "version", "probe", "ok"),
}


def _telemetry(current: dict[str, Event], now: dict[str, float], service: str, kind: str) -> Event:
    started = current.get(service)
    version = started["canary_version"] if started is not None else "v2"
    event: Event = {
        "type": kind,
        "ts": now.get(service, started["ts"] if started else 1_790_000_000.0),
        "service": service,
        "version": version,
    }
    if kind == "request":
        event.update(latency_ms=30.0, status=503)
    elif kind == "metric":
        event.update(name="cpu_utilization", value=0.99)
    else:
        event.update(probe="health", ok=False)
    return event


@st.composite
def insertions(draw: st.DrawFn) -> tuple[int, Event, str]:
    """A position in the stream and an event that must change nothing there."""
    events = _events()
    position = draw(st.integers(0, len(events)))
    current, now, ids = _context(position)
    service = draw(st.sampled_from(SERVICES))
    event = _telemetry(current, now, service, draw(st.sampled_from(sorted(REQUIRED))))
    started = current.get(service)
    clock = event["ts"]
    how = draw(
        st.sampled_from(
            (
                "wrong",
                "type not a string",
                "wrong control",
                "missing",
                "unknown type",
                "unknown version",
                "ahead",
                "before start",
                "outside the contract",
                "unknown deployment",
                "id already used",
            )
        )
    )
    if how in ("wrong control", "id already used") and not ids:
        how = "unknown deployment"  # nothing announced yet
    if how == "wrong":
        field = draw(st.sampled_from([f for f in event if f in WRONG]))
        event[field] = draw(WRONG[field])
    elif how == "type not a string":
        event["type"] = draw(NOT_A_STRING)
    elif how == "wrong control":
        event = {
            "type": f"deployment_{draw(st.sampled_from(CONTROLS))}",
            "ts": clock,
            "deployment": draw(st.sampled_from(ids)),
            "actor": "alice",
        }
        field = draw(st.sampled_from(sorted(event)))
        event[field] = draw(NOT_A_STRING if field != "ts" else NOT_A_NUMBER)
    elif how == "missing":
        del event[draw(st.sampled_from(REQUIRED[event["type"]]))]
    elif how == "unknown type":
        event["type"] = draw(
            st.text(min_size=1, max_size=20).filter(
                lambda t: t not in REQUIRED and not t.startswith(("deployment_", "heartbeat"))
            )
        )
    elif how == "unknown version":
        event["version"] = draw(st.text(min_size=1, max_size=8).filter(lambda v: v[:1] != "v"))
    elif how == "ahead":
        event["ts"] = draw(st.floats(clock + MAX_SKEW + 2 * TICK, MAX_TS))
    elif how == "before start":
        floor = (started["ts"] if started else clock) - GRACE
        event["ts"] = draw(st.floats(MIN_TS, floor, exclude_max=True))
    elif how == "outside the contract":
        event["ts"] = draw(st.one_of(st.floats(max_value=MIN_TS, exclude_max=True),
                                     st.floats(min_value=MAX_TS, exclude_min=True)))  # fmt: skip
    elif how == "unknown deployment":
        kind = draw(st.sampled_from(CONTROLS))
        event = {
            "type": f"deployment_{kind}",
            "ts": clock,
            "deployment": draw(st.text(min_size=1, max_size=12).filter(lambda d: d not in ids)),
            "actor": "mallory",
        }
    else:  # an id already used
        used = draw(st.sampled_from(ids))
        original = next(e for e in events if e.get("deployment") == used)
        event = {**original, "ts": draw(st.sampled_from((original["ts"], clock)))}
        if draw(st.booleans()):
            event["canary_version"] = "v9"
    return position, event, how


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(insertion=insertions())
def test_an_invalid_or_out_of_range_event_changes_no_decision(
    insertion: tuple[int, Event, str],
) -> None:
    position, event, how = insertion
    events = list(_events())
    events.insert(position, event)
    assert _engine_decisions(events) == _expected(), how
    assert _replay_decisions(events) == _expected(), how
