"""Rollout lifecycle: the first decision, promotion of a healthy canary, rollback on regression."""

from __future__ import annotations

from typing import Any

import pytest

from canarystream.contracts.decision import (
    Action,
    CheckReason,
    Decision,
    Phase,
    Verdict,
    decision_id_for,
)
from canarystream.engine import Engine
from canarystream.policy.model import Policy
from tests.support.streams import (
    BASELINE,
    CANARY,
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

THREE_STAGES = fast_policy(
    name="three",
    stages=[{"traffic_percent": p, "min_duration": 40, "min_samples": 50} for p in (5, 20, 50)],
)


def reason(decision: Decision, check: str) -> CheckReason:
    (found,) = [r for r in decision.reasons if r.check == check]
    return found


# ------------------------------------------------------------------------------------ start


@pytest.mark.parametrize(
    ("policy", "name", "traffic", "checks"),
    [
        (fast_policy(), "fast", 10.0, ["error_rate", "latency-p90"]),
        (THREE_STAGES, "three", 5.0, ["error_rate", "latency-p90"]),
        (
            None,
            "default",
            1.0,
            ["error_rate", "latency_shift", "latency-p50", "latency-p90", "latency-p99"],
        ),
    ],
)
def test_first_decision_routes_the_first_stage(
    policy: Any, name: str, traffic: float, checks: list[str]
) -> None:
    (decision,) = Engine().process(Stream().started(at=0.0, policy=policy))

    assert decision.action is Action.ADVANCE
    assert (decision.seq, decision.stage, decision.traffic_percent) == (0, 0, traffic)
    assert decision.phase is Phase.RUNNING
    assert decision.ts == T0
    assert (decision.deployment, decision.service) == (DEPLOYMENT, SERVICE)
    assert (decision.baseline_version, decision.canary_version) == (BASELINE, CANARY)
    assert decision.policy == name
    assert decision.decision_id == decision_id_for(DEPLOYMENT, 0, "advance")
    # Every check (gauges appear only once a gauge is seen) and both guards account for it.
    assert [r.check for r in decision.reasons] == [*checks, "baseline_drift", "sample_ratio"]


def test_decision_ids_depend_on_deployment_seq_and_action_only() -> None:
    first = Engine().process(Stream(seed=1).started(policy=fast_policy()))
    again = Engine().process(Stream(seed=2).started(at=30.0, policy=fast_policy()))
    other = Engine().process(Stream(deployment="checkout-43").started(policy=fast_policy()))

    assert first[0].decision_id == again[0].decision_id
    assert first[0].decision_id != other[0].decision_id
    assert other[0].decision_id == decision_id_for("checkout-43", 0, "advance")


# ---------------------------------------------------------------------------------- healthy


@pytest.mark.parametrize(
    ("policy", "seed", "expected"),
    [
        # (action, seconds after start, stage, traffic %) after the first decision
        (fast_policy(), 0, [("advance", 60, 1, 50), ("promote", 120, 1, 100)]),
        (fast_policy(), 5, [("advance", 60, 1, 50), ("promote", 120, 1, 100)]),
        (
            THREE_STAGES,
            0,
            [("advance", 40, 1, 20), ("advance", 80, 2, 50), ("promote", 120, 2, 100)],
        ),
    ],
)
def test_healthy_canary_walks_every_stage_and_is_promoted(
    policy: dict[str, Any], seed: int, expected: list[tuple[str, float, int, float]]
) -> None:
    stream = Stream(seed)
    decisions = run([stream.started(policy=policy), *stream.requests(0, 300, rate=50)])

    assert [(d.action.value, seconds(d), d.stage, d.traffic_percent) for d in decisions[1:]] == (
        expected
    )
    assert [d.seq for d in decisions] == list(range(len(policy["stages"]) + 1))
    assert all(seconds(d) % policy["tick"] == 0 for d in decisions)
    assert [d.phase for d in decisions[:-1]] == [Phase.RUNNING] * len(policy["stages"])
    promoted = decisions[-1]
    assert (promoted.phase, promoted.traffic_percent) == (Phase.PROMOTED, 100.0)
    assert all(r.verdict is Verdict.PASS for r in promoted.reasons)


def test_stage_is_not_left_before_min_duration_or_min_samples() -> None:
    # 2 requests/s per cohort: 120 per cohort after 60 s, short of min_samples=200.
    policy = fast_policy(
        checks=[{"kind": "error_rate", "advance_abs_margin": 0.5}],
        stages=[
            {"traffic_percent": 10, "min_duration": 60, "max_duration": 600, "min_samples": 200},
            {"traffic_percent": 50, "min_duration": 60, "min_samples": 0},
        ],
    )
    stream = Stream(3)
    decisions = run([stream.started(policy=policy), *stream.requests(0, 300, rate=2)])

    assert [(d.action.value, seconds(d)) for d in decisions[1:]] == [
        ("advance", 100),  # 200 requests per cohort are reached at 100 s
        ("promote", 160),
    ]


# ------------------------------------------------------------------------------ regressions

ERRORS_X10 = Cohort(error_rate=0.10)
FAST_THRESHOLD = len(fast_policy()["checks"]) / Policy().alpha
LATENCY_X1_5 = Cohort(median_ms=60.0)


@pytest.mark.parametrize(
    ("canary", "failing", "other"),
    [
        (ERRORS_X10, "error_rate", "latency-p90"),
        (LATENCY_X1_5, "latency-p90", "error_rate"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_critical_regression_rolls_back(
    canary: Cohort, failing: str, other: str, seed: int
) -> None:
    stream = Stream(seed, canary=canary)
    decisions = run([stream.started(policy=fast_policy()), *stream.requests(0, 120)])

    start, rollback = decisions  # no hold, no advance before it
    assert start.action is Action.ADVANCE
    assert rollback.action is Action.ROLLBACK
    assert (rollback.phase, rollback.traffic_percent, rollback.stage) == (Phase.ROLLED_BACK, 0, 0)
    assert rollback.seq == 1
    assert seconds(rollback) < 60  # caught in the first stage, on a tick boundary
    assert seconds(rollback) % 5 == 0
    assert rollback.summary == f"critical regression: {failing}"
    bad = reason(rollback, failing)
    assert bad.verdict is Verdict.FAIL
    assert bad.critical
    # From the policy, not the code under test: alpha 0.05 shared by two checks of equal weight.
    assert bad.threshold == pytest.approx(FAST_THRESHOLD) == 40.0
    assert reason(rollback, other).threshold == pytest.approx(FAST_THRESHOLD)
    assert bad.e_value is not None and bad.e_value >= FAST_THRESHOLD
    assert reason(rollback, other).verdict is not Verdict.FAIL


def test_regression_in_a_later_stage_rolls_back_from_that_stage() -> None:
    stream = Stream(0)
    events = [
        stream.started(policy=fast_policy()),
        *stream.requests(0, 65, rate=50),
        *stream.requests(65, 120, rate=50, canary=ERRORS_X10),
    ]
    decisions = run(events)

    assert [(d.action.value, d.stage, d.traffic_percent) for d in decisions] == [
        ("advance", 0, 10),
        ("advance", 1, 50),
        ("rollback", 1, 0),
    ]
    assert decisions[-1].summary == "critical regression: error_rate"
    assert 65 < seconds(decisions[-1]) < 120


# ----------------------------------------------------------------- non-critical regression

NON_CRITICAL = fast_policy(
    name="lenient",
    checks=[{"kind": "error_rate", "critical": False, "advance_abs_margin": 0.01}],
    stages=[
        {"traffic_percent": 10, "min_duration": 60, "max_duration": 120, "min_samples": 50},
        {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
    ],
)


@pytest.mark.parametrize(
    ("approve_at", "expected"),
    [
        # No one accepts the regression: roll back at the stage deadline (max_duration).
        (
            None,
            [
                ("hold", 0, Phase.HELD, "non-critical regression: error_rate"),
                (
                    "rollback",
                    0,
                    Phase.ROLLED_BACK,
                    "non-critical regression unresolved at deadline: error_rate",
                ),
            ],
        ),
        # Accepted before the deadline: the stage is let go at once. The accepted check is
        # no evidence of no harm, so the next stage waits for a person at its deadline
        # (92.5 + 3 x 60 s) instead of rolling back.
        (
            92.5,
            [
                ("hold", 0, Phase.HELD, "non-critical regression: error_rate"),
                ("advance", 1, Phase.RUNNING, "stage 0 approved by bob; stage 1 at 50% traffic"),
                (
                    "hold",
                    1,
                    Phase.HELD,
                    "stage 1 deadline passed without evidence of no harm (error_rate)",
                ),
            ],
        ),
        # Too late: the rollback has happened and the approval changes nothing.
        (
            150.0,
            [
                ("hold", 0, Phase.HELD, "non-critical regression: error_rate"),
                (
                    "rollback",
                    0,
                    Phase.ROLLED_BACK,
                    "non-critical regression unresolved at deadline: error_rate",
                ),
            ],
        ),
    ],
)
def test_non_critical_regression_holds_then_rolls_back_at_the_deadline(
    approve_at: float | None, expected: list[tuple[str, int, Phase, str]]
) -> None:
    stream = Stream(0, canary=ERRORS_X10)
    controls = [] if approve_at is None else [stream.control("approved", approve_at, actor="bob")]
    events = merge([stream.started(policy=NON_CRITICAL)], stream.requests(0, 300), controls)
    decisions = run(events)

    assert [(d.action.value, d.stage, d.phase, d.summary) for d in decisions[1:]] == expected
    hold, after = decisions[1], decisions[2]
    assert seconds(hold) < 60
    assert reason(hold, "error_rate").verdict is Verdict.FAIL
    assert not reason(hold, "error_rate").critical
    if after.action is Action.ROLLBACK:
        assert seconds(after) == 120  # max_duration of stage 0
        assert after.traffic_percent == 0
    else:
        assert seconds(after) == approve_at
        assert after.traffic_percent == 50
        assert seconds(decisions[3]) == 275  # first tick at or past 92.5 + 180
