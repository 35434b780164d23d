"""Guards: a silent canary, a sample-ratio mismatch and a shared incident hold the rollout."""

from __future__ import annotations

from typing import Any

import pytest

from canarystream.contracts.decision import Action, Decision, Phase, Verdict
from canarystream.engine import Engine
from tests.support.streams import T0, Cohort, Stream, fast_policy, run, seconds


def summary_rows(decisions: list[Decision]) -> list[tuple[str, float, int, Phase, str]]:
    return [(d.action.value, seconds(d), d.stage, d.phase, d.summary) for d in decisions[1:]]


# ---------------------------------------------------------------------------------- no data

# A silent canary also breaks the sample ratio; that guard is off to watch the no-data one.
NO_RATIO = {"sample_ratio": {"enabled": False}}
SILENCE = {"no_data": {"hold_after": 30, "rollback_after": 90}, **NO_RATIO}


@pytest.mark.parametrize(
    ("guards", "hold_at", "rollback_at", "hold_after", "rollback_after"),
    [
        pytest.param(SILENCE, 30, 90, "30s", "1m 30s", id="policy"),
        pytest.param(NO_RATIO, 120, 600, "2m 00s", "10m 00s", id="defaults"),
    ],
)
def test_silent_canary_holds_then_rolls_back(
    guards: dict[str, Any], hold_at: float, rollback_at: float, hold_after: str, rollback_after: str
) -> None:
    stream = Stream(0)
    policy = fast_policy(guards=guards)
    decisions = run([stream.started(policy=policy), *stream.requests(0, 700, canary_rate=0)])
    # The rollback's own verification (baseline traffic unchanged: recovered) is not at issue.
    decisions = [d for d in decisions if d.action is not Action.ROLLBACK_VERIFIED]

    assert summary_rows(decisions) == [
        ("hold", hold_at, 0, Phase.HELD, f"no canary telemetry for {hold_after}"),
        (
            "rollback",
            rollback_at,
            0,
            Phase.ROLLED_BACK,
            f"no canary telemetry for {rollback_after}",
        ),
    ]
    assert decisions[-1].traffic_percent == 0
    assert {r.verdict for r in decisions[-1].reasons if r.kind != "guard"} == {Verdict.NO_DATA}


def test_canary_that_speaks_again_resumes() -> None:
    stream = Stream(0)
    events = [
        stream.started(policy=fast_policy(guards=SILENCE)),
        *stream.requests(0, 50, canary_rate=0),
        *stream.requests(50, 300, rate=50),
    ]

    assert summary_rows(run(events))[:2] == [
        ("hold", 30, 0, Phase.HELD, "no canary telemetry for 30s"),
        ("advance", 55, 0, Phase.RUNNING, "hold cleared; stage 0 resumes"),
    ]


def test_silence_is_measured_from_the_last_canary_tick() -> None:
    stream = Stream(0)
    events = [
        stream.started(policy=fast_policy(guards=SILENCE)),
        *stream.requests(0, 22),
        *stream.requests(22, 300, canary_rate=0),
    ]

    # The canary was last seen in the tick that ended at 25 s.
    assert summary_rows(run(events)) == [
        ("hold", 55, 0, Phase.HELD, "no canary telemetry for 30s"),
        ("rollback", 115, 0, Phase.ROLLED_BACK, "no canary telemetry for 1m 30s"),
    ]


def test_event_time_alone_closes_ticks_when_nothing_arrives() -> None:
    stream = Stream(0)
    engine = Engine()
    engine.process(stream.started(policy=fast_policy(guards=SILENCE)))

    decisions = engine.advance_to(T0 + 200)

    assert [(d.action, seconds(d), d.phase) for d in decisions] == [
        (Action.HOLD, 30, Phase.HELD),
        (Action.ROLLBACK, 90, Phase.ROLLED_BACK),
    ]
    # Still watched for recovery after the rollback; with no traffic at all, not shown.
    (verdict,) = engine.advance_to(T0 + 90 + 300)
    assert (verdict.action, seconds(verdict)) == (Action.ROLLBACK_NOT_RECOVERING, 390)
    assert verdict.page and "recovery not shown" in verdict.summary
    assert engine.active_by_service == {}


# ---------------------------------------------------------------------- sample-ratio mismatch


def stable(*percents: float) -> dict[str, Any]:
    """A policy whose baseline cohort is all other traffic: the expected share is the stage's."""
    return fast_policy(
        baseline_mode="stable",
        stages=[{"traffic_percent": p, "min_duration": 60, "min_samples": 50} for p in percents],
    )


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # Half of the cohort requests come from a canary routed 1 %: never judged, never
        # promoted, never rolled back.
        pytest.param(
            stable(1, 50),
            [
                (
                    "hold",
                    45,
                    0,
                    Phase.HELD,
                    "sample ratio mismatch: canary share differs from routed share",
                )
            ],
            id="routed-1",
        ),
        # The same stream matches a 50 % route, which advances; at 80 % it no longer matches.
        pytest.param(
            stable(50, 80),
            [
                (
                    "advance",
                    60,
                    1,
                    Phase.RUNNING,
                    "no harm shown at stage 0 (50%); stage 1 at 80% traffic",
                ),
                (
                    "hold",
                    105,
                    1,
                    Phase.HELD,
                    "sample ratio mismatch: canary share differs from routed share",
                ),
            ],
            id="routed-50-then-80",
        ),
    ],
)
def test_sample_ratio_mismatch_holds_a_healthy_canary(
    policy: dict[str, Any], expected: list[tuple[str, float, int, Phase, str]]
) -> None:
    stream = Stream(0)
    decisions = run([stream.started(policy=policy), *stream.requests(0, 400)])

    assert summary_rows(decisions) == expected
    (guard,) = [r for r in decisions[-1].reasons if r.check == "sample_ratio"]
    assert guard.verdict is Verdict.FAIL
    assert guard.estimate == pytest.approx(0.5, abs=0.05)


# --------------------------------------------------------------------------- shared incident

INCIDENT = Cohort(error_rate=0.3, median_ms=80.0)


def shared_incident(
    seed: int, policy: dict[str, Any], start: float, end: float, until: float = 600
) -> list[Decision]:
    stream = Stream(seed)
    return run(
        [
            stream.started(policy=policy),
            *stream.requests(0, start),
            *stream.requests(start, end, baseline=INCIDENT, canary=INCIDENT),
            *stream.requests(end, until),
        ]
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shared_incident_holds_then_resumes(seed: int) -> None:
    # Both cohorts' errors (x30) and latency (x2) jump together from 120 s to 240 s; the
    # first stage is long so that the incident happens inside it. The last stage has time to
    # show the canary within tolerance, which promotion requires.
    policy = fast_policy(guards={"baseline_drift": {"cooldown": 60}})
    policy["stages"][0]["min_duration"] = 300
    policy["stages"][1]["max_duration"] = 1500
    decisions = shared_incident(seed, policy, 120, 240, until=1800)

    actions = [d.action for d in decisions]
    assert Action.ROLLBACK not in actions
    hold = decisions[1]
    assert hold.action is Action.HOLD
    assert 120 < seconds(hold) < 240
    assert hold.summary.startswith("shared degradation: baseline ")
    (drift,) = [r for r in hold.reasons if r.check == "baseline_drift"]
    assert drift.verdict is Verdict.FAIL
    # Judged again once the cool-down is over: at the same stage or, evidence ready, the next.
    resumed = decisions[2]
    assert resumed.action is Action.ADVANCE
    assert seconds(resumed) >= seconds(hold) + 60
    assert resumed.phase is Phase.RUNNING
    assert decisions[-1].phase is Phase.PROMOTED


@pytest.mark.parametrize(
    ("median_ms", "failing"), [(80.0, "error_rate"), (150.0, "error_rate, latency-p90")]
)
def test_regression_seen_during_a_shared_incident_holds_until_the_cool_down_ends(
    median_ms: float, failing: str
) -> None:
    policy = fast_policy(guards={"baseline_drift": {"cooldown": 600}})
    policy["stages"][0]["min_duration"] = 300
    stream = Stream(0)
    worse = Cohort(error_rate=0.6, median_ms=median_ms)
    engine = Engine()
    decisions = run(
        [
            stream.started(policy=policy),
            *stream.requests(0, 120),
            *stream.requests(120, 180, baseline=INCIDENT, canary=INCIDENT),
            *stream.requests(180, 300, baseline=INCIDENT, canary=worse),
        ],
        engine,
    )

    assert [(d.action, d.phase) for d in decisions[1:]] == [(Action.HOLD, Phase.HELD)]
    rollout = engine.rollouts[stream.deployment]
    assert rollout.hold_summary.endswith(f"regression seen during a shared degradation: {failing}")
    # Event time goes on without telemetry: the cool-down ends and the regression is judged.
    (rollback,) = engine.advance_to(T0 + 1000)
    assert rollback.action is Action.ROLLBACK
    assert rollback.summary == f"critical regression: {failing}"
    assert seconds(rollback) == rollout.drift.active_until - T0


def test_shared_error_incident_is_seen_with_default_guard_settings() -> None:
    # Errors only, default drift settings (delta 0.002, cool-down 120 s); 40 s of history.
    policy = fast_policy()
    policy["stages"][0]["min_duration"] = 120
    stream = Stream(0)
    decisions = run(
        [
            stream.started(policy=policy),
            *stream.requests(0, 40),
            *stream.requests(40, 400, baseline=Cohort(0.2), canary=Cohort(0.2)),
        ]
    )

    hold = decisions[1]
    assert hold.action is Action.HOLD
    assert 40 < seconds(hold) <= 100  # 12 ticks of 200 requests per cohort at 20x the errors
    assert hold.summary.startswith("shared degradation: baseline error rate")


def test_a_canary_without_any_errors_beside_a_baseline_without_any_is_promoted() -> None:
    """No ratio can be judged with no errors at all; the canary's own error-rate bound shows
    the blast radius is within the margin instead, so a perfect canary is not held forever."""
    perfect = Cohort(error_rate=0.0)
    stream = Stream(9, baseline=perfect, canary=perfect)
    policy = fast_policy(checks=[{"kind": "error_rate"}])  # the default 0.2 % margin
    decisions = run([stream.started(policy=policy), *stream.requests(0, 900, rate=80)])
    assert decisions[-1].action is Action.PROMOTE
