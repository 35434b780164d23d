"""Closing a tick: what it adds to the rollout's counts, and slices one cohort alone serves.

The counts of consumed events (by type and cohort) are what the worker's metrics export;
the stage's request counts decide readiness. Both accumulate over ticks, so they are checked
against the exact numbers of events the streams hold.
"""

from __future__ import annotations

import re

from canarystream.engine import Engine
from tests.support.streams import (
    CANARY,
    DEPLOYMENT,
    T0,
    Cohort,
    Stream,
    fast_policy,
    merge,
    run,
)


def test_each_tick_adds_its_events_to_the_consumed_counts_by_type_and_cohort() -> None:
    stream = Stream(0)
    events = merge(
        [stream.started(policy=fast_policy())],
        stream.requests(0, 20, rate=10, canary_rate=7),  # 200 and 140 requests
        stream.gauges(0, 20, "cpu", baseline=0.5, canary=0.5),  # 20 samples each
        stream.probes(0, 20, "login", baseline_fail=0.0, canary_fail=0.5),  # 20 results each
    )
    engine = Engine()
    run(events, engine)
    engine.advance_to(T0 + 20)  # the four ticks of [0, 20) are closed
    rollout = engine.rollouts[DEPLOYMENT]

    assert rollout.consumed == {"request": [200, 140], "metric": [20, 20], "probe": [20, 20]}
    # The stage's requests (readiness) are the same sums; every event is counted as arrived.
    assert rollout.stage_requests == [200, 140]
    assert rollout.arrived == 420


def test_an_endpoint_only_the_canary_serves_gets_its_own_slice() -> None:
    # /new is served by the canary alone; its latency is judged against an empty baseline.
    policy = fast_policy(
        checks=[{"kind": "latency", "quantile": 0.9, "tolerance": 0.1, "breakdown": "endpoint"}]
    )
    stream = Stream(0)
    requests = stream.requests(0, 10, rate=10, endpoints=("/cart", "/new"))
    for event in requests:
        if event["version"] != CANARY:
            event["endpoint"] = "/cart"
    engine = Engine()
    run([stream.started(policy=policy), *requests], engine)
    engine.advance_to(T0 + 10)
    rollout = engine.rollouts[DEPLOYMENT]

    assert set(rollout.trackers) == {None, ("endpoint", "/cart"), ("endpoint", "/new")}
    units = sorted(unit.name for group in rollout.groups for unit in group.units.values())
    assert units == ["latency-p90[endpoint=/cart]", "latency-p90[endpoint=/new]"]
    assert rollout.stage_requests == [100, 100]


def test_a_breakdown_s_reason_reports_each_cohort_s_quantile_of_its_own_slice() -> None:
    """/pay regresses on the canary alone: its slice's reason names the canary's p90 of /pay
    (about twice the baseline's), folded from that slice of each tick, not from another."""
    policy = fast_policy(
        checks=[
            {
                "kind": "latency",
                "quantile": 0.9,
                "tolerance": 0.1,
                "advance_tolerance": 0.3,
                "breakdown": "endpoint",
            }
        ]
    )
    stream = Stream(2)
    slow = Cohort(median_ms=80.0)
    events = merge(
        [stream.started(policy=policy)],
        stream.requests(0, 120, rate=20, endpoints=("/cart",)),
        stream.requests(0, 120, rate=20, canary=slow, endpoints=("/pay",)),
    )
    rollback = run(events)[-1]
    assert rollback.summary == "critical regression: latency-p90[endpoint=/pay]"
    reasons = {r.check: r.message for r in rollback.reasons}
    for endpoint, low, high in (("/pay", 1.8, 2.4), ("/cart", 0.7, 1.3)):
        found = re.match(
            r"p90 canary ([\d.]+) ms vs baseline ([\d.]+) ms",
            reasons[f"latency-p90[endpoint={endpoint}]"],
        )
        assert found, reasons
        canary_ms, baseline_ms = float(found.group(1)), float(found.group(2))
        assert low < canary_ms / baseline_ms < high
