"""The engine's paths for inputs at their edges: the looks for idle rollouts (every 5 s of a
partition's input time, which never goes back), gauges at a tick's end, one message of
far-future samples, an expired id announced again with a bad policy."""

from __future__ import annotations

from typing import Any

import pytest

from canarystream.contracts.decision import Action
from canarystream.contracts.topics import service_partition
from canarystream.engine import Engine
from canarystream.errors import ContractError
from tests.support.streams import DEPLOYMENT, SERVICE, T0, Stream, fast_policy, merge

DAY = 86_400.0


def metric(ts: float, version: str = "v2") -> dict[str, Any]:
    return {
        "type": "metric",
        "ts": ts,
        "service": SERVICE,
        "version": version,
        "name": "cpu",
        "value": 0.5,
    }


def started_engine(engine: Engine | None = None) -> Engine:
    engine = engine if engine is not None else Engine()
    engine.process(Stream().started(policy=fast_policy()))
    return engine


NEIGHBOUR = "search12"  # a service of checkout's partition


def neighbour_events(
    start: float, end: float, *, tick: float = 5.0, rate: float = 20.0
) -> list[dict[str, Any]]:
    """The announcement and requests of a busy rollout of :data:`NEIGHBOUR` (slow stages)."""
    assert service_partition(NEIGHBOUR) == service_partition(SERVICE)
    stream = Stream(1, deployment="search-7")
    slow = fast_policy(tick=tick, stages=[{"traffic_percent": 10, "min_duration": 3600}])
    started = stream.started(start, policy=slow) | {"service": NEIGHBOUR}
    return [started, *(e | {"service": NEIGHBOUR} for e in stream.requests(start, end, rate=rate))]


def test_an_idle_rollouts_clock_stays_idle_after_behind_its_partitions_input_time() -> None:
    # checkout's telemetry stops at 20 s; its neighbour's flows on: checkout's clock follows
    # the partition's input time less idle_after, never ahead of it.
    quiet = Stream(0)
    events = merge(
        [quiet.started(policy=fast_policy())],
        quiet.requests(0, 20, rate=40),
        neighbour_events(0.0, 900.0, rate=5.0),
    )
    engine = Engine()
    scope = service_partition(SERVICE)
    rollback = None
    for event in events:
        for decision in engine.process(event):
            if decision.deployment == DEPLOYMENT and decision.action is Action.ROLLBACK:
                rollback = decision
                idle_after = engine.rollouts[DEPLOYMENT].policy.admission.idle_after
                assert decision.ts <= engine.input_time[scope] - idle_after
        rollout = engine.rollouts[DEPLOYMENT]
        if rollout.is_active and event["ts"] > T0 + 200:
            assert rollout.clock <= engine.input_time[scope] - rollout.policy.admission.idle_after
    assert rollback is not None and "no canary telemetry" in rollback.summary


def test_a_gauge_sample_at_the_open_ticks_end_waits_for_the_next_tick() -> None:
    engine = started_engine()
    rollout = engine.rollouts[DEPLOYMENT]
    bucket = rollout.buckets[rollout.cohort_of["v2"]]
    engine.process(metric(rollout.next_tick - 0.001))
    assert bucket.events == 1
    engine.process(metric(rollout.next_tick))  # held for the next tick
    assert bucket.events == 1
    assert len(rollout.admission.pending) == 1


def test_one_message_of_far_future_gauge_samples_is_one_witness_of_a_gap() -> None:
    engine = started_engine()
    rollout = engine.rollouts[DEPLOYMENT]
    burst = [metric(T0 + DAY + i) for i in range(40)]
    errors: list[str] = []
    engine.process_batch(burst, lambda i, e: errors.append(e.reason), "canary.telemetry.v1/0@7")
    assert errors == ["ts_out_of_range"] * 40
    assert rollout.clock < T0 + 60.0
    # The same samples as messages of their own show a gap of every producer.
    engine.process_batch(burst, lambda i, e: None)
    assert rollout.clock > T0 + DAY - 600


def test_an_expired_id_announced_again_with_a_bad_policy_leaves_nothing_of_it() -> None:
    engine = started_engine(Engine(tombstone_ttl=10.0))
    engine.process(Stream().control("aborted", 1.0))
    with pytest.raises(ContractError) as caught:
        engine.process(Stream().started(11.0, policy="no-such-policy"))
    assert caught.value.reason == "invalid_policy"
    assert (engine.rollouts, engine.rollouts_of(SERVICE), engine.tombstones) == ({}, [], {})
    assert engine.finished_at(SERVICE, DEPLOYMENT) is None


def test_a_lagging_service_never_takes_its_partitions_input_time_back() -> None:
    # The neighbour's telemetry has reached 120 s when checkout's (from 0 s) arrives.
    engine = Engine()
    for event in neighbour_events(0.0, 120.0):
        engine.process(event)
    scope = service_partition(SERVICE)
    reached = engine.input_time[scope]
    assert reached > T0 + 100.0
    quiet = Stream(0)
    for event in [quiet.started(policy=fast_policy()), *quiet.requests(0, 20, rate=40)]:
        engine.process(event)
        assert engine.input_time[scope] == reached


def sparse_checkout(every: float = 3.0, **policy: Any) -> list[dict[str, Any]]:
    """checkout's rollout, one request every ``every`` seconds (cohorts in turn)."""
    return [
        Stream(0).started(policy=fast_policy(**policy)),
        *(
            {
                "type": "request",
                "ts": T0 + every * i + 0.5,
                "service": SERVICE,
                "version": ("v1", "v2")[i % 2],
                "latency_ms": 40.0,
                "status": 200,
            }
            for i in range(int(180 / every))
        ),
    ]


def clocks_of_checkout(events: list[dict[str, Any]]) -> list[float]:
    """checkout's clock after each of its own events."""
    engine = Engine()
    out = []
    for event in events:
        engine.process(event)
        if event["service"] == SERVICE:
            out.append(engine.rollouts[DEPLOYMENT].clock)
    return out


def test_a_rollout_receiving_telemetry_between_looks_is_never_moved_on_as_idle() -> None:
    # The engine looks for idle rollouts every 5 s of its partition's input time; checkout
    # gets a request every 3 s, so it is never idle, however often its busy neighbour (1 s
    # ticks) moves the input time: its clock is the one it has on a partition of its own.
    sparse = sparse_checkout(tick=1.0, admission={"idle_after": 1.0, "witnesses": 2})
    alone = clocks_of_checkout(sparse)
    beside = clocks_of_checkout(merge(sparse, neighbour_events(0.0, 180.0, tick=1.0)))
    assert beside == alone
    assert alone[-1] > T0 + 100.0


def test_a_rollout_idle_between_two_looks_is_carried_by_its_partitions_time() -> None:
    # checkout gets a request every 7 s and needs 20 of them to move its own clock, so on its
    # own it trails its telemetry by over 100 s. The engine looks every 5 s of the partition's
    # input time (here moved in 5 s ticks by the neighbour): each look that finds nothing new
    # since the previous one moves checkout's clock on to the input time less idle_after.
    sparse = sparse_checkout(7.0, admission={"witnesses": 20})
    alone = Engine()
    for event in sparse:
        alone.process(event)
    assert sparse[-1]["ts"] - alone.rollouts[DEPLOYMENT].clock > 100.0
    events = merge(sparse, neighbour_events(0, 180))
    engine = Engine()
    scope = service_partition(SERVICE)
    behind = []
    for event in events:
        engine.process(event)
        if event["ts"] > T0 + 120.0:
            behind.append(engine.input_time[scope] - engine.rollouts[DEPLOYMENT].clock)
    idle_after = engine.rollouts[DEPLOYMENT].policy.admission.idle_after
    # Behind by idle_after, plus the 7 s between requests rounded up to looks, plus a tick.
    assert max(behind) <= idle_after + 10.0 + 5.0
