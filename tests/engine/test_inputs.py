"""What the engine accepts: contract errors, foreign telemetry, repeated and newer deployments."""

from __future__ import annotations

from typing import Any

import pytest

from canarystream.contracts.decision import Action, Phase
from canarystream.engine import Engine
from canarystream.errors import ContractError
from tests.support.streams import (
    DEPLOYMENT,
    SERVICE,
    T0,
    Cohort,
    Stream,
    fast_policy,
    merge,
    run,
    seconds,
)

REQUEST: dict[str, Any] = {
    "type": "request",
    "ts": T0 + 1.0,
    "service": SERVICE,
    "version": "v2",
    "latency_ms": 12.5,
    "status": 200,
}


def started_engine() -> Engine:
    engine = Engine()
    engine.process(Stream().started(policy=fast_policy()))
    return engine


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        pytest.param(REQUEST | {"latency_ms": -1.0}, "invalid_field", id="negative-latency"),
        pytest.param(REQUEST | {"latency_ms": float("nan")}, "invalid_field", id="nan-latency"),
        pytest.param(REQUEST | {"latency_ms": "12.5"}, "invalid_field", id="latency-string"),
        pytest.param(REQUEST | {"status": 200.0}, "invalid_field", id="status-float"),
        pytest.param(REQUEST | {"status": True}, "invalid_field", id="status-bool"),
        pytest.param(REQUEST | {"status": 600}, "invalid_field", id="status-range"),
        pytest.param(REQUEST | {"ts": 1.0}, "invalid_field", id="ts-before-2000"),
        pytest.param(REQUEST | {"version": ""}, "invalid_field", id="empty-version"),
        pytest.param(
            {k: v for k, v in REQUEST.items() if k != "service"}, "invalid_field", id="no-service"
        ),
        pytest.param(
            {"type": "metric", "ts": T0, "service": SERVICE, "version": "v1", "name": "cpu"},
            "invalid_field",
            id="metric-no-value",
        ),
        pytest.param(
            {"type": "probe", "ts": T0, "service": SERVICE, "version": "v1", "probe": "p"},
            "invalid_field",
            id="probe-no-ok",
        ),
        pytest.param(REQUEST | {"type": "trace"}, "unknown_type", id="unknown-type"),
        pytest.param({k: v for k, v in REQUEST.items() if k != "type"}, "no_type", id="no-type"),
        pytest.param([REQUEST], "not_an_object", id="not-an-object"),
        pytest.param(REQUEST | {"version": "v3"}, "unknown_version", id="unknown-version"),
        pytest.param(
            {"type": "deployment_paused", "ts": T0, "deployment": DEPLOYMENT},
            "invalid_field",
            id="control-no-actor",
        ),
        pytest.param(
            Stream().control("paused", 1.0, deployment="checkout-99"),
            "unknown_deployment",
            id="unknown-deployment",
        ),
        pytest.param(
            Stream(deployment="checkout-43").started(policy="no-such-policy"),
            "invalid_policy",
            id="unknown-policy",
        ),
        pytest.param(
            Stream(deployment="checkout-43").started(policy={"tick": 0}),
            "invalid_policy",
            id="invalid-inline-policy",
        ),
    ],
)
def test_contract_errors_name_their_reason_and_leave_state_untouched(
    event: Any, reason: str
) -> None:
    engine = started_engine()
    rollout = engine.rollouts[DEPLOYMENT]
    before = (rollout.seq, rollout.phase, rollout.next_tick, rollout.buckets[1].events)

    with pytest.raises(ContractError) as caught:
        engine.process(event)

    assert caught.value.reason == reason
    assert (rollout.seq, rollout.phase, rollout.next_tick, rollout.buckets[1].events) == before
    assert list(engine.rollouts) == [DEPLOYMENT]


def test_unknown_version_is_an_error_only_for_a_service_under_rollout() -> None:
    engine = Engine()
    foreign = REQUEST | {"version": "v3"}
    assert engine.process(foreign) == []  # no rollout yet: counted and ignored
    engine.process(Stream().started(policy=fast_policy()))

    with pytest.raises(ContractError) as caught:
        engine.process(foreign)

    assert caught.value.reason == "unknown_version"
    assert "v3" in str(caught.value)


def test_telemetry_without_a_rollout_is_counted_and_ignored() -> None:
    stream = Stream(0)
    own = [stream.started(policy=fast_policy()), *stream.requests(0, 110, rate=50)]
    # Another service, including a version name no rollout knows and an awful error rate.
    other = [
        e | {"service": "search", "version": "s" + e["version"]}
        for e in Stream(9, canary=Cohort(error_rate=0.9)).requests(0, 120, rate=10)
    ]
    engine = Engine()

    decisions = run(merge(own, other), engine)

    assert decisions == run(own)
    assert [d.action for d in decisions] == [Action.ADVANCE, Action.ADVANCE]
    assert engine.counters["telemetry_without_rollout"] == len(other)
    assert set(engine.active_by_service) <= {SERVICE}


def test_duplicate_deployment_started_is_idempotent() -> None:
    stream = Stream(0)
    started = stream.started(policy=fast_policy())
    traffic = stream.requests(0, 300, rate=50)
    # Retried announcements: identical, later, and even with another policy.
    retries = [
        started,
        started | {"ts": T0 + 30.5},
        started | {"ts": T0 + 70.5, "policy": fast_policy(name="other", tick=1)},
    ]
    engine = Engine()

    decisions = run(merge([started], traffic, retries), engine)

    assert decisions == run([started, *traffic])
    assert engine.counters["duplicate_deployment_started"] == len(retries)
    assert [d.action for d in decisions] == [Action.ADVANCE, Action.ADVANCE, Action.PROMOTE]
    # Once it has finished, the id is never started again: the re-sent announcement is
    # rejected (dead-lettered by the drivers), and nothing changes.
    with pytest.raises(ContractError) as rejected:
        engine.process(started | {"ts": T0 + 200.5})
    assert rejected.value.reason == "duplicate_deployment"
    assert engine.rollouts[started["deployment"]].phase is Phase.PROMOTED


def test_new_deployment_of_the_same_service_supersedes_the_old_one() -> None:
    old = Stream(0)
    new = Stream(1, deployment="checkout-43")
    engine = Engine()
    first = run([old.started(policy=fast_policy()), *old.requests(0, 42)], engine)
    assert [d.action for d in first] == [Action.ADVANCE]

    switch = engine.process(new.started(at=42.0, policy=fast_policy()))

    superseded, started = switch
    assert (superseded.deployment, superseded.seq) == (DEPLOYMENT, 1)
    assert superseded.action is Action.ROLLBACK
    assert (superseded.phase, superseded.traffic_percent) == (Phase.ABORTED, 0.0)
    assert superseded.summary == "superseded by deployment checkout-43"
    assert seconds(superseded) == 42
    assert (started.deployment, started.seq, started.action) == ("checkout-43", 0, Action.ADVANCE)
    assert seconds(started) == 42
    assert engine.active_by_service[SERVICE].deployment == "checkout-43"

    # Telemetry now feeds the new rollout only; its ticks count from its own start.
    later = run(new.requests(42, 300, rate=50), engine)
    assert {d.deployment for d in later} == {"checkout-43"}
    assert [(d.action, seconds(d)) for d in later] == [
        (Action.ADVANCE, 102),
        (Action.PROMOTE, 162),
    ]
    # The old deployment is finished: controlling it changes nothing.
    assert engine.process(old.control("resumed", 310.0)) == []
    assert engine.process(old.control("aborted", 311.0)) == []


def test_supersede_closes_the_old_rollouts_pending_ticks_first() -> None:
    # The old canary's regression is in ticks not yet closed when the new deployment comes.
    old = Stream(0, canary=Cohort(error_rate=0.5))
    engine = Engine()
    first = run([old.started(policy=fast_policy()), *old.requests(0, 4.9, rate=100)], engine)
    assert [d.action for d in first] == [Action.ADVANCE]

    decisions = engine.process(Stream(deployment="checkout-43").started(at=30.0))

    assert [(d.deployment, d.action, d.phase) for d in decisions] == [
        (DEPLOYMENT, Action.ROLLBACK, Phase.ROLLED_BACK),
        ("checkout-43", Action.ADVANCE, Phase.RUNNING),
    ]
    assert decisions[0].summary == "critical regression: error_rate"
    assert seconds(decisions[0]) == 5


def test_rollouts_of_different_services_are_independent() -> None:
    checkout = Stream(0, canary=Cohort(error_rate=0.1))
    search = Stream(1, deployment="search-7")
    renamed = [e | {"service": "search"} for e in search.requests(0, 300, rate=50)]
    search_started = search.started(policy=fast_policy()) | {"service": "search"}
    checkout_events = [checkout.started(policy=fast_policy()), *checkout.requests(0, 300)]

    together = run(merge(checkout_events, [search_started], renamed))

    assert [d for d in together if d.deployment == DEPLOYMENT] == run(checkout_events)
    assert [d for d in together if d.deployment == "search-7"] == run([search_started, *renamed])
    assert together[-1].deployment == "search-7"
    assert together[-1].action is Action.PROMOTE
