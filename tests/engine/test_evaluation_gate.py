"""What each evaluation asks the checks: the gate (readiness, next share, promotion, alpha).

The engine's observer sees every unit's evidence at every evaluation, and each evidence
carries the gate it was asked against; these tests read the gates of exact streams tick by
tick, so the readiness boundaries (minimum duration, minimum samples of the smaller cohort)
and the share and confidence of each stage are pinned to the second.
"""

from __future__ import annotations

from typing import Any

import pytest

from canarystream.analysis.checks import Evidence, Gate
from canarystream.engine import Engine
from canarystream.engine.rollout import Rollout
from tests.support.streams import T0, Stream, fast_policy, run

Seen = tuple[float, int, Gate]  # seconds after T0, stage, the gate of that evaluation


def gates(events: list[dict[str, Any]], until: float) -> list[Seen]:
    """The gate of every evaluation (one per tick) up to ``until`` seconds after T0, with its
    time and the stage it judged."""
    seen: list[Seen] = []

    def observe(rollout: Rollout, now: float, evidence: list[Evidence]) -> None:
        (gate,) = {found.gate for found in evidence}  # one gate per evaluation
        seen.append((now - T0, rollout.stage, gate))

    engine = Engine()
    engine.observer = observe
    run(events, engine)
    engine.advance_to(T0 + until)
    return seen


THREE_STAGES = fast_policy(
    advance_confidence=0.8,
    promote_confidence=0.95,
    stages=[
        {"traffic_percent": 10, "min_duration": 60, "min_samples": 0},
        {"traffic_percent": 25, "min_duration": 60, "min_samples": 0},
        {"traffic_percent": 60, "min_duration": 60, "min_samples": 0},
    ],
)


def test_each_stage_is_asked_for_the_next_share_and_the_last_for_promotion() -> None:
    stream = Stream(0)
    events = [stream.started(policy=THREE_STAGES), *stream.requests(0, 200, rate=40)]
    by_stage = {stage: gate for _, stage, gate in gates(events, 200)}

    # Stages 0 and 1 would next give the canary 25 % and 60 %; the last stage is a promotion,
    # asked at the promotion confidence, with the whole traffic next.
    assert sorted(by_stage) == [0, 1, 2]
    for stage, share, promoting, alpha in [(0, 0.25, False, 0.2), (1, 0.6, False, 0.2)]:
        gate = by_stage[stage]
        assert (gate.next_share, gate.promoting) == (share, promoting)
        assert gate.alpha == pytest.approx(alpha, rel=1e-12)
    last = by_stage[2]
    assert (last.next_share, last.promoting) == (1.0, True)
    assert last.alpha == pytest.approx(0.05, rel=1e-12)


def test_a_stage_is_ready_at_its_minimum_duration_to_the_second() -> None:
    stream = Stream(0)
    policy = fast_policy(
        stages=[
            {"traffic_percent": 10, "min_duration": 20, "min_samples": 0},
            {"traffic_percent": 50, "min_duration": 60, "min_samples": 0},
        ]
    )
    events = [stream.started(policy=policy), *stream.requests(0, 20, rate=40)]
    seen = [(at, stage, gate.ready) for at, stage, gate in gates(events, 20)]

    assert seen == [(5, 0, False), (10, 0, False), (15, 0, False), (20, 0, True)]


def test_a_stage_is_ready_once_its_smaller_cohort_has_the_minimum_samples() -> None:
    # 20 baseline and 10 canary requests a second, exactly: the canary reaches 100 at 10 s,
    # the baseline at 5 s. Readiness waits for the smaller cohort, and holds at exactly 100.
    stream = Stream(0)
    policy = fast_policy(
        guards={"sample_ratio": {"enabled": False}},
        stages=[
            {"traffic_percent": 10, "min_duration": 5, "min_samples": 100},
            {"traffic_percent": 50, "min_duration": 60, "min_samples": 0},
        ],
    )
    events = [stream.started(policy=policy), *stream.requests(0, 10, rate=20, canary_rate=10)]
    seen = [(at, stage, gate.ready) for at, stage, gate in gates(events, 10)]

    assert seen == [(5, 0, False), (10, 0, True)]
