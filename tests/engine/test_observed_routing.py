"""Observed routing: ``traffic_shifted`` events set the share the engine judges against.

A rollout that receives none behaves as before (the share decided is taken as routed). Once
one arrives, the sample-ratio guard follows the latest observed share, and a decision that
changes the share and is not observed as applied within the policy's ``actuation_deadline``
holds the rollout and pages once, until a shift names it or routes its share.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import orjson
import pytest

from canarystream.contracts.decision import Action, Decision
from canarystream.contracts.topics import DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC
from canarystream.engine import Engine
from canarystream.engine.rollout import Rollout
from canarystream.errors import ContractError
from canarystream.governance.access import Action as Grant
from canarystream.replay import replay_lines
from canarystream.streaming.processor import BatchProcessor, Inbound
from tests.support.access import Principal, access_of, grant, origin_of, principal
from tests.support.streams import (
    DEPLOYMENT,
    SERVICE,
    T0,
    Stream,
    fast_policy,
    merge,
    restarted,
    run,
    seconds,
)

DEPLOY, ACTUATOR, MALLORY = principal("deploy-bot"), principal("edge-1"), principal("mallory")
ACCESS = access_of(
    [DEPLOY, ACTUATOR, MALLORY],
    [
        grant([DEPLOY, MALLORY], ["start", "pause"], inline=True),
        grant([ACTUATOR], [Grant.ROUTE.value]),
    ],
)


def shifted(at: float, percent: float, decision: str | None = None, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "traffic_shifted",
        "ts": T0 + at,
        "deployment": DEPLOYMENT,
        "service": SERVICE,
        "traffic_percent": percent,
        "backend": "test",
    }
    if decision is not None:
        event["decision_id"] = decision
    return {**event, **extra}


def stable(**overrides: Any) -> dict[str, Any]:
    """The fast test policy with a stable baseline (the expected share is the stage's %), and
    margins that let a healthy canary at 10 requests a second advance as soon as it may."""
    checks = [
        {"kind": "error_rate", "advance_abs_margin": 0.05},
        {"kind": "latency", "quantile": 0.5, "tolerance": 0.2, "advance_tolerance": 0.5},
    ]
    return fast_policy(baseline_mode="stable", checks=checks, **overrides)


def routed(stream: Stream, start: float, end: float, percent: float) -> list[dict[str, Any]]:
    """Requests of both cohorts, 100 a second, the canary getting ``percent`` % of them."""
    return stream.requests(start, end, rate=100 - percent, canary_rate=percent)


def rollout_of(engine: Engine) -> Rollout:
    return engine.rollouts[DEPLOYMENT]


def summaries(decisions: list[Decision]) -> list[tuple[float, str, bool, str]]:
    return [(seconds(d), d.action.value, d.page, d.summary) for d in decisions]


# --- who may report routing ---------------------------------------------------------------


def _signed(engine: Engine, event: dict[str, Any], who: Principal | None) -> list[Decision]:
    return engine.process(event, origin=origin_of(ACCESS, who, orjson.dumps(event)))


def test_a_forged_shift_neither_clears_a_not_applied_hold_nor_moves_the_guard() -> None:
    stream = Stream(5)
    engine = Engine(access=ACCESS)
    decided = _signed(engine, stream.started(policy=stable()), DEPLOY)
    decided += _signed(engine, shifted(1, 10, decided[0].decision_id), ACTUATOR)
    decided += run(routed(stream, 0, 150, 10), engine)
    advance, hold = decided[1], decided[-1]
    assert (advance.action, advance.traffic_percent) == (Action.ADVANCE, 50.0)
    assert (hold.action, hold.page, hold.ts) == (Action.HOLD, True, advance.ts + 60)
    assert hold.summary.startswith(f"decision not applied: {advance.decision_id}")
    rollout = rollout_of(engine)
    guard = orjson.dumps(rollout.ratio.to_state())

    claim = shifted(151, 50, advance.decision_id)
    for who in (None, MALLORY, DEPLOY):  # unsigned; signed by principals without `route`
        with pytest.raises(ContractError) as refused:
            _signed(engine, claim, who)
        assert refused.value.reason == "unauthorized"
    # The actuator's signature over other bytes (a copy with the share changed).
    origin = origin_of(ACCESS, ACTUATOR, orjson.dumps(shifted(151, 10)))
    with pytest.raises(ContractError, match="bad signature") as refused:
        engine.process(claim, origin=replace(origin, principal=None, problem="bad signature"))
    assert run(routed(stream, 151, 152, 10), engine) == []
    assert rollout.routing.share == 10 and rollout.routing.awaited == advance.decision_id
    assert orjson.dumps(rollout.ratio.to_state()) == guard  # not restarted: still blind
    assert run(routed(stream, 152, 200, 10), engine) == []  # still held: nothing cleared it

    assert _signed(engine, shifted(201, 50, advance.decision_id), ACTUATOR) == []
    # Applied late: the stage's minimum duration and samples count from now, from zero.
    assert (rollout.stage_started_at, rollout.stage_requests) == (T0 + 201, [0, 0])
    cleared = run(routed(stream, 201, 215, 50), engine)
    assert [(d.action, d.page, d.summary) for d in cleared] == [
        (Action.ADVANCE, False, "hold cleared; stage 1 resumes")
    ]
    assert rollout.ratio.expected == 0.5 and rollout.ratio.since == T0 + 201 + 30
    assert rollout.stage_started_at == T0 + 201  # the stage counts from its share routed


# --- the guard follows the routing observed -----------------------------------------------


def test_the_sample_ratio_guard_judges_against_the_observed_share() -> None:
    # A recording whose router gave the canary 1 in 6 requests throughout, judged by a policy
    # whose first stage is 10 %: as decided, the share looks wrong; as observed, it is right.
    stream = Stream(6)
    telemetry = routed(stream, 0, 130, 100 / 6)
    assumed = run(merge([stream.started(policy=stable())], telemetry))
    assert [d.action for d in assumed] == [Action.ADVANCE, Action.HOLD]
    assert assumed[-1].summary.startswith("sample ratio mismatch")

    backtest = stable(actuation_deadline=None)  # decisions steer nothing: none is awaited
    events = merge([stream.started(policy=backtest), shifted(0.5, 100 / 6)], telemetry)
    observed = run(events)
    assert [d.action for d in observed] == [Action.ADVANCE, Action.ADVANCE, Action.PROMOTE]
    ratio = next(r for r in observed[-1].reasons if r.check == "sample_ratio")
    assert ratio.verdict.value == "pass" and "vs routed 16.7%" in ratio.message


def test_a_routing_that_is_not_the_decided_share_holds_after_the_deadline() -> None:
    stream = Stream(7)
    events = merge(
        [stream.started(policy=stable(actuation_deadline=20)), shifted(1, 30)],
        routed(stream, 0, 40, 30),
    )
    decided = run(events)
    assert [(seconds(d), d.action, d.page) for d in decided] == [
        (0.0, Action.ADVANCE, False),
        (25.0, Action.HOLD, True),
    ]
    assert decided[1].summary.startswith(
        f"decision not applied: {decided[0].decision_id} set the canary's share to 10%, "
        "routing observed at 30% for 24s"
    )


@pytest.mark.parametrize("how", ["named", "share", "named-read-back"])
def test_a_decision_not_applied_pages_once_and_clears_once_observed(how: str) -> None:
    stream = Stream(15)
    engine = Engine()
    decided = run([stream.started(policy=stable())], engine)
    decided += run([shifted(2, 10, decided[0].decision_id)], engine)
    decided += run(routed(stream, 0, 150, 10), engine)
    steps = summaries(decided)
    advance = decided[1]
    assert [s[:3] for s in steps] == [
        (0.0, "advance", False),
        (60.0, "advance", False),
        (120.0, "hold", True),
    ]
    assert steps[2][3] == (
        f"decision not applied: {advance.decision_id} set the canary's share to 50%, routing "
        "observed at 10% for 1m 00s (actuation_deadline 1m 00s)"
    )
    # Applied at last: by name, or at the decided share within the tolerance; by name also
    # when the router reads back a share off the decided one (its weights' granularity).
    late = {
        "named": shifted(151, 50, advance.decision_id),
        "share": shifted(151, 49.6),
        "named-read-back": shifted(151, 48, advance.decision_id),
    }[how]
    cleared = run([late, *routed(stream, 151, 170, late["traffic_percent"])], engine)
    assert summaries(cleared)[:1] == [(155.0, "advance", False, "hold cleared; stage 1 resumes")]
    routing = rollout_of(engine).routing
    if how == "named-read-back":
        # Its share is not the one decided: the next decision is awaited until named too.
        assert routing.awaited == cleared[0].decision_id
        run([shifted(171, 48, cleared[0].decision_id)], engine)
    assert routing.awaited is None


def test_a_rollout_already_held_still_pages_for_a_decision_not_applied() -> None:
    stream = Stream(14)
    engine = Engine()
    decided = run([stream.started(policy=stable()), shifted(2, 10)], engine)
    decided += run(merge(routed(stream, 0, 130, 10), [stream.control("paused", 70)]), engine)
    assert [(seconds(d), d.action, d.page) for d in decided] == [
        (0.0, Action.ADVANCE, False),
        (60.0, Action.ADVANCE, False),
        (70.0, Action.HOLD, False),  # paused
        (120.0, Action.HOLD, True),  # and now a decision not applied: a person must know
    ]
    assert decided[-1].summary.startswith(f"decision not applied: {decided[1].decision_id}")
    assert decided[-1].summary.endswith("; paused by alice")


def test_a_shift_that_is_not_the_awaited_share_keeps_the_hold() -> None:
    stream = Stream(9)
    engine = Engine()
    decided = run([stream.started(policy=stable()), shifted(2, 10)], engine)
    decided += run(routed(stream, 0, 125, 10), engine)
    assert decided[-1].page
    assert run([shifted(126, 25), *routed(stream, 126, 200, 25)], engine) == []
    assert rollout_of(engine).ratio.expected == 0.25  # it judges what is routed all the same


def test_without_shifts_the_actuation_deadline_changes_nothing() -> None:
    stream = Stream(10)
    telemetry = routed(stream, 0, 200, 10)

    def decisions(deadline: float | None) -> list[dict[str, Any]]:
        started = stream.started(policy=stable(actuation_deadline=deadline))
        return [d.model_dump() for d in run(merge([started], telemetry))]

    assert decisions(5) == decisions(None)


def test_paired_mode_expects_half_of_an_applied_decision_and_nothing_at_zero() -> None:
    stream = Stream(11)
    engine = Engine()
    run([stream.started(policy=fast_policy()), *stream.requests(0, 20, rate=20)], engine)
    rollout = rollout_of(engine)
    decided = rollout.last_decision
    assert decided is not None
    # an actuator's read-back of the router's canary weight: the paired baseline gets as much
    run([shifted(21, 10, decided.decision_id)], engine)
    assert (rollout.ratio.expected, rollout.ratio.since) == (0.5, T0 + 21 + 30)
    run([shifted(22, 0, decided.decision_id)], engine)
    assert rollout.ratio.expected == 0.0
    # However small the canary's weight (the default policy starts at 1 %), half is expected.
    for at, percent in ((23, 1.0), (24, 0.5)):
        run([shifted(at, percent, decided.decision_id)], engine)
        assert rollout.ratio.expected == 0.5


def test_a_shift_naming_no_decision_states_the_cohorts_share_in_paired_mode_too() -> None:
    # A recording of a stable canary (one request in six beside the old fleet) judged under a
    # paired policy: the stated share is what the cohorts get, not the half a paired baseline
    # would.
    stream = Stream(12)
    engine = Engine()
    run([stream.started(policy=fast_policy()), *stream.requests(0, 20, rate=20)], engine)
    rollout = rollout_of(engine)
    run([shifted(21, 100 / 6)], engine)
    assert (rollout.ratio.expected, rollout.ratio.since) == (pytest.approx(1 / 6), T0 + 21 + 30)


# --- inputs refused or ignored ------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (shifted(1, 10, deployment="nope"), "unknown_deployment"),
        (shifted(1, 101), "invalid_field"),
        (shifted(1, -1), "invalid_field"),
        (shifted(1, math.nan), "invalid_field"),
        (shifted(1, 10) | {"traffic_percent": "10"}, "invalid_field"),
        (shifted(1, 10) | {"backend": ""}, "invalid_field"),
        (shifted(1000, 10), "ts_out_of_range"),
    ],
)
def test_bad_shifts_are_refused_with_a_reason(event: dict[str, Any], reason: str) -> None:
    engine = Engine()
    run([Stream().started(policy=stable())], engine)
    with pytest.raises(ContractError) as refused:
        engine.process(event)
    assert refused.value.reason == reason
    assert not rollout_of(engine).routing.observed


def test_a_shift_naming_another_services_rollout_is_refused() -> None:
    engine = Engine()
    run([Stream().started(policy=stable())], engine)
    with pytest.raises(ContractError, match="a rollout of service 'checkout'") as refused:
        engine.process(shifted(1, 10, service="payments"))
    assert refused.value.reason == "unknown_deployment"


def test_stale_shifts_and_shifts_after_the_end_are_counted_and_change_nothing() -> None:
    stream = Stream(12)
    engine = Engine()
    run([stream.started(policy=stable()), shifted(2, 10), shifted(3, 12)], engine)
    run([shifted(3, 40), shifted(1, 40)], engine)  # not newer than the latest
    assert rollout_of(engine).routing.share == 12
    run([stream.control("aborted", 4)], engine)
    run([shifted(5, 0)], engine)  # the actuator reports the rollback it applied
    assert engine.counters["traffic_shifted_stale"] == 2
    assert engine.counters["traffic_shifted_after_finish"] == 1
    assert rollout_of(engine).routing.share == 12


# --- replay, restarts ---------------------------------------------------------------------


def _awaiting_events() -> list[dict[str, Any]]:
    stream = Stream(13)
    return merge(
        [stream.started(policy=stable()), shifted(2, 10), shifted(151, 50)],
        routed(stream, 0, 150, 10),
        routed(stream, 150, 190, 50),
    )


def test_a_restart_while_a_decision_is_awaited_decides_the_same() -> None:
    events = _awaiting_events()
    whole = [d.model_dump() for d in run(events)]
    cut = next(i for i, e in enumerate(events) if e["ts"] > T0 + 100)
    engine = Engine()
    first = run(events[:cut], engine)
    assert rollout_of(engine).routing.awaited is not None
    rest = run(events[cut:], restarted(engine))
    assert [d.model_dump() for d in first + rest] == whole
    assert [d["action"] for d in whole][-2:] == ["hold", "advance"]


def test_replay_of_a_file_with_shifts_decides_as_the_engine() -> None:
    events = _awaiting_events()
    lines = [orjson.dumps(e) for e in events]
    replayed: list[Decision] = []
    replay_lines([("rollout.jsonl", lines)], on_decision=replayed.append, strict=True)
    assert [d.model_dump() for d in replayed] == [d.model_dump() for d in run(events)]


def test_the_worker_judges_each_shift_and_names_who_sent_it() -> None:
    engine = Engine(access=ACCESS)
    worker = BatchProcessor(engine, {}.get, lambda: 0.0, telemetry_topic=TELEMETRY_TOPIC)
    events = [
        (Stream().started(policy=stable()), DEPLOY),
        (shifted(1, 10), None),
        (shifted(2, 10), ACTUATOR),
    ]
    batch = []
    for offset, (event, who) in enumerate(events):
        value = orjson.dumps(event)
        headers = tuple(who.headers(value)) if who is not None else ()
        batch.append(Inbound(DEPLOYMENTS_TOPIC, 0, offset, SERVICE.encode(), value, headers))
    result = worker.process(batch)
    verdicts = [(v.event_type, v.verdict, v.reason, v.principal) for v in result.verdicts]
    assert verdicts == [
        ("deployment_started", "accepted", None, "deploy-bot"),
        ("traffic_shifted", "refused", "unauthorized", None),
        ("traffic_shifted", "accepted", None, "edge-1"),
    ]
    assert [letter.reason for letter in result.dead_letters] == ["unauthorized"]
    assert rollout_of(engine).routing.at == T0 + 2


def test_without_an_actuation_deadline_no_decision_is_awaited_and_the_guard_keeps_judging() -> None:
    stream = Stream(7)
    engine = Engine()
    decided = run([stream.started(policy=stable(actuation_deadline=None))], engine)
    decided += run([shifted(1, 10, decided[0].decision_id)], engine)
    decided += run(routed(stream, 0, 62, 10), engine)
    advance = decided[-1]
    assert (advance.action, seconds(advance), advance.traffic_percent) == (
        Action.ADVANCE,
        60.0,
        50.0,
    )
    rollout = rollout_of(engine)
    # Routing still observed at 10 %: nothing is awaited (no deadline to await it by), so the
    # sample-ratio guard is not blinded and goes on judging the share observed.
    assert rollout.routing.awaited is None
    folded = orjson.dumps(rollout.ratio.to_state())
    run(routed(stream, 62, 80, 10), engine)
    assert orjson.dumps(rollout.ratio.to_state()) != folded
    assert rollout.ratio.expected == 0.1
