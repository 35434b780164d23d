"""A rollout held this very tick keeps why it is held, and a restart then reads it back."""

from __future__ import annotations

from canarystream.contracts.decision import Action, Phase
from canarystream.engine import Engine
from tests.support.streams import SERVICE, Stream, fast_policy, restarted

# A silent canary holds after 30 s (the sample-ratio guard off so silence alone holds it).
POLICY = fast_policy(
    guards={"no_data": {"hold_after": 30, "rollback_after": 90}, "sample_ratio": {"enabled": False}}
)


def test_the_hold_summary_is_kept_from_the_tick_that_held() -> None:
    stream = Stream(0)
    engine = Engine()
    held = []
    for event in [stream.started(policy=POLICY), *stream.requests(0, 60, rate=10, canary_rate=0)]:
        held = [d for d in engine.process(event) if d.action is Action.HOLD]
        if held:
            break
    (decision,) = held
    (rollout,) = engine.rollouts_of(SERVICE)

    assert rollout.phase is Phase.HELD
    assert rollout.hold_summary == decision.summary == "no canary telemetry for 30s"
    (again,) = restarted(engine).rollouts_of(SERVICE)
    assert (again.phase, again.hold_summary) == (Phase.HELD, decision.summary)


def test_a_cleared_hold_leaves_no_summary_and_a_restart_reads_it_back() -> None:
    stream = Stream(0)
    engine = Engine()
    events = [
        stream.started(policy=POLICY),
        *stream.requests(0, 40, rate=10, canary_rate=0),
        *stream.requests(40, 60, rate=10),
    ]
    cleared = []
    for event in events:
        cleared = [d for d in engine.process(event) if d.summary.startswith("hold cleared")]
        if cleared:
            break
    (rollout,) = engine.rollouts_of(SERVICE)

    assert cleared and rollout.phase is Phase.RUNNING
    assert rollout.hold_summary == ""
    (again,) = restarted(engine).rollouts_of(SERVICE)
    assert (again.phase, again.hold_summary) == (Phase.RUNNING, "")
