"""Requests decoded in one pass (``WireRequest``) decide exactly as the same JSON objects do.

Replay and the worker hand the engine checked structs for plain requests and dicts for every
other object; the engine must come to the same decisions, the same refusals and the same state
as when it is fed the objects one by one, whatever the stream holds: healthy or regressed
canaries, per-endpoint breakdowns, gauges, late and early events, fields the contract does not
name, invalid values and unknown versions.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from canarystream.contracts.codec import decode_objects
from canarystream.contracts.wire import WireRequest
from canarystream.engine import Engine
from canarystream.errors import ContractError
from canarystream.streaming.processor import ServiceSnapshot
from tests.support.streams import CANARY, SERVICE, T0, Cohort, Stream, fast_policy, merge

_POLICY = fast_policy(
    checks=[
        {"kind": "error_rate", "advance_abs_margin": 0.01, "breakdown": "endpoint"},
        {"kind": "latency", "quantile": 0.9, "tolerance": 0.1, "advance_tolerance": 0.3},
        {"kind": "gauge", "metric": "cpu", "tolerance": 0.05},
    ]
)


def _lines(seed: int, canary: Cohort) -> list[bytes]:
    stream = Stream(seed, canary=canary)
    events: list[dict[str, Any]] = merge(
        [stream.started(policy=_POLICY)],
        stream.requests(0.0, 200.0, rate=30.0, endpoints=("/a", "/b")),
        stream.gauges(0.0, 200.0, "cpu", baseline=0.4, canary=0.4),
    )
    lines = [orjson.dumps(event) for event in events]
    odd: dict[int, dict[str, Any]] = {
        50: {**events[50], "trace_id": "abc"},  # a field the contract does not name
        60: {**events[60], "status": 200.0},  # invalid
        70: {**events[70], "version": "v9"},  # unknown version
        80: {**events[80], "ts": T0 - 3600.0},  # long before the rollout: refused
        90: {**events[90], "ts": T0 + 40.0},  # ahead of the clock: waits
        100: {**events[100], "latency_ms": -1},  # invalid
        110: {**events[110], "zone": None, "instance": "i-1"},
    }
    for index, event in odd.items():
        lines[index] = orjson.dumps(event)
    return lines


def _objects_one_by_one(lines: list[bytes]) -> tuple[list[Any], list[str], Engine]:
    engine = Engine()
    decisions: list[Any] = []
    refused: list[str] = []
    for index, raw in enumerate(lines):
        try:
            decisions.extend(engine.process(orjson.loads(raw), f"line{index}"))
        except ContractError as exc:
            refused.append(f"{index}:{exc.reason}")
    return decisions, refused, engine


def _wire_batches(lines: list[bytes], size: int) -> tuple[list[Any], list[str], Engine, int]:
    engine = Engine()
    decisions: list[Any] = []
    refused: list[str] = []
    structs = 0
    for first in range(0, len(lines), size):
        values = decode_objects(lines[first : first + size])
        assert values is not None
        structs += sum(type(value) is WireRequest for value in values)
        names = [f"line{first + i}" for i in range(len(values))]

        def on_error(i: int, exc: ContractError, first: int = first) -> None:
            refused.append(f"{first + i}:{exc.reason}")

        decisions.extend(engine.process_batch(values, on_error, names))
    return decisions, refused, engine, structs


def _state(engine: Engine) -> Any:
    return orjson.loads(ServiceSnapshot(SERVICE, 0, rollouts=engine.rollouts_of(SERVICE)).dumps())


@pytest.mark.parametrize(
    "canary",
    [Cohort(), Cohort(error_rate=0.05), Cohort(median_ms=60.0)],
    ids=["healthy", "errors-x5", "latency-x1.5"],
)
@pytest.mark.parametrize("size", [1, 37, 4096])
def test_structs_and_objects_decide_alike(canary: Cohort, size: int) -> None:
    lines = _lines(7, canary)
    expected, expected_refused, reference = _objects_one_by_one(lines)
    decided, refused, engine, structs = _wire_batches(lines, size)
    assert structs > len(lines) * 0.9  # the one-pass path was taken
    assert expected, "the stream decides something"
    assert [d.model_dump() for d in decided] == [d.model_dump() for d in expected]
    assert refused == expected_refused
    assert {r.split(":")[1] for r in refused} >= {"invalid_field", "unknown_version"}
    assert _state(engine) == _state(reference)


def test_a_struct_outside_the_open_tick_takes_the_general_path() -> None:
    stream = Stream(1)
    engine = Engine()
    engine.process(stream.started(policy=_POLICY))
    ahead = orjson.dumps(
        {"type": "request", "ts": T0 + 12.0, "service": SERVICE, "version": CANARY,
         "latency_ms": 5, "status": 200}
    )  # fmt: skip
    values = decode_objects([ahead])
    assert values is not None and type(values[0]) is WireRequest
    engine.process_batch(values, lambda i, exc: pytest.fail(str(exc)), "m1")
    (rollout,) = engine.active_by_service.values()
    assert len(rollout.admission.pending) == 1
    assert rollout.admission.pending[0][4][2] == orjson.loads(ahead)
