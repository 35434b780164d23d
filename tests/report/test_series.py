"""The report's series: the engine's own evidence, recorded without changing a decision."""

from __future__ import annotations

from pathlib import Path

import pytest

from canarystream.contracts.decision import Action, Decision
from canarystream.engine import Engine
from canarystream.replay import replay_files
from canarystream.report import SeriesRecorder, record_files
from canarystream.report.series import RolloutSeries


def _replayed(path: Path) -> tuple[list[Decision], Engine]:
    engine = Engine()
    decisions: list[Decision] = []
    replay_files([path], engine=engine, on_decision=decisions.append)
    return decisions, engine


@pytest.fixture(scope="module")
def plain(recorded: Path) -> tuple[list[Decision], Engine]:
    return _replayed(recorded)


@pytest.fixture(scope="module")
def observed(recorded: Path) -> tuple[list[Decision], Engine, SeriesRecorder]:
    engine = Engine()
    decisions: list[Decision] = []
    _, recorder = record_files([recorded], engine, on_decision=decisions.append)
    return decisions, engine, recorder


def test_recording_changes_no_decision_and_no_state(
    plain: tuple[list[Decision], Engine],
    observed: tuple[list[Decision], Engine, SeriesRecorder],
) -> None:
    decisions, engine = plain
    recorded_decisions, recorded_engine, recorder = observed
    assert recorder.failures == 0
    assert [d.model_dump() for d in recorded_decisions] == [d.model_dump() for d in decisions]
    assert {a.action for a in decisions} >= {Action.ADVANCE, Action.ROLLBACK}
    assert recorded_engine.rollouts.keys() == engine.rollouts.keys()
    for deployment, rollout in engine.rollouts.items():
        assert recorded_engine.rollouts[deployment].to_state() == rollout.to_state()
    assert recorded_engine.observer is None  # detached after the run


def test_every_decision_is_recorded_once_in_order(
    observed: tuple[list[Decision], Engine, SeriesRecorder],
) -> None:
    decisions, _, recorder = observed
    by_rollout = {s.deployment: s for s in recorder.rollouts()}
    assert by_rollout.keys() == {d.deployment for d in decisions}
    for deployment, series in by_rollout.items():
        assert series.decisions == [d for d in decisions if d.deployment == deployment]
        assert series.stages == [1.0, 5.0, 10.0, 25.0, 50.0]


def test_the_series_are_the_evidence_each_decision_was_taken_on(
    observed: tuple[list[Decision], Engine, SeriesRecorder],
) -> None:
    """At an evaluated tick, every check's point holds the numbers of the decision's reason."""
    _, _, recorder = observed
    compared = 0
    for series in recorder.rollouts():
        for decision in series.decisions[1:]:  # the start is decided outside an evaluation
            if decision.action is Action.ROLLBACK_VERIFIED:
                continue  # the recovery watch's reasons, not the checks'
            for reason in decision.reasons:
                check = series.checks.get(reason.check)
                if check is None:  # a guard
                    continue
                (point,) = [p for p in check.points if p.ts == decision.ts]
                assert (point.verdict or "no_data") == reason.verdict.value
                assert point.estimate == reason.estimate
                assert point.lower == reason.lower
                assert point.tolerance == reason.tolerance
                assert point.bound == reason.advance_tolerance
                # Tested for a PASS: the same bound (a latency quantile's is on another scale,
                # an exceedance ratio, and is not drawn).
                if reason.upper is not None and reason.kind != "latency":
                    assert point.upper == reason.upper
                compared += 1
    assert compared >= 10


def test_ticks_follow_the_routed_share_and_stages(
    observed: tuple[list[Decision], Engine, SeriesRecorder],
) -> None:
    _, _, recorder = observed
    series = next(s for s in recorder.rollouts() if "healthy" in s.deployment)
    times = [t.ts for t in series.ticks]
    assert times == sorted(times) and len(times) > 100
    assert {t.stage for t in series.ticks} >= {0, 1, 2}
    for tick in series.ticks:
        seen = tick.canary_requests + tick.baseline_requests
        if tick.ts - series.started_at > 60 and seen >= 50 and tick.phase == "running":
            share = 100.0 * tick.canary_requests / seen
            assert abs(share - tick.traffic_percent) < 12, tick


def test_the_upper_bound_is_shown_before_it_is_tested(
    observed: tuple[list[Decision], Engine, SeriesRecorder],
) -> None:
    """Between a stage's start and its readiness no PASS is tested, yet the chart has a band."""
    _, _, recorder = observed
    series = next(s for s in recorder.rollouts() if "errors" in s.deployment)
    points = series.checks["error_rate"].points
    assert any(p.upper is not None and p.verdict == "inconclusive" for p in points)
    for p in points:
        if p.upper is not None and p.lower is not None:
            assert p.lower <= (p.estimate if p.estimate is not None else p.lower) <= p.upper


def _series(recorder: SeriesRecorder) -> RolloutSeries:
    (series,) = recorder.rollouts()
    return series


def test_a_bounded_recorder_keeps_the_whole_span_coarser(recorded: Path) -> None:
    engine = Engine()
    recorder = SeriesRecorder(max_points=40, max_rollouts=1).attach(engine)
    replay_files([recorded], engine=engine, on_decision=recorder.decided)
    series = _series(recorder)  # one rollout kept: the one recorded last
    assert len(series.ticks) <= 40 and series.thinned >= 1
    assert all(len(c.points) <= 40 for c in series.checks.values())
    assert series.ticks[-1].ts >= series.started_at + 1000
    assert recorder.failures == 0


def test_a_time_applied_again_replaces_what_was_recorded(recorded: Path) -> None:
    """A driver that applies earlier events again (a restart from a checkpoint) never shows
    a tick twice."""
    engine = Engine()
    recorder = SeriesRecorder().attach(engine)
    replay_files([recorded], engine=engine, on_decision=recorder.decided)
    before = {s.deployment: len(s.ticks) for s in recorder.rollouts()}
    again = Engine()
    again.observer = recorder.observe
    replay_files([recorded], engine=again, on_decision=recorder.decided)
    for series in recorder.rollouts():
        times = [t.ts for t in series.ticks]
        assert len(times) == len(set(times)) == before[series.deployment]
        assert [d.seq for d in series.decisions] == list(range(len(series.decisions)))


def test_a_failing_recorder_never_refuses_an_event(
    recorded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("broken")

    recorder = SeriesRecorder()
    monkeypatch.setattr(recorder, "_observe", broken)
    engine = Engine()
    recorder.attach(engine)
    result = replay_files([recorded], engine=engine)
    assert not result.rejected and recorder.failures > 100


def test_the_engine_observer_reaches_rollouts_known_and_adopted(recorded: Path) -> None:
    seen: list[str] = []
    engine = Engine()
    replay_files([recorded], engine=engine)
    engine.observer = lambda rollout, now, evidence: seen.append(rollout.deployment)
    assert all(r.observer is not None for r in engine.rollouts.values())
    engine.advance_to(max(r.clock for r in engine.rollouts.values()) + 600)
    assert seen  # the rollout still live was evaluated on the way
    engine.observer = None
    assert all("observer" not in vars(r) for r in engine.rollouts.values())
    restored = Engine()
    restored.observer = lambda rollout, now, evidence: None
    restored.adopt(type(r).from_state(r.to_state()) for r in engine.rollouts.values())
    assert all(r.observer is restored.observer for r in restored.rollouts.values())
