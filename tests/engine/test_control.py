"""Manual control: pause, resume, abort, approval gates, and silence after a terminal phase."""

from __future__ import annotations

from typing import Any

import pytest

from canarystream.contracts.decision import Action, Phase, Verdict
from canarystream.engine import Engine
from canarystream.errors import ContractError
from tests.support.streams import DEPLOYMENT, Cohort, Stream, fast_policy, merge, run, seconds

Row = tuple[str, float, int, float, Phase, str]  # action, s, stage, traffic %, phase, summary


def walk(
    controls: list[tuple[str, float]], *, policy: dict[str, Any] | None = None, until: float = 300
) -> list[Row]:
    """Decisions after the first one for a healthy canary and the given control events."""
    stream = Stream(0)
    events = merge(
        [stream.started(policy=policy or fast_policy())],
        stream.requests(0, until, rate=50),
        [stream.control(kind, at) for kind, at in controls],
    )
    # A promotion's guarantee clause is tests/engine/test_guarantee.py's subject, not this one.
    return [
        (d.action.value, seconds(d), d.stage, d.traffic_percent, d.phase, _cause(d.summary))
        for d in run(events)[1:]
    ]


def _cause(summary: str) -> str:
    return summary.split("; guarantee at ", maxsplit=1)[0]


HEALTHY: list[Row] = [
    (
        "advance",
        60,
        1,
        50,
        Phase.RUNNING,
        "no harm shown at stage 0 (10%); stage 1 at 50% traffic",
    ),
    ("promote", 120, 1, 100, Phase.PROMOTED, "no harm shown at stage 1 (50%); promoted"),
]
PAUSED: Row = ("hold", 12.5, 0, 10, Phase.HELD, "paused by alice")
RESUMED: Row = ("advance", 32.5, 0, 10, Phase.RUNNING, "hold cleared; stage 0 resumes")
ABORTED: Row = ("rollback", 42.5, 0, 0, Phase.ABORTED, "aborted by alice")


@pytest.mark.parametrize(
    ("controls", "expected"),
    [
        pytest.param([], HEALTHY, id="no-control"),
        # A pause holds however good the evidence, for as long as it lasts.
        pytest.param([("paused", 12.5)], [PAUSED], id="pause"),
        # Resumed before the stage is ready: running again at the same stage and traffic.
        pytest.param([("paused", 12.5), ("resumed", 32.5)], [PAUSED, RESUMED, *HEALTHY]),
        # Resumed after the stage is ready: the stage is left at once; the next stage starts
        # at the resume and is ready 60 s later, at the first tick boundary.
        pytest.param(
            [("paused", 12.5), ("resumed", 92.5)],
            [
                PAUSED,
                (
                    "advance",
                    92.5,
                    1,
                    50,
                    Phase.RUNNING,
                    "no harm shown at stage 0 (10%); stage 1 at 50% traffic",
                ),
                (
                    "promote",
                    155,
                    1,
                    100,
                    Phase.PROMOTED,
                    "no harm shown at stage 1 (50%); promoted",
                ),
            ],
            id="resume-when-ready",
        ),
        # Pausing twice, or resuming what is not paused, decides nothing new.
        pytest.param(
            [("paused", 12.5), ("paused", 20.5), ("resumed", 32.5), ("resumed", 40.5)],
            [PAUSED, RESUMED, *HEALTHY],
            id="repeated",
        ),
        pytest.param([("resumed", 12.5)], HEALTHY, id="resume-unpaused"),
        pytest.param([("aborted", 42.5)], [ABORTED], id="abort"),
        pytest.param(
            [("paused", 12.5), ("aborted", 42.5)],
            [PAUSED, ABORTED],
            id="abort-while-paused",
        ),
        # Nothing moves a rollout after a terminal decision.
        pytest.param(
            [
                ("aborted", 42.5),
                ("paused", 50.5),
                ("resumed", 60.5),
                ("approved", 70.5),
                ("aborted", 80.5),
            ],
            [ABORTED],
            id="after-abort",
        ),
        pytest.param(
            [("paused", 130.5), ("resumed", 140.5), ("approved", 150.5), ("aborted", 160.5)],
            HEALTHY,
            id="after-promote",
        ),
    ],
)
def test_manual_control(controls: list[tuple[str, float]], expected: list[Row]) -> None:
    assert walk(controls) == expected


@pytest.mark.parametrize(
    ("reason", "summary"),
    [("pager went off", "aborted by carol: pager went off"), (None, "aborted by carol")],
)
def test_abort_decision_restores_the_baseline_and_names_the_actor(
    reason: str | None, summary: str
) -> None:
    stream = Stream(0)
    engine = Engine()
    run([stream.started(policy=fast_policy()), *stream.requests(0, 30)], engine)
    abort = stream.control("aborted", 30.5, actor="carol")
    if reason is not None:
        abort["reason"] = reason

    (decision,) = engine.process(abort)

    assert decision.action is Action.ROLLBACK
    assert (decision.phase, decision.traffic_percent, decision.seq) == (Phase.ABORTED, 0.0, 1)
    assert decision.summary == summary
    rollout = engine.rollouts[DEPLOYMENT]
    assert not rollout.is_live and rollout.recovery.watching  # still watched: is it recovering?


def test_events_after_a_terminal_phase_change_nothing() -> None:
    stream = Stream(0)
    engine = Engine()
    decisions = run(
        [stream.started(policy=fast_policy()), *stream.requests(0, 300, rate=50)], engine
    )
    assert [d.action for d in decisions] == [Action.ADVANCE, Action.ADVANCE, Action.PROMOTE]
    counted = engine.counters["telemetry_without_rollout"]
    assert counted > 0  # the requests after the promotion at 120 s

    later = merge(
        stream.requests(300, 400, rate=50, canary=Cohort(error_rate=0.5)),
        [stream.control("paused", 310.5), stream.control("resumed", 320.5)],
        [stream.control("approved", 330.5), stream.control("aborted", 340.5)],
    )
    assert run(later, engine) == []
    assert engine.advance_to(later[-1]["ts"] + 3600) == []
    requests = sum(e["type"] == "request" for e in later)
    assert engine.counters["telemetry_without_rollout"] == counted + requests
    assert engine.rollouts[DEPLOYMENT].phase is Phase.PROMOTED
    assert engine.rollouts[DEPLOYMENT].last_decision == decisions[-1]


# ----------------------------------------------------------------------------- approval

GATED = fast_policy(
    name="gated",
    stages=[
        {"traffic_percent": 10, "min_duration": 60, "min_samples": 50, "approval": True},
        {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
    ],
)
AWAITING: Row = ("hold", 60, 0, 10, Phase.HELD, "stage 0 passed; awaiting approval")


@pytest.mark.parametrize(
    ("controls", "expected"),
    [
        pytest.param([], [AWAITING], id="never-approved"),
        pytest.param(
            [("approved", 90.5)],
            [
                AWAITING,
                (
                    "advance",
                    90.5,
                    1,
                    50,
                    Phase.RUNNING,
                    "no harm shown at stage 0 (10%) and approved by alice; stage 1 at 50% traffic",
                ),
                (
                    "promote",
                    155,
                    1,
                    100,
                    Phase.PROMOTED,
                    "no harm shown at stage 1 (50%); promoted",
                ),
            ],
            id="approved-at-the-gate",
        ),
        # An approval given early lets the stage go as soon as it is ready.
        pytest.param(
            [("approved", 20.5)],
            [
                (
                    "advance",
                    60,
                    1,
                    50,
                    Phase.RUNNING,
                    "no harm shown at stage 0 (10%) and approved by alice; stage 1 at 50% traffic",
                ),
                (
                    "promote",
                    120,
                    1,
                    100,
                    Phase.PROMOTED,
                    "no harm shown at stage 1 (50%); promoted",
                ),
            ],
            id="approved-early",
        ),
        # A paused rollout stays paused when approved; the resume lets it go.
        pytest.param(
            [("paused", 80.5), ("approved", 90.5), ("resumed", 100.5)],
            [
                AWAITING,
                (
                    "advance",
                    100.5,
                    1,
                    50,
                    Phase.RUNNING,
                    "no harm shown at stage 0 (10%) and approved by alice; stage 1 at 50% traffic",
                ),
                (
                    "promote",
                    165,
                    1,
                    100,
                    Phase.PROMOTED,
                    "no harm shown at stage 1 (50%); promoted",
                ),
            ],
            id="approved-while-paused",
        ),
    ],
)
def test_approval_gate_holds_until_approved(
    controls: list[tuple[str, float]], expected: list[Row]
) -> None:
    assert walk(controls, policy=GATED) == expected


def test_approval_of_the_last_stage_promotes() -> None:
    policy = fast_policy(
        stages=[
            {"traffic_percent": 10, "min_duration": 60, "min_samples": 50},
            {"traffic_percent": 50, "min_duration": 60, "min_samples": 50, "approval": True},
        ]
    )
    rows = walk([("approved", 140.5)], policy=policy)

    assert [(action, at, phase) for action, at, _, _, phase, _ in rows] == [
        ("advance", 60, Phase.RUNNING),
        ("hold", 120, Phase.HELD),
        ("promote", 140.5, Phase.PROMOTED),
    ]
    assert rows[-1][3] == 100


def test_late_control_event_is_not_decided_in_the_past() -> None:
    stream = Stream(0)
    engine = Engine()
    decisions = run(
        [stream.started(policy=fast_policy()), *stream.requests(0, 62, rate=50)], engine
    )
    assert [(d.action, seconds(d), d.stage) for d in decisions] == [
        (Action.ADVANCE, 0, 0),
        (Action.ADVANCE, 60, 1),
    ]

    # The pause was issued at 58 s but arrives after the tick at 60 s moved to stage 1.
    try:
        (hold,) = engine.process(stream.control("paused", 58.0))
    except ContractError:
        return  # refusing a command from the past is also consistent

    assert (hold.action, hold.stage, hold.seq) == (Action.HOLD, 1, 2)
    assert hold.ts >= decisions[-1].ts


APPROVAL_POLICY = fast_policy(
    stages=[
        {"traffic_percent": 10, "min_duration": 60, "min_samples": 50, "approval": True},
        {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
    ]
)


@pytest.mark.parametrize(
    ("kind", "policy", "expected"),
    [
        pytest.param("aborted", fast_policy(), ["advance", "rollback"], id="abort"),
        pytest.param("paused", fast_policy(), ["advance", "hold"], id="pause"),
        # Nothing to resume: the resume changes nothing, its clock move advanced the stage.
        pytest.param("resumed", fast_policy(), ["advance"], id="resume"),
        # The stage passed at 60 s waits for approval (a hold); the approval then advances it.
        pytest.param("approved", APPROVAL_POLICY, ["hold", "advance"], id="approve"),
    ],
)
def test_a_command_returns_what_its_clock_move_decided_before_its_own_decision(
    kind: str, policy: dict[str, Any], expected: list[str]
) -> None:
    # Requests stop just before the stage's end: the command is what moves the clock past it.
    stream = Stream(0)
    engine = Engine()
    engine.process(stream.started(policy=policy))
    for event in stream.requests(0, 60, rate=50):
        engine.process(event)
    assert engine.rollouts[DEPLOYMENT].clock < 60 + stream.started()["ts"]
    decisions = engine.process(stream.control(kind, 60.5))
    assert [d.action.value for d in decisions] == expected


def test_an_abort_states_the_evidence_of_the_stage_it_ends_as_it_stood() -> None:
    # Stage 0 passed and awaits approval (ready, no harm shown); the abort's reasons say so:
    # they are judged at the stage's own readiness, not as if it were not ready.
    policy = fast_policy(
        stages=[
            {"traffic_percent": 10, "min_duration": 60, "min_samples": 50, "approval": True},
            {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
        ]
    )
    stream = Stream(0)
    events = merge(
        [stream.started(policy=policy), stream.control("aborted", 90)], stream.requests(0, 100)
    )
    hold, abort = run(events)[1:]
    assert (hold.action, seconds(hold), abort.action, seconds(abort)) == (
        Action.HOLD,
        60,
        Action.ROLLBACK,
        90,
    )
    checks = {r.check: r.verdict for r in abort.reasons if r.kind != "guard"}
    assert checks == {"error_rate": Verdict.PASS, "latency-p90": Verdict.PASS}
