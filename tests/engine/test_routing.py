"""One routing of requests: ``process`` and ``process_batch`` take the same path for each.

Requests inside their rollout's open tick (``admit_from <= ts < next_tick``) are recorded by
one function; every other event goes the general way. Fed the same events, the two entry
points give the same decisions, the same rejections and the same rollout state.
"""

from __future__ import annotations

from typing import Any

import pytest

from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.errors import ContractError
from tests.support.streams import BASELINE, CANARY, SERVICE, T0, Stream, fast_policy


def _request(ts: float, version: str = CANARY, **extra: Any) -> dict[str, Any]:
    event = {"type": "request", "ts": ts, "service": SERVICE, "version": version}
    return {**event, "latency_ms": 40.0, "status": 200, **extra}


def _boundary_stream() -> list[dict[str, Any]]:
    """A healthy rollout with requests on every admission boundary spliced in."""
    stream = Stream(seed=4)
    started = stream.started(policy=fast_policy())
    events = [started, *stream.requests(0, 130, rate=20)]
    engine = Engine()
    engine.process(started)
    rollout = engine.rollouts_of(SERVICE)[0]
    admit_from, tick = rollout.admit_from, rollout.tick
    odd = [
        _request(admit_from),  # the first admitted instant
        _request(admit_from - 0.001),  # just before the grace: rejected
        _request(T0 + tick),  # exactly at the end of the first tick
        _request(T0 + tick - 0.001, version=BASELINE),
        _request(T0 + 1.0, version="v9"),  # unknown version
        _request(T0 + 1.0) | {"service": "elsewhere"},  # no rollout
        _request(T0 + 1.0, status=99),  # invalid
        _request(T0 + 1.0, endpoint="/pay"),
        {
            "type": "metric",
            "ts": T0 + 2.0,
            "service": SERVICE,
            "version": CANARY,
            "name": "cpu",
            "value": 0.5,
        },
    ]
    out = events[:40]
    for index, event in enumerate(odd):
        out.append(event)
        out.extend(events[40 + 7 * index : 47 + 7 * index])
    return out + events[40 + 7 * len(odd) :]


def _one_by_one(events: list[dict[str, Any]]) -> tuple[list[Decision], list, Engine]:
    engine = Engine()
    decisions: list[Decision] = []
    errors: list[tuple[int, str]] = []
    for index, event in enumerate(events):
        try:
            decisions += engine.process(event)
        except ContractError as exc:
            errors.append((index, exc.reason))
    return decisions, errors, engine


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_process_and_process_batch_route_every_event_alike(size: int) -> None:
    events = _boundary_stream()
    expected, expected_errors, reference = _one_by_one(events)
    assert {reason for _, reason in expected_errors} >= {"ts_out_of_range", "unknown_version"}
    engine = Engine()
    decisions: list[Decision] = []
    errors: list[tuple[int, str]] = []
    for start in range(0, len(events), size):
        decisions += engine.process_batch(
            events[start : start + size], lambda i, exc, s=start: errors.append((s + i, exc.reason))
        )
    assert decisions == expected
    assert errors == expected_errors
    assert engine.counters == reference.counters
    assert [r.to_state() for r in engine.rollouts.values()] == [
        r.to_state() for r in reference.rollouts.values()
    ]
