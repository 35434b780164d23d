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
