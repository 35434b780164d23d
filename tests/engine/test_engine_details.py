"""Engine details: ignored inputs are counted once, refusals say why, ids restart cleanly."""

from __future__ import annotations

from typing import Any

import pytest

from canarystream.contracts.topics import service_partition
from canarystream.engine import Engine
from canarystream.errors import ContractError
from tests.support.streams import DEPLOYMENT, SERVICE, T0, Stream, fast_policy, restarted

OLD = "checkout-41"


def metric(service: str = SERVICE, version: str = "v2") -> dict[str, Any]:
    return {
        "type": "metric",
        "ts": T0 + 1.0,
        "service": service,
        "version": version,
        "name": "cpu",
        "value": 0.5,
    }


def probe(service: str = SERVICE, version: str = "v2") -> dict[str, Any]:
    return {
        "type": "probe",
        "ts": T0 + 1.0,
        "service": service,
        "version": version,
        "probe": "p",
        "ok": True,
    }


def started_engine(engine: Engine | None = None) -> Engine:
    engine = engine if engine is not None else Engine()
    engine.process(Stream().started(policy=fast_policy()))
    return engine


def test_telemetry_and_heartbeats_without_a_rollout_are_counted_once_each() -> None:
    engine = Engine()
    engine.process(metric())
    engine.process(probe())
    engine.process({"type": "heartbeat", "ts": T0, "service": SERVICE})
    engine.process({"type": "heartbeat", "ts": T0 + 1.0, "service": SERVICE})
    assert engine.counters == {"telemetry_without_rollout": 2, "heartbeat_without_rollout": 2}


def test_a_metric_of_an_unknown_version_names_it_and_the_rollouts_versions() -> None:
    engine = started_engine()
    with pytest.raises(ContractError) as caught:
        engine.process(metric(version="v9"))
    assert caught.value.reason == "unknown_version"
    assert str(caught.value) == (
        "version 'v9' is neither baseline 'v1' nor canary 'v2' of service 'checkout'"
    )


def test_an_internal_error_is_reported_with_its_type_and_a_bounded_detail() -> None:
    def fail_with(text: str) -> ContractError:
        engine = Engine()

        def broken(event: Any) -> list[Any]:
            raise ValueError(text)

        engine._process = broken  # type: ignore[method-assign]
        with pytest.raises(ContractError) as caught:
            engine.process(metric())
        assert caught.value.reason == "internal_error"
        assert engine.counters == {"internal_error": 1}
        return caught.value

    prefix = "internal error while applying the event: "
    fits = "x" * (300 - len("ValueError: "))  # a detail of exactly 300 characters is whole
    assert str(fail_with(fits)) == f"{prefix}ValueError: {fits}"
    long = fits + "yz"
    assert str(fail_with(long)) == f"{prefix}ValueError: {fits}..."


def test_every_internal_error_is_counted() -> None:
    engine = Engine()

    def broken(event: Any) -> list[Any]:
        raise KeyError("lost")

    engine._process = broken  # type: ignore[method-assign]
    for _ in range(3):
        with pytest.raises(ContractError):
            engine.process(metric())
    assert engine.counters == {"internal_error": 3}


def test_a_watched_rollout_adopted_by_an_unwatched_engine_reports_to_nobody() -> None:
    seen: list[str] = []
    watched = started_engine()
    watched.observer = lambda rollout, _now, _evidence: seen.append(rollout.deployment)
    rollout = watched.rollouts[DEPLOYMENT]
    assert rollout.observer is not None
    unwatched = Engine()
    unwatched.adopt([rollout])
    assert "observer" not in vars(rollout)
    assert rollout.observer is None
    stream = Stream()
    for event in stream.requests(0.0, 60.0, rate=5.0):
        unwatched.process(event)
    assert rollout.clock > T0 + 30.0  # it was evaluated, and told nobody
    assert seen == []


def test_a_command_for_a_finished_or_unknown_deployment_is_refused_with_its_reason() -> None:
    engine = Engine()
    engine.remember(SERVICE, {OLD: T0})
    with pytest.raises(ContractError) as caught:
        engine.process(Stream().control("aborted", 10.0, deployment=OLD))
    assert (caught.value.reason, str(caught.value)) == (
        "finished_deployment",
        "deployment 'checkout-41' has finished",
    )
    with pytest.raises(ContractError) as caught:
        engine.process(Stream().control("aborted", 10.0, deployment="nope"))
    assert (caught.value.reason, str(caught.value)) == (
        "unknown_deployment",
        "deployment 'nope' is unknown",
    )


def test_an_id_whose_tombstone_expired_starts_again_and_is_known_once() -> None:
    # Only its tombstone is known (a snapshot): the service has no rollout yet.
    engine = Engine(tombstone_ttl=10.0)
    engine.remember(SERVICE, {DEPLOYMENT: T0 - 10.0})
    started_engine(engine)
    assert engine.deployments_of == {SERVICE: [DEPLOYMENT]}
    assert engine.tombstones.get(SERVICE, {}) == {}
    assert engine.active_by_service[SERVICE].deployment == DEPLOYMENT


def test_a_finished_rollout_still_held_starts_again_once_its_ttl_passed() -> None:
    engine = started_engine(Engine(tombstone_ttl=10.0))
    engine.process(Stream().control("aborted", 1.0))
    assert engine.finished_at(SERVICE, DEPLOYMENT) == T0 + 1.0
    engine.process(Stream().started(11.0, policy=fast_policy()))
    assert engine.deployments_of == {SERVICE: [DEPLOYMENT]}
    assert engine.rollouts[DEPLOYMENT].is_active
    assert engine.finished_at(SERVICE, DEPLOYMENT) is None


def two_rollouts(ttl: float, newer_at: float) -> Engine:
    """OLD aborted at T0 + 1, then DEPLOYMENT announced at T0 + ``newer_at``."""
    engine = Engine(tombstone_ttl=ttl)
    engine.process(Stream().started(policy=fast_policy(), deployment=OLD))
    engine.process(Stream().control("aborted", 1.0, deployment=OLD))
    engine.process(Stream().started(newer_at, policy=fast_policy()))
    return engine


def test_forget_keeps_a_tombstone_for_exactly_its_ttl() -> None:
    engine = two_rollouts(ttl=10.0, newer_at=11.0)  # the newest clock is the end + ttl
    assert [r.deployment for r in engine.forget(SERVICE, keep=1)] == [OLD]
    assert engine.tombstones == {SERVICE: {OLD: T0 + 1.0}}
    assert engine.finished_at(SERVICE, OLD) == T0 + 1.0


def test_forget_prunes_tombstones_older_than_the_ttl_by_the_newest_rollouts_clock() -> None:
    engine = two_rollouts(ttl=10.0, newer_at=11.5)
    engine.forget(SERVICE, keep=1)
    assert engine.tombstones == {}
    assert engine.finished_at(SERVICE, OLD) is None


def test_forget_everything_of_a_service_leaves_nothing_of_it() -> None:
    engine = two_rollouts(ttl=10.0, newer_at=2.0)
    engine.forget(SERVICE, keep=1)
    assert engine.tombstones == {SERVICE: {OLD: T0 + 1.0}}
    assert len(engine.forget(SERVICE)) == 1
    assert (engine.rollouts, engine.deployments_of, engine.tombstones) == ({}, {}, {})
    assert engine.active_by_service == {}


def test_adopted_rollouts_set_the_input_time_of_their_partition() -> None:
    engine = started_engine()
    for at in range(5):
        engine.process(metric() | {"ts": T0 + 1.0 + at})
    engine.process(Stream().started(4.0, policy=fast_policy(), deployment="checkout-43"))
    latest = max(r.corroborated for r in engine.rollouts.values())
    assert restarted(engine).input_time == {service_partition(SERVICE): latest}


def test_an_id_that_ended_under_another_service_is_never_started_again() -> None:
    # Ids are unique across services: a finished id this engine knows from another service's
    # tombstones is refused like one of the announcing service's own.
    engine = Engine()
    engine.remember("payments", {OLD: T0})
    with pytest.raises(ContractError) as caught:
        engine.process(Stream(deployment=OLD).started(at=60.0, policy=fast_policy()))
    assert caught.value.reason == "duplicate_deployment"
    assert str(caught.value).startswith(f"deployment {OLD!r} has finished")
    assert engine.counters["finished_deployment_started"] == 1
    assert OLD not in engine.rollouts


def test_each_announcement_of_a_finished_id_is_refused_and_counted() -> None:
    engine = started_engine()
    engine.process(Stream().control("aborted", 1.0))
    for attempt in range(1, 4):
        with pytest.raises(ContractError) as caught:
            engine.process(Stream().started(2.0 * attempt, policy=fast_policy()))
        assert (caught.value.reason, str(caught.value)) == (
            "duplicate_deployment",
            "deployment 'checkout-42' has finished; a deployment id is never started again "
            "(announce a new id)",
        )
        assert engine.counters["finished_deployment_started"] == attempt


def test_an_announcement_with_a_bad_policy_names_what_is_wrong() -> None:
    engine = Engine()
    with pytest.raises(ContractError) as caught:
        engine.process(Stream().started(policy="no-such-policy"))
    assert caught.value.reason == "invalid_policy"
    assert "no-such-policy" in str(caught.value)


def test_an_announcement_returns_what_moving_the_old_rollouts_clock_decided() -> None:
    # The old rollout's requests stop before its first stage ends; the new announcement moves
    # its clock past it (the stage advances), then supersedes it, then starts the new one.
    stream = Stream(0)
    engine = Engine()
    engine.process(stream.started(policy=fast_policy(), deployment=OLD))
    for event in stream.requests(0, 60, rate=50):
        engine.process(event)
    decisions = engine.process(stream.started(60.5, policy=fast_policy()))
    assert [(d.deployment, d.action.value) for d in decisions] == [
        (OLD, "advance"),
        (OLD, "rollback"),  # superseded
        (DEPLOYMENT, "advance"),  # to its first stage
    ]


def baseline_request(ts: float) -> dict[str, Any]:
    return {
        "type": "request",
        "ts": ts,
        "service": SERVICE,
        "version": "v1",
        "latency_ms": 10.0,
        "status": 200,
    }


def test_the_open_tick_takes_requests_from_the_grace_start_up_to_but_not_at_its_end() -> None:
    engine = started_engine()
    rollout = engine.rollouts[DEPLOYMENT]
    latencies = rollout.buckets[rollout.cohort_of["v1"]].requests.latencies
    engine.process(baseline_request(rollout.admit_from))
    assert len(latencies) == 1
    engine.process(baseline_request(rollout.next_tick))  # held for the next tick
    assert len(latencies) == 1
    with pytest.raises(ContractError) as caught:
        engine.process(baseline_request(rollout.admit_from - 0.001))
    assert caught.value.reason == "ts_out_of_range"
    assert len(latencies) == 1


def test_an_adopted_rollout_sets_its_partitions_input_time() -> None:
    engine = started_engine()
    for event in Stream().requests(0.0, 30.0, rate=5.0):
        engine.process(event)
    rollout = engine.rollouts[DEPLOYMENT]
    assert rollout.corroborated > T0
    fresh = Engine()
    fresh.adopt([rollout])
    assert fresh.input_time == {service_partition(SERVICE): rollout.corroborated}


def test_a_service_with_tombstones_only_prunes_them_by_its_partitions_input_time() -> None:
    # No rollout of the service is left (a restart restored its tombstones alone): the
    # partition's input time is the clock that expires them.
    engine = Engine(tombstone_ttl=10.0)
    engine.remember(SERVICE, {OLD: T0, "checkout-40": T0 + 5.0})
    engine.input_time[service_partition(SERVICE)] = T0 + 10.5
    assert engine.forget(SERVICE, keep=1) == []
    assert engine.tombstones == {SERVICE: {"checkout-40": T0 + 5.0}}


def test_adopting_an_older_rollout_after_a_newer_one_keeps_the_newer_input_time() -> None:
    engine = started_engine()
    for at in range(5):
        engine.process(metric() | {"ts": T0 + 1.0 + at})
    engine.process(Stream().started(4.0, policy=fast_policy(), deployment="checkout-43"))
    newest_first = sorted(engine.rollouts.values(), key=lambda r: -r.corroborated)
    assert newest_first[0].corroborated > newest_first[-1].corroborated
    fresh = Engine()
    fresh.adopt(newest_first)
    assert fresh.input_time == {service_partition(SERVICE): newest_first[0].corroborated}
