"""Property: no unsigned or unauthorised input ever changes what the engine decides.

A signed rollout (announced by the deploy system, approved by alice at its gate) is run once
alone and once with any number of hostile inputs interleaved: commands, announcements and
heartbeats unsigned, signed by an unknown key, forged under alice's name, sent by principals
without the grant, alice approving a rollout she started, and alice's own signed commands
published again. The decisions must be the same, one for one.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.errors import ContractError
from canarystream.governance.identity import Origin, authenticate
from canarystream.policy.loading import PolicyRegistry, policy_from_mapping
from tests.support.access import access_of, grant, principal
from tests.support.streams import SERVICE, T0, Stream, fast_policy

DEPLOY, ALICE, BOB, WORKER, MALLORY = (
    principal(n) for n in ("deploy-bot", "alice", "bob", "worker", "mallory")
)
GATED = fast_policy(
    name="gated",
    stages=[
        {"traffic_percent": 10, "min_duration": 60, "min_samples": 20, "approval": True},
        {"traffic_percent": 50, "min_duration": 60, "min_samples": 20},
    ],
)
POLICIES = PolicyRegistry([policy_from_mapping(GATED)])
ACCESS = access_of(
    [DEPLOY, ALICE, BOB, WORKER],
    [
        grant([DEPLOY], ["start"], policies=["gated"]),
        grant([ALICE], ["approve", "abort", "pause", "resume"], [SERVICE]),
        grant([BOB], ["abort", "pause", "approve"], ["search"]),  # another service only
        grant([WORKER], ["heartbeat"], ["search"]),
    ],
)
STREAM = Stream(4)
APPROVAL = STREAM.control("approved", 75)


def signed(event: dict[str, Any], who: Any) -> Origin:
    value = orjson.dumps(event)
    return authenticate(ACCESS, who.name, who.sign(value), value)


STARTED = STREAM.started(policy="gated")
BASE: list[tuple[dict[str, Any], Origin | None]] = [
    (STARTED, signed(STARTED, DEPLOY)),
    *((event, None) for event in STREAM.requests(0, 150, rate=4)),
]
BASE.sort(key=lambda item: item[0]["ts"])


def hostile_origin(kind: str, value: bytes) -> Origin | None:
    if kind == "unsigned":
        return None
    if kind == "unknown-key":
        return authenticate(ACCESS, "mallory", MALLORY.sign(value), value)
    if kind == "forged-alice":
        return authenticate(ACCESS, "alice", MALLORY.sign(value), value)
    if kind == "no-grant":
        return authenticate(ACCESS, "bob", BOB.sign(value), value)
    return authenticate(ACCESS, "deploy-bot", DEPLOY.sign(value), value)  # start only


EVENTS = st.sampled_from(
    ["aborted", "paused", "resumed", "approved", "started", "superseding", "heartbeat"]
)
WHO = st.sampled_from(["unsigned", "unknown-key", "forged-alice", "no-grant", "deploy-bot"])
ATTACK = st.tuples(EVENTS, WHO, st.floats(0, 149, allow_nan=False), st.text(max_size=8))


def hostile(kind: str, who: str, at: float, actor: str) -> tuple[dict[str, Any], Origin | None]:
    if kind == "started" or kind == "superseding":
        deployment = "checkout-9" if kind == "superseding" else STREAM.deployment
        event = STREAM.started(at, policy="gated", deployment=deployment)
        if who == "deploy-bot":  # a superseding start it is not granted
            event["deployment"] = "checkout-9"
    elif kind == "heartbeat":
        event = {"type": "heartbeat", "ts": T0 + at, "service": SERVICE}
    else:
        event = STREAM.control(kind, at, actor=actor or "alice")
    return event, hostile_origin(who, orjson.dumps(event))


def run(inputs: list[tuple[dict[str, Any], Origin | None]]) -> list[Decision]:
    engine = Engine(POLICIES, access=ACCESS)
    out: list[Decision] = []
    for event, origin in inputs:
        try:
            out.extend(engine.process(event, origin=origin))
        except ContractError as exc:
            assert exc.reason in {"unauthorized", "duplicate_control"}, exc
    return out


def _with_approval(inputs: list[tuple[dict[str, Any], Origin | None]]) -> list[Any]:
    return sorted([*inputs, (APPROVAL, signed(APPROVAL, ALICE))], key=lambda item: item[0]["ts"])


EXPECTED = run(_with_approval(BASE))


def test_the_base_run_is_approved_by_alice_and_live_throughout() -> None:
    """So every hostile announcement would supersede it, and commands would matter."""
    summaries = [d.summary for d in EXPECTED]
    assert any("approved by alice" in s for s in summaries)
    assert [d.action.value for d in EXPECTED][-1] == "advance"


@settings(max_examples=40, deadline=None)
@given(st.lists(ATTACK, max_size=12), st.integers(0, 3))
def test_hostile_inputs_change_no_decision(attacks: list[Any], replays: int) -> None:
    inputs = _with_approval(BASE + [hostile(*attack) for attack in attacks])
    # Alice's approval published again, any number of times, after the original.
    inputs += [(APPROVAL, signed(APPROVAL, ALICE))] * replays
    inputs.sort(key=lambda item: item[0]["ts"])

    decided = run(inputs)

    assert [d.model_dump() for d in decided] == [d.model_dump() for d in EXPECTED]
