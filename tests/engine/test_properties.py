"""Invariants of the decision stream under arbitrary control events and canary behaviour."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canarystream.contracts.decision import Action, Decision, Phase, decision_id_for
from canarystream.engine import Engine
from tests.support.streams import T0, Cohort, Stream, fast_policy, merge, restarted, run

PERCENTS = (5.0, 20.0, 50.0)
HORIZON = 200.0
# Aborts are drawn less often so that most rollouts end by a decision of the engine's own.
CONTROL_KINDS = ("paused", "resumed", "approved") * 2 + ("aborted",)

CANARIES: dict[str, Cohort | None] = {
    "healthy": Cohort(),
    "errors": Cohort(error_rate=0.1),
    "slow": Cohort(median_ms=60.0),
    "silent": None,
}


@dataclass(frozen=True)
class Scenario:
    """One rollout: policy knobs, what the canary does from when, and the control events."""

    seed: int
    gate: int | None  # index of the stage that needs an approval
    critical: bool
    canary: str
    change_at: float
    controls: tuple[tuple[str, float], ...]

    def policy(self) -> dict[str, Any]:
        return fast_policy(
            name="property",
            stages=[
                {
                    "traffic_percent": percent,
                    "min_duration": 30,
                    "max_duration": 60,
                    "min_samples": 30,
                    "approval": index == self.gate,
                }
                for index, percent in enumerate(PERCENTS)
            ],
            checks=[
                {"kind": "error_rate", "critical": self.critical, "advance_abs_margin": 0.01},
                {"kind": "latency", "quantile": 0.9, "tolerance": 0.1, "advance_tolerance": 0.3},
            ],
            guards={"no_data": {"hold_after": 20, "rollback_after": 60}},
        )

    def events(self) -> list[dict[str, Any]]:
        stream = Stream(self.seed)
        changed = CANARIES[self.canary]
        return merge(
            [stream.started(policy=self.policy())],
            stream.requests(0, self.change_at, rate=20),
            stream.requests(
                self.change_at,
                HORIZON,
                rate=20,
                canary=changed,
                canary_rate=0 if changed is None else None,
            ),
            [stream.control(kind, at) for kind, at in self.controls],
        )


scenarios = st.builds(
    Scenario,
    seed=st.integers(0, 2**16),
    gate=st.none() | st.integers(0, len(PERCENTS) - 1),
    critical=st.booleans(),
    canary=st.sampled_from(sorted(CANARIES)),
    change_at=st.floats(0.0, HORIZON),
    controls=st.lists(
        st.tuples(st.sampled_from(CONTROL_KINDS), st.floats(0.0, HORIZON)), max_size=8
    ).map(tuple),
)


def paused_intervals(controls: tuple[tuple[str, float], ...]) -> list[tuple[float, float]]:
    """Event-time intervals during which a pause was in force."""
    intervals: list[tuple[float, float]] = []
    since: float | None = None
    # Order as the stream does: by the event's absolute ts (offsets below float resolution at
    # T0 collapse onto the same ts), ties in the scenario's order.
    for kind, at in sorted(controls, key=lambda c: T0 + c[1]):
        if kind == "paused" and since is None:
            since = at
        elif kind == "resumed" and since is not None:
            intervals.append((since, at))
            since = None
    if since is not None:
        intervals.append((since, math.inf))
    return intervals


def check_invariants(scenario: Scenario, decisions: list[Decision]) -> None:
    allowed_traffic = {0.0, 100.0, *PERCENTS}
    last_stage = len(PERCENTS) - 1

    assert decisions, "the start is always decided"
    first = decisions[0]
    assert (first.action, first.stage, first.ts) == (Action.ADVANCE, 0, T0)
    assert [d.seq for d in decisions] == list(range(len(decisions)))
    # After a rollback the engine keeps watching: one verification verdict may follow it.
    verdicts = [
        d
        for d in decisions
        if d.action in (Action.ROLLBACK_VERIFIED, Action.ROLLBACK_NOT_RECOVERING)
    ]
    assert len(verdicts) <= 1
    if verdicts:
        assert decisions[-1] is verdicts[0] and decisions[-2].action is Action.ROLLBACK
        assert verdicts[0].traffic_percent == 0.0 and verdicts[0].phase == decisions[-2].phase
        decisions = decisions[:-1]
    terminal = [i for i, d in enumerate(decisions) if d.phase.is_terminal]
    assert terminal in ([], [len(decisions) - 1]), "at most one terminal decision, and last"

    for d in decisions:
        assert d.decision_id == decision_id_for(d.deployment, d.seq, d.action.value)
        assert d.traffic_percent in allowed_traffic
        if d.action is Action.ADVANCE:
            assert (d.phase, d.traffic_percent) == (Phase.RUNNING, PERCENTS[d.stage])
        elif d.action is Action.HOLD:
            assert (d.phase, d.traffic_percent) == (Phase.HELD, PERCENTS[d.stage])
        elif d.action is Action.PROMOTE:
            assert (d.phase, d.traffic_percent, d.stage) == (Phase.PROMOTED, 100.0, last_stage)
        else:
            assert d.phase in (Phase.ROLLED_BACK, Phase.ABORTED)
            assert d.traffic_percent == 0.0

    for prev, d in pairwise(decisions):
        assert d.ts >= prev.ts
        assert d.stage in (prev.stage, prev.stage + 1)
        if d.stage == prev.stage + 1:
            assert d.action is Action.ADVANCE
        elif d.action is Action.ADVANCE:
            assert prev.action is Action.HOLD, "the same stage resumes only after a hold"
        if d.action is Action.HOLD:
            assert prev.action is not Action.HOLD, "a held rollout is not held again"

    # An abort is obeyed at once unless the rollout had already ended.
    aborts = sorted(T0 + at for kind, at in scenario.controls if kind == "aborted")
    end = decisions[-1]
    if end.phase is Phase.ABORTED:
        assert aborts
        assert end.ts == aborts[0]
        assert end.summary == "aborted by alice"
    if aborts:
        assert end.phase.is_terminal
        assert end.ts <= aborts[0]

    # While paused, nothing goes forward.
    for paused, resumed in paused_intervals(scenario.controls):
        for d in decisions:
            if T0 + paused < d.ts < T0 + resumed:
                assert d.action not in (Action.ADVANCE, Action.PROMOTE), (paused, resumed, d)

    # A gated stage is left only after an approval given while in it.
    if scenario.gate is not None:
        approvals = [T0 + at for kind, at in scenario.controls if kind == "approved"]
        entered = T0 if scenario.gate == 0 else None
        for prev, d in pairwise(decisions):
            if d.stage == scenario.gate and prev.stage == scenario.gate - 1:
                entered = d.ts
            leaves = prev.stage == scenario.gate and (
                d.stage == scenario.gate + 1 or d.action is Action.PROMOTE
            )
            if leaves:
                assert entered is not None
                assert any(entered <= a <= d.ts for a in approvals), (entered, d.ts, approvals)


@settings(max_examples=60, deadline=None)
@given(scenario=scenarios)
def test_decision_stream_invariants(scenario: Scenario) -> None:
    engine = Engine()
    decisions = run(scenario.events(), engine)
    decisions += engine.advance_to(T0 + HORIZON + 600)  # let every pending deadline pass

    check_invariants(scenario, decisions)
    rollout = engine.rollouts[decisions[0].deployment]
    assert rollout.phase is decisions[-1].phase
    assert rollout.last_decision == decisions[-1]


@settings(max_examples=20, deadline=None)
@given(scenario=scenarios, cut=st.floats(0.0, 1.0))
def test_snapshot_at_any_point_gives_the_same_decisions(scenario: Scenario, cut: float) -> None:
    events = scenario.events()
    reference = [d.model_dump() for d in run(events)]
    position = round(cut * len(events))
    engine = Engine()
    decisions = run(events[:position], engine)
    decisions += run(events[position:], restarted(engine))

    assert [d.model_dump() for d in decisions] == reference


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda ds: [ds[0], ds[2]], id="seq-gap"),
        pytest.param(lambda ds: [*ds, ds[-1].model_copy(update={"seq": len(ds)})], id="after-end"),
        pytest.param(
            lambda ds: [ds[0], ds[1].model_copy(update={"traffic_percent": 33.0}), *ds[2:]],
            id="traffic",
        ),
        pytest.param(
            lambda ds: [ds[0], ds[1].model_copy(update={"ts": T0 - 1}), *ds[2:]], id="ts-back"
        ),
    ],
)
def test_invariant_checker_rejects_broken_streams(
    corrupt: Callable[[list[Decision]], list[Decision]],
) -> None:
    # The checker must be able to fail, or the property tests above prove nothing.
    scenario = Scenario(0, None, True, "healthy", 0.0, ())
    decisions = run(scenario.events())
    assert [d.action for d in decisions] == [Action.ADVANCE] * 3 + [Action.PROMOTE]
    check_invariants(scenario, decisions)

    with pytest.raises(AssertionError):
        check_invariants(scenario, corrupt(decisions))
