"""Saturation is a regression: a gauge proven far past its tolerance rolls back at once.

Gauges are non-critical by default (a failure holds, then rolls back at the stage deadline), but
a failure whose lower confidence bound also passes the gauge's ``critical_margin`` (twice the
tolerance by default: +0.10 against +0.05) is proven harm, not evidence to hold on. Under the
default policy, closed loop: the canary's share follows the decisions; one gauge sample per
second per cohort (noise 0.02).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from canarystream.contracts.decision import Action, Decision, Verdict
from canarystream.engine import Engine
from canarystream.policy.model import GaugeCheck
from tests.support.streams import Stream, merge, seconds

GAUGE = "cpu_utilization"
BASE_CPU = 0.45
TICK = 5.0


def rollout(
    seed: int,
    total_rps: float,
    shift: float,
    onset: float,
    horizon: float,
    policy: Any = None,
    verdicts: list[Verdict | None] | None = None,
) -> list[Decision]:
    """Decisions of one rollout whose canary CPU is ``shift`` higher from ``onset`` on
    (``verdicts``: filled with the gauge's verdict at every evaluation)."""
    stream = Stream(seed)
    engine = Engine()
    if verdicts is not None:
        engine.observer = lambda _rollout, _now, evidence: verdicts.extend(
            e.verdict for e in evidence if e.name == f"gauges[{GAUGE}]"
        )
    found = list(engine.process(stream.started(policy=policy)))
    share, t = found[-1].traffic_percent / 100, 0.0
    while t < horizon:
        canary_cpu = BASE_CPU + (shift if t >= onset else 0.0)
        events = merge(
            stream.requests(
                t, t + TICK, rate=total_rps * (1 - share), canary_rate=total_rps * share
            ),
            stream.gauges(t, t + TICK, GAUGE, baseline=BASE_CPU, canary=canary_cpu),
        )
        for event in events:
            for decision in engine.process(event):
                found.append(decision)
                share = decision.traffic_percent / 100
                if decision.phase.is_terminal:
                    return found
        t += TICK
    return found


@pytest.mark.parametrize("total_rps", [1.0, 50.0])
def test_cpu_15_points_over_from_the_start_is_rolled_back_within_5_minutes(
    total_rps: float,
) -> None:
    found = rollout(0, total_rps, 0.15, onset=0.0, horizon=600.0)

    last = found[-1]
    assert last.action is Action.ROLLBACK, [(seconds(d), d.summary) for d in found]
    assert seconds(last) <= 300.0
    assert last.summary == f"critical regression: gauges[{GAUGE}]"
    (reason,) = (r for r in last.reasons if r.check == f"gauges[{GAUGE}]")
    assert reason.verdict is Verdict.FAIL and reason.critical
    assert reason.lower is not None and reason.lower > 0.10
    assert "past the critical margin 0.1: rolls back at once" in reason.message
    assert all(d.action is not Action.HOLD for d in found)


@pytest.mark.parametrize("total_rps", [1.0, 50.0])
def test_cpu_15_points_over_from_minute_10_is_rolled_back_within_5_minutes_of_onset(
    total_rps: float,
) -> None:
    # Ten healthy minutes first: the restart after the onset is judged on the gauge's noise,
    # not on a spread that the step itself inflates, so it passes the margin as fast as a
    # canary that was over from the start.
    found = rollout(3, total_rps, 0.15, onset=600.0, horizon=900.0)

    last = found[-1]
    assert last.action is Action.ROLLBACK, [(seconds(d), d.summary) for d in found]
    assert 600.0 < seconds(last) <= 900.0
    assert last.summary == f"critical regression: gauges[{GAUGE}]"
    assert Action.ROLLBACK not in {d.action for d in found[:-1]}


def test_cpu_3_points_over_from_minute_5_is_not_rolled_back() -> None:
    verdicts: list[Verdict | None] = []
    found = rollout(4, 20.0, 0.03, onset=300.0, horizon=900.0, verdicts=verdicts)
    assert Action.ROLLBACK not in {d.action for d in found}
    assert Verdict.FAIL not in verdicts


def test_cpu_8_points_over_fails_but_holds_as_before() -> None:
    # Past the tolerance (+0.05) but not proven past the margin (+0.10): a non-critical
    # failure, held (and rolled back at the stage deadline unless a person approves).
    found = rollout(1, 50.0, 0.08, onset=0.0, horizon=300.0)

    holds = [d for d in found if d.action is Action.HOLD]
    assert holds and holds[0].summary == f"non-critical regression: gauges[{GAUGE}]"
    (reason,) = (r for r in holds[0].reasons if r.check == f"gauges[{GAUGE}]")
    assert reason.verdict is Verdict.FAIL and not reason.critical
    assert Action.ROLLBACK not in {d.action for d in found}


def test_a_stricter_margin_rolls_back_the_same_canary() -> None:
    policy = {"checks": [{"kind": "gauge", "critical_margin": 0.05}]}
    found = rollout(1, 50.0, 0.08, onset=0.0, horizon=600.0, policy=policy)
    assert found[-1].action is Action.ROLLBACK
    assert found[-1].summary == f"critical regression: gauges[{GAUGE}]"


def test_cpu_3_points_over_is_within_tolerance_and_not_rolled_back() -> None:
    verdicts: list[Verdict | None] = []
    found = rollout(2, 20.0, 0.03, onset=0.0, horizon=420.0, verdicts=verdicts)
    assert Action.ROLLBACK not in {d.action for d in found}
    assert Verdict.INCONCLUSIVE in verdicts and Verdict.FAIL not in verdicts


def test_noisy_healthy_gauges_are_not_rolled_back() -> None:
    # Healthy rollouts at 1 req/s, where the gauges are nearly all the evidence there is (the
    # false-rollback rate over many seeds: benchmarks/saturation.py).
    for seed in range(4):
        found = rollout(100 + seed, 1.0, 0.0, onset=0.0, horizon=480.0)
        assert Action.ROLLBACK not in {d.action for d in found}, seed


def test_the_critical_margin_defaults_to_twice_the_tolerance_and_is_not_below_it() -> None:
    assert GaugeCheck().severe_margin() == pytest.approx(0.10)
    assert GaugeCheck(tolerance=0.2, advance_tolerance=0.3).severe_margin() == pytest.approx(0.4)
    assert GaugeCheck(critical_margin=0.07).severe_margin() == 0.07
    with pytest.raises(ValidationError, match="critical_margin must be at least tolerance"):
        GaugeCheck(critical_margin=0.04)
