"""Only authorised principals steer rollouts: each attack of the issue, against the engine.

The driver (worker or replay) authenticates a message's bytes into an Origin; the engine, given
an access file, authorizes each announcement, command and heartbeat against rollout state. A
refused input raises ContractError (``unauthorized``, ``duplicate_control``) and changes
nothing: no decision, no state.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.errors import ContractError
from canarystream.governance.access import Access
from canarystream.policy.loading import PolicyRegistry, policy_from_mapping
from canarystream.streaming.processor import ServiceSnapshot
from tests.support.access import Principal, access_of, grant, origin_of, principal
from tests.support.streams import DEPLOYMENT, SERVICE, T0, Stream, fast_policy

DEPLOY, ALICE, BOB, WORKER, MALLORY = (
    principal(n) for n in ("deploy-bot", "alice", "bob", "worker", "mallory")
)
GATED = fast_policy(
    name="gated",
    stages=[
        {"traffic_percent": 10, "min_duration": 60, "min_samples": 50, "approval": True},
        {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
    ],
)
POLICIES = PolicyRegistry([policy_from_mapping(GATED), policy_from_mapping(fast_policy())])


def access(*extra: dict[str, Any]) -> Access:
    """deploy-bot starts with 'gated' anywhere; alice and bob steer checkout; the worker beats."""
    return access_of(
        [DEPLOY, ALICE, BOB, WORKER],
        [
            grant([DEPLOY], ["start"], policies=["gated"]),
            grant([ALICE, BOB], ["abort", "pause", "resume", "approve"], ["check*"]),
            grant([WORKER], ["heartbeat"]),
            *extra,
        ],
    )


def send(engine: Engine, event: dict[str, Any], who: Principal | None) -> list[Decision]:
    """Apply ``event`` as the bytes ``who`` signed (None: unsigned)."""
    assert engine.access is not None
    return engine.process(event, origin=origin_of(engine.access, who, orjson.dumps(event)))


def refused(engine: Engine, event: dict[str, Any], who: Principal | None) -> ContractError:
    before = _state(engine)
    with pytest.raises(ContractError) as caught:
        send(engine, event, who)
    assert _state(engine) == before, "a refused input must change nothing"
    return caught.value


def _state(engine: Engine) -> list[Any]:
    return [rollout.to_state() for rollout in engine.rollouts.values()]


def started_engine(grants: Access | None = None) -> tuple[Engine, Stream]:
    engine = Engine(POLICIES, access=grants or access())
    stream = Stream(1)
    send(engine, stream.started(policy="gated"), DEPLOY)
    return engine, stream


def test_unsigned_and_forged_commands_are_refused_whatever_their_actor() -> None:
    engine, stream = started_engine()
    abort = stream.control("aborted", 5, actor="alice")

    unsigned = refused(engine, abort, None)
    forged = engine.access.verifier("alice")  # type: ignore[union-attr]
    assert forged is not None
    value = orjson.dumps(abort)
    with pytest.raises(ContractError) as caught:  # mallory's key, alice's name
        engine.process(abort, origin=_claimed(engine.access, "alice", MALLORY, value))
    unknown = refused(engine, abort, MALLORY)

    assert (unsigned.reason, caught.value.reason, unknown.reason) == ("unauthorized",) * 3
    assert "unsigned" in str(unsigned)
    assert "bad signature for principal 'alice'" in str(caught.value)
    assert "unknown principal 'mallory'" in str(unknown)
    assert engine.rollouts[DEPLOYMENT].is_live


def _claimed(access: Access | None, name: str, signer: Principal, value: bytes) -> Any:
    from canarystream.governance.identity import authenticate  # noqa: PLC0415

    assert access is not None
    return authenticate(access, name, signer.sign(value), value)


def test_a_principal_not_allowed_on_the_service_is_refused() -> None:
    grants = access_of(
        [DEPLOY, ALICE, MALLORY],
        [grant([DEPLOY], ["start"], policies=["gated"]), grant([MALLORY], ["abort"], ["search"])],
    )
    engine, stream = started_engine(grants)

    error = refused(engine, stream.control("aborted", 5, actor="alice"), MALLORY)

    assert error.reason == "unauthorized"
    assert "principal 'mallory' may not abort service 'checkout'" in str(error)


def test_a_named_policy_not_granted_is_refused() -> None:
    engine = Engine(POLICIES, access=access())

    error = refused(engine, Stream(1).started(policy="fast"), DEPLOY)

    assert "may not start service 'checkout' with policy 'fast'" in str(error)
    assert engine.rollouts == {}


def test_the_default_policy_is_named_default_for_grants() -> None:
    engine = Engine(POLICIES, access=access())
    error = refused(engine, Stream(1).started(), DEPLOY)
    assert "with policy 'default'" in str(error)

    allowed = Engine(POLICIES, access=access(grant([ALICE], ["start"], policies=["default"])))
    assert send(allowed, Stream(1).started(), ALICE)[0].action.value == "advance"


def test_an_inline_policy_needs_inline_policies() -> None:
    inline = Stream(1).started(policy={**GATED, "stages": [{"traffic_percent": 100}]})
    engine = Engine(POLICIES, access=access())

    error = refused(engine, inline, DEPLOY)

    assert "with an inline policy" in str(error)
    trusted = Engine(POLICIES, access=access(grant([ALICE], ["start"], inline=True)))
    assert send(trusted, inline, ALICE)


def _at_the_gate(engine: Engine, stream: Stream) -> None:
    for event in stream.requests(0, 61):
        engine.process(event)
    assert engine.rollouts[DEPLOYMENT].last_decision.summary.endswith("awaiting approval")  # type: ignore[union-attr]


def test_the_starter_may_not_approve_and_another_principal_may() -> None:
    grants = access(grant([ALICE], ["start"], policies=["gated"]))
    engine = Engine(POLICIES, access=grants)
    stream = Stream(1)
    send(engine, stream.started(policy="gated"), ALICE)
    _at_the_gate(engine, stream)

    error = refused(engine, stream.control("approved", 61, actor="bob"), ALICE)
    decisions = send(engine, stream.control("approved", 62, actor="mallory"), BOB)

    assert error.reason == "unauthorized"
    assert "'alice' started this rollout and may not approve it" in str(error)
    assert [d.action.value for d in decisions] == ["advance"]
    assert "approved by bob" in decisions[0].summary, "decisions name the signer, not actor"


def test_a_command_names_the_authenticated_principal_never_its_actor() -> None:
    engine, stream = started_engine()

    decisions = send(engine, stream.control("aborted", 5, actor="the-cto"), ALICE)

    assert decisions[0].summary.startswith("aborted by alice")


def test_a_new_announcement_for_a_live_rollout_needs_supersede() -> None:
    engine, stream = started_engine()
    newer = stream.started(10, policy="gated", deployment="checkout-43")

    error = refused(engine, newer, DEPLOY)

    assert "(supersede needed)" in str(error)
    assert engine.rollouts[DEPLOYMENT].is_live and "checkout-43" not in engine.rollouts
    engine.access = access(grant([DEPLOY], ["supersede"], [SERVICE]))
    assert [d.action.value for d in send(engine, newer, DEPLOY)] == ["rollback", "advance"]


def test_a_finished_rollout_is_replaced_without_supersede() -> None:
    engine, stream = started_engine()
    send(engine, stream.control("aborted", 5), ALICE)

    assert send(engine, stream.started(10, policy="gated", deployment="checkout-43"), DEPLOY)


def test_a_signed_command_published_again_is_refused() -> None:
    engine, stream = started_engine()
    pause = stream.control("paused", 5)
    send(engine, pause, BOB)
    send(engine, stream.control("resumed", 6), BOB)

    error = refused(engine, pause, BOB)

    assert error.reason == "duplicate_control"
    assert engine.rollouts[DEPLOYMENT].paused_by is None


def test_the_commands_taken_survive_a_restart() -> None:
    engine, stream = started_engine()
    pause = stream.control("paused", 5)
    send(engine, pause, BOB)
    send(engine, stream.control("resumed", 6), BOB)
    snapshot = ServiceSnapshot(SERVICE, 0, rollouts=engine.rollouts_of(SERVICE))
    restored = ServiceSnapshot.loads(snapshot.dumps())
    fresh = Engine(POLICIES, access=engine.access)
    fresh.adopt(restored.rollouts)

    assert refused(fresh, pause, BOB).reason == "duplicate_control"
    assert restored.rollouts[0].started_by == "deploy-bot"


def test_heartbeats_come_from_a_principal_with_heartbeat() -> None:
    engine, _ = started_engine()
    beat = {"type": "heartbeat", "ts": T0 + 30, "service": SERVICE}

    error = refused(engine, beat, ALICE)
    unsigned = refused(engine, beat, None)
    send(engine, beat, WORKER)  # the first heartbeat of an idle rollout only marks it idle
    assert engine.rollouts[DEPLOYMENT].clock == T0, "a refused heartbeat must not count"
    send(engine, {**beat, "ts": T0 + 40}, WORKER)

    assert (error.reason, unsigned.reason) == ("unauthorized", "unauthorized")
    assert engine.rollouts[DEPLOYMENT].clock > T0


def test_commands_on_unknown_deployments_are_refused_unsigned_before_anything() -> None:
    engine, stream = started_engine()

    assert refused(engine, stream.control("aborted", 5, deployment="nope"), None).reason == (
        "unauthorized"
    )
    assert refused(engine, stream.control("aborted", 5, deployment="nope"), ALICE).reason == (
        "unknown_deployment"
    )


def test_without_an_access_file_every_input_is_obeyed_as_before() -> None:
    engine = Engine(POLICIES)
    stream = Stream(1)
    engine.process(stream.started(policy="gated"))

    decisions = engine.process(stream.control("aborted", 5, actor="anyone"))

    assert decisions[0].summary.startswith("aborted by anyone")
    assert engine.rollouts[DEPLOYMENT].started_by is None


def test_a_signed_command_far_ahead_of_the_rollout_is_refused_and_not_taken() -> None:
    engine, stream = started_engine()

    error = refused(engine, stream.control("aborted", 10_000), ALICE)  # nothing changes

    assert error.reason == "ts_out_of_range"
    assert engine.rollouts[DEPLOYMENT].controls == []


def test_a_signed_command_older_than_the_limit_is_refused_even_once_forgotten() -> None:
    engine, stream = started_engine()
    errors: list[ContractError] = []
    engine.process_batch(stream.requests(0, 1_000, rate=2.0), lambda _, e: errors.append(e))
    assert not errors
    clock = engine.rollouts[DEPLOYMENT].clock
    assert clock >= T0 + 990
    limit = engine.access.document.command_max_age_seconds  # type: ignore[union-attr]

    stale = stream.control("paused", clock - T0 - limit - 1)
    error = refused(engine, stale, BOB)

    assert error.reason == "ts_out_of_range" and "command_max_age_seconds" in str(error)
    assert engine.rollouts[DEPLOYMENT].controls == []
    send(engine, stream.control("paused", clock - T0 - limit + 1), BOB)
    assert engine.rollouts[DEPLOYMENT].paused_by == "bob"
