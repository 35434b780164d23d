"""Silence of the canary is counted from the start of its current stage, not of the rollout."""

from __future__ import annotations

from canarystream.contracts.decision import Action, Phase
from tests.support.streams import Stream, fast_policy, run, seconds

# A silent canary also breaks the sample ratio; that guard is off to watch the no-data one.
GUARDS = {"no_data": {"hold_after": 30, "rollback_after": 90}, "sample_ratio": {"enabled": False}}
# Stage 0 may be left on approval alone after 20 s: too soon for the silence to hold it.
POLICY = fast_policy(
    guards=GUARDS,
    stages=[
        {"traffic_percent": 10, "min_duration": 20, "min_samples": 0},
        {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
    ],
)


def test_a_stage_entered_during_silence_counts_it_from_its_own_start() -> None:
    stream = Stream(0)
    events = [
        stream.started(policy=POLICY),
        stream.control("approved", 2.0),
        *stream.requests(0, 150, rate=10, canary_rate=0),
    ]
    decisions = [d for d in run(events) if d.action is not Action.ROLLBACK_VERIFIED]

    rows = [(d.action, seconds(d), d.stage, d.phase, d.summary) for d in decisions[1:]]
    assert rows == [
        (Action.ADVANCE, 20, 1, Phase.RUNNING, "stage 0 approved by alice; stage 1 at 50% traffic"),
        # Silent since the rollout began, but in stage 1 only since 20 s.
        (Action.HOLD, 50, 1, Phase.HELD, "no canary telemetry for 30s"),
        (Action.ROLLBACK, 110, 1, Phase.ROLLED_BACK, "no canary telemetry for 1m 30s"),
    ]


def test_without_the_stage_change_silence_counts_from_the_rollout_start() -> None:
    stream = Stream(0)
    events = [stream.started(policy=POLICY), *stream.requests(0, 150, rate=10, canary_rate=0)]
    decisions = [d for d in run(events) if d.action is not Action.ROLLBACK_VERIFIED]

    assert [(d.action, seconds(d), d.stage) for d in decisions[1:]] == [
        (Action.HOLD, 30, 0),
        (Action.ROLLBACK, 90, 0),
    ]
