"""What a new rollout takes from its policy: each check's share of alpha by weight, the drift
guard's tick, and the statuses its rollback verification counts as errors."""

from __future__ import annotations

from typing import Any

import pytest

from canarystream.analysis.cohort import Slice
from canarystream.analysis.guards import BaselineDriftGuard
from canarystream.contracts.events import DeploymentStarted
from canarystream.engine.rollout import Rollout
from canarystream.policy.model import Policy
from tests.support.streams import Stream, fast_policy

LATENCY = {"kind": "latency", "quantile": 0.9, "tolerance": 0.1, "advance_tolerance": 0.3}


def _rollout(**policy: Any) -> Rollout:
    started = DeploymentStarted.model_validate(Stream(1).started(policy=fast_policy(**policy)))
    return Rollout(started, Policy.model_validate(fast_policy(**policy)))


def test_each_check_gets_the_rollouts_alpha_in_proportion_to_its_weight() -> None:
    checks = [{"kind": "error_rate", "weight": 3}, {**LATENCY, "weight": 1}]
    rollout = _rollout(alpha=0.04, checks=checks)

    assert [group.alpha for group in rollout.groups] == pytest.approx([0.03, 0.01], rel=1e-12)


@pytest.mark.parametrize("tick", [5, 10, 30])
def test_the_drift_guard_runs_at_the_policys_tick(tick: int) -> None:
    rollout = _rollout(tick=tick)
    config = rollout.policy.guards.baseline_drift

    assert rollout.drift.to_state() == BaselineDriftGuard(config, float(tick)).to_state()
    if tick != 5:  # the guard's half-life and warm-up are counted in ticks
        assert rollout.drift.to_state() != BaselineDriftGuard(config, 5.0).to_state()


def _errors_counted(rollout: Rollout, statuses: list[int]) -> int:
    requests = Slice()
    for status in statuses:
        requests.add(40.0, status)
    rollout.recovery.fold_reference(requests)
    return rollout.recovery.reference.errors


def test_without_an_error_check_a_rollbacks_verification_counts_5xx_as_errors() -> None:
    rollout = _rollout(checks=[LATENCY])

    assert _errors_counted(rollout, [200, 429, 499, 500, 503, 599]) == 3


def test_the_error_checks_statuses_are_those_the_verification_counts() -> None:
    checks = [{"kind": "error_rate", "error_statuses": "429,500-599"}, LATENCY]
    rollout = _rollout(checks=checks)

    assert _errors_counted(rollout, [200, 429, 499, 500, 503, 599]) == 4
