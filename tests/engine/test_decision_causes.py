"""Why a rollout rolls back or holds, to the second: the rollout deadline, non-critical
failures remembered from the tick that first saw them, and a hold with several causes."""

from __future__ import annotations

from canarystream.contracts.decision import Action, Phase, Verdict
from canarystream.engine import Engine
from tests.support.streams import (
    DEPLOYMENT,
    T0,
    Cohort,
    Stream,
    fast_policy,
    restarted,
    run,
    seconds,
)

# Stage 0 passes (at 70 s) and then waits for an approval that never comes.
AWAITING = fast_policy(
    deadline=100,
    stages=[
        {"traffic_percent": 10, "min_duration": 60, "min_samples": 50, "approval": True},
        {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
    ],
)


def test_the_rollout_deadline_rolls_back_at_the_first_tick_at_or_past_it() -> None:
    stream = Stream(5)
    decisions = run([stream.started(policy=AWAITING), *stream.requests(0, 150)])

    rows = [
        (d.action, seconds(d), d.stage, d.traffic_percent, d.phase, d.summary) for d in decisions
    ]
    assert rows[1:3] == [
        (Action.HOLD, 70, 0, 10, Phase.HELD, "stage 0 passed; awaiting approval"),
        (
            Action.ROLLBACK,
            100,
            0,
            0,
            Phase.ROLLED_BACK,
            "rollout deadline passed before promotion",
        ),
    ]
    # The rollback carries the evidence it stood on: every check passed, the guards are calm.
    verdicts = {r.check: r.verdict for r in decisions[2].reasons}
    assert verdicts == {
        "error_rate": Verdict.PASS,
        "latency-p90": Verdict.PASS,
        "baseline_drift": Verdict.PASS,
        "sample_ratio": Verdict.PASS,
    }


NON_CRITICAL = fast_policy(
    checks=[{"kind": "error_rate", "critical": False, "advance_abs_margin": 0.01}],
    stages=[
        {"traffic_percent": 10, "min_duration": 60, "max_duration": 120, "min_samples": 50},
        {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
    ],
)


def test_a_non_critical_failure_is_remembered_from_the_tick_that_first_saw_it() -> None:
    stream = Stream(0, canary=Cohort(error_rate=0.1))
    engine = Engine()
    decisions = run([stream.started(policy=NON_CRITICAL), *stream.requests(0, 100)], engine)
    hold = decisions[1]
    rollout = engine.rollouts[DEPLOYMENT]

    assert (hold.action, hold.summary) == (Action.HOLD, "non-critical regression: error_rate")
    # First seen at the hold; later failing ticks do not move it.
    assert rollout.noncritical_failed == {"error_rate": hold.ts}
    assert hold.ts < T0 + 60
    (again,) = restarted(engine).rollouts_of(rollout.service)
    assert again.noncritical_failed == {"error_rate": hold.ts}
    assert again.acknowledged == set()


SILENCE_HOLDS = fast_policy(
    guards={"no_data": {"hold_after": 30, "rollback_after": 90}, "sample_ratio": {"enabled": False}}
)


def test_a_hold_names_every_cause_in_force_and_keeps_them_as_the_tick_goes() -> None:
    # Paused at 27.5 s while the canary is silent; at 30 s the silence holds it as well.
    stream = Stream(0)
    engine = Engine()
    events = [
        stream.started(policy=SILENCE_HOLDS),
        *stream.requests(0, 27, rate=10, canary_rate=0),
        stream.control("paused", 27.5),
    ]
    decisions = run(events, engine)
    engine.advance_to(T0 + 30)
    rollout = engine.rollouts[DEPLOYMENT]

    assert [(d.action, seconds(d), d.summary) for d in decisions[1:]] == [
        (Action.HOLD, 27.5, "paused by alice")
    ]
    assert rollout.phase is Phase.HELD
    assert rollout.hold_summary == "paused by alice; no canary telemetry for 30s"


BROKEN = Cohort(error_rate=0.5)  # half of the canary's requests fail
# Two checks of the error rate (one of them weighted less): both fail at the first tick.
TWO_ERROR_CHECKS = [
    {"kind": "error_rate", "name": "errors", "advance_abs_margin": 0.01},
    {"kind": "error_rate", "name": "errors-again", "weight": 0.5, "advance_abs_margin": 0.01},
]


def test_a_critical_rollback_names_every_check_that_failed_at_once() -> None:
    stream = Stream(0, canary=BROKEN)
    policy = fast_policy(checks=TWO_ERROR_CHECKS)
    decisions = run([stream.started(policy=policy), *stream.requests(0, 30)])

    rollback = decisions[1]
    assert (rollback.action, seconds(rollback), rollback.phase) == (
        Action.ROLLBACK,
        5,
        Phase.ROLLED_BACK,
    )
    assert rollback.summary == "critical regression: errors, errors-again"


def test_a_deadline_rollback_names_every_unresolved_non_critical_failure() -> None:
    policy = fast_policy(
        checks=[{**check, "critical": False} for check in TWO_ERROR_CHECKS],
        stages=[
            {"traffic_percent": 10, "min_duration": 20, "max_duration": 40, "min_samples": 50},
            {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
        ],
    )
    stream = Stream(0, canary=BROKEN)
    decisions = run([stream.started(policy=policy), *stream.requests(0, 60)])

    rows = [(d.action, seconds(d), d.summary) for d in decisions[1:]]
    assert rows[:2] == [
        (Action.HOLD, 5, "non-critical regression: errors, errors-again"),
        (
            Action.ROLLBACK,
            40,
            "non-critical regression unresolved at deadline: errors, errors-again",
        ),
    ]
