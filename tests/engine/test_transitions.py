"""What each transition leaves in the rollout: a stage entered, an abort with its reason, a
superseded rollout, and the signed commands a rollout remembers."""

from __future__ import annotations

from canarystream.contracts.decision import Action, Phase, Verdict
from canarystream.contracts.events import DeploymentStarted
from canarystream.engine import Engine
from canarystream.engine.rollout import Rollout
from canarystream.governance.rules import MAX_CONTROLS
from canarystream.policy.loading import policy_from_mapping
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

GATED = fast_policy(
    stages=[
        {"traffic_percent": 10, "min_duration": 60, "min_samples": 50, "approval": True},
        {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
    ],
)


def test_a_stage_entered_from_an_approval_wait_starts_afresh() -> None:
    stream = Stream(0)
    engine = Engine()
    events = merge(
        [stream.started(policy=GATED)],
        stream.requests(0, 92),
        [stream.control("approved", 92.5, actor="bob")],
    )
    decisions = run(events, engine)
    rollout = engine.rollouts[DEPLOYMENT]

    advance = decisions[-1]
    assert (advance.action, seconds(advance), advance.stage, advance.traffic_percent) == (
        Action.ADVANCE,
        92.5,
        1,
        50,
    )
    assert advance.summary == (
        "no harm shown at stage 0 (10%) and approved by bob; stage 1 at 50% traffic"
    )
    # The new stage counts its own time and requests, and nothing of the wait is left.
    assert (rollout.stage, rollout.phase, rollout.stage_started_at) == (1, Phase.RUNNING, T0 + 92.5)
    assert rollout.stage_requests == [0, 0]
    assert (rollout.awaiting_approval, rollout.hold_summary) == (False, "")
    assert rollout.ratio.expected == 0.5  # paired cohorts: equal shares whatever the stage
    (again,) = restarted(engine).rollouts_of(SERVICE)
    assert (again.stage_requests, again.awaiting_approval, again.hold_summary) == (
        [0, 0],
        False,
        "",
    )


def test_each_stage_of_a_stable_baseline_rollout_expects_its_own_share() -> None:
    # The sample-ratio guard expects the canary's share of the stage (not 50 %: unpaired),
    # from the stage's start plus the guard's settling time.
    stream = Stream(0)
    policy = fast_policy(
        baseline_mode="stable",
        guards={"sample_ratio": {"enabled": False}},
        stages=[
            {"traffic_percent": 10, "min_duration": 60, "min_samples": 50},
            {"traffic_percent": 25, "min_duration": 60, "min_samples": 50},
        ],
    )
    engine = Engine()
    run([stream.started(policy=policy)], engine)
    rollout = engine.rollouts[DEPLOYMENT]
    settle = rollout.policy.guards.sample_ratio.settle
    assert (rollout.ratio.expected, rollout.ratio.since) == (0.1, T0 + settle)

    run(stream.requests(0, 100), engine)

    assert rollout.stage == 1
    assert rollout.ratio.expected == 0.25
    assert rollout.ratio.since == rollout.stage_started_at + settle


def test_an_advance_carries_the_evidence_that_let_the_stage_go() -> None:
    # Taken before the stage changed: the next stage is not ready, its evidence would be
    # inconclusive.
    stream = Stream(0)
    decisions = run([stream.started(policy=fast_policy()), *stream.requests(0, 65)])

    advance = decisions[1]
    assert (advance.action, advance.stage) == (Action.ADVANCE, 1)
    verdicts = {reason.check: reason.verdict for reason in advance.reasons}
    assert verdicts["error_rate"] is Verdict.PASS
    assert verdicts["latency-p90"] is Verdict.PASS


def test_an_abort_names_its_actor_and_reason_and_takes_all_traffic_back() -> None:
    stream = Stream(0)
    abort = stream.control("aborted", 12.5) | {"reason": "the ledger drifts"}
    engine = Engine()
    events = merge([stream.started(policy=fast_policy())], stream.requests(0, 30), [abort])
    decisions = run(events, engine)
    aborted = decisions[-1]

    assert (aborted.action, seconds(aborted), aborted.phase, aborted.traffic_percent) == (
        Action.ROLLBACK,
        12.5,
        Phase.ABORTED,
        0,
    )
    assert aborted.summary == "aborted by alice: the ledger drifts"
    assert (aborted.seq, aborted.page, aborted.compensation) == (1, False, [])
    # Unlike a superseded rollout, an aborted one watches whether the service recovers.
    rollout = engine.rollouts[DEPLOYMENT]
    assert (rollout.finished_at, rollout.recovery.watching) == (T0 + 12.5, True)


HOOKS = [{"name": "migration-down", "command": ["./migrate", "down", "42"]}]


def test_a_superseded_rollout_runs_no_compensation_and_verifies_no_rollback() -> None:
    old = Stream(0)
    engine = Engine()
    started = old.started(policy=fast_policy()) | {"compensation": HOOKS}
    run([started, *old.requests(0, 30)], engine)

    superseded, _ = engine.process(Stream(deployment="checkout-43").started(at=30.0))
    rollout = engine.rollouts[DEPLOYMENT]

    assert (superseded.action, superseded.phase, superseded.compensation) == (
        Action.ROLLBACK,
        Phase.ABORTED,
        [],
    )
    assert (rollout.finished_at, rollout.is_active) == (T0 + 30, False)
    assert not rollout.recovery.watching


def test_a_rollout_remembers_the_newest_signed_commands_only() -> None:
    started = DeploymentStarted(
        ts=T0, deployment=DEPLOYMENT, service=SERVICE, baseline_version="v1", canary_version="v2"
    )
    rollout = Rollout(started, policy_from_mapping(fast_policy()))
    keys = [f"command-{n}" for n in range(MAX_CONTROLS + 2)]
    for key in keys[:2]:
        rollout.take_control(key)
    assert rollout.controls == keys[:2]
    for key in keys[2:]:
        rollout.take_control(key)
    assert rollout.controls == keys[2:]
