"""Evidence that leans toward harm gets no blast-radius pass (error ratios).

At a small stage the blast-radius margin lets a check pass whose ratio bound is still wide.
It may do so only when nothing points to a regression: the change detector below the
gate's level, the e-process against the tolerance below :data:`LEANING_E`, and, when that
e-process is above 1, the estimate within the bound in force. Otherwise the verdict is
inconclusive, it says why, and the low-traffic rule does not move the rollout on either.
The e-values are recomputed from the binomial likelihood (:class:`MixtureOracle`).
"""

from __future__ import annotations

import math

import pytest

from canarystream.analysis.checks import CheckGroup, Gate, Tick, Unit
from canarystream.analysis.checks.base import LEANING_E, samples_to_reach
from canarystream.analysis.cohort import CohortBucket
from canarystream.contracts.decision import Verdict
from canarystream.engine.lowtraffic import consider
from canarystream.policy.model import ErrorRateCheck, LowTrafficRule
from canarystream.readable import times
from tests.support.mixture import MixtureOracle

REQUESTS = 1000
STAGE_0 = Gate(ready=True, next_share=0.05, promoting=False, alpha=0.1)  # 1 % → 5 %


def _bucket(errors: int) -> CohortBucket:
    bucket = CohortBucket()
    for index in range(REQUESTS):
        bucket.requests.add(40.0, 503 if index < errors else 200)
    return bucket


def _unit(canary_errors: int, baseline_errors: int, ticks: int) -> tuple[Unit, MixtureOracle]:
    """An error-rate unit after ``ticks`` ticks of 1,000 requests per cohort, with a margin
    (1 % of all traffic) that passes every bound below ×21 at 5 %, and its oracle."""
    group = CheckGroup(ErrorRateCheck(advance_abs_margin=0.01), alpha=0.05, trackers={})
    (unit,) = group.units.values()
    grid = unit.test.grid  # type: ignore[attr-defined]
    oracle = MixtureOracle(grid.psi, grid.log_prior)
    for tick in range(ticks):
        now = 5.0 * (tick + 1)
        group.update(Tick(_bucket(canary_errors), _bucket(baseline_errors), {}, now=now))
        oracle.add(canary_errors, baseline_errors, REQUESTS, REQUESTS)
    return unit, oracle


@pytest.mark.parametrize(
    ("canary_errors", "ticks", "clause"),
    [(18, 1, "estimate"), (20, 1, "against"), (22, 2, "against"), (30, 1, "detector")],
)
def test_errors_leaning_toward_harm_get_no_blast_radius_pass(
    canary_errors: int, ticks: int, clause: str
) -> None:
    unit, oracle = _unit(canary_errors, 10, ticks)
    found = unit.evaluate(STAGE_0)
    estimate = canary_errors / 10
    against, detector = oracle.e_value(1.1), oracle.detector(1.1)
    assert found.upper is not None and found.upper > 1.5  # the ratio bound alone: not shown
    assert (found.upper - 1.0) * (10 / REQUESTS) * 0.05 <= 0.01  # the margin alone would pass
    assert detector < 20.0  # leaning, not failing (the check fails at 1 / 0.05)
    against_text = f"evidence against the tolerance at e = {against:.3g}"
    expected = {
        "detector": f"change detector at e = {detector:.3g} ≥ 10",
        "against": against_text,
        "estimate": f"estimate {times(estimate)} beyond ×1.50 with {against_text}",
    }[clause]

    assert found.verdict is Verdict.INCONCLUSIVE
    assert found.leaning == expected
    assert found.reason().message.endswith(
        f"; leans toward harm ({expected}): the blast-radius margin does not apply"
    )
    assert "no harm by blast radius" not in found.reason().message


@pytest.mark.parametrize(("canary_errors", "ticks"), [(10, 1), (16, 1), (14, 8), (12, 4)])
def test_errors_with_nothing_pointing_to_a_regression_pass_on_the_margin(
    canary_errors: int, ticks: int
) -> None:
    unit, oracle = _unit(canary_errors, 10, ticks)
    found = unit.evaluate(STAGE_0)

    assert oracle.e_value(1.1) < LEANING_E
    assert oracle.e_value(1.1) <= 1.0 or canary_errors / 10 <= 1.5
    assert found.upper is not None and found.upper > 1.5
    assert (found.verdict, found.leaning) == (Verdict.PASS, None)
    assert "no harm by blast radius" in found.reason().message


def test_leaning_evidence_needs_the_samples_to_bring_the_bound_itself_within_tolerance() -> None:
    # 14 against 10 errors per tick for 16 ticks: the estimate (×1.4) is within ×1.5, but the
    # evidence against ×1.1 has passed LEANING_E; the margin no longer counts in what it needs.
    unit, oracle = _unit(14, 10, 16)
    found = unit.evaluate(STAGE_0)
    assert oracle.e_value(1.1) >= LEANING_E
    assert found.upper is not None

    assert found.verdict is Verdict.INCONCLUSIVE
    assert found.more == samples_to_reach(
        16 * REQUESTS, math.log(1.4), math.log(found.upper), math.log(1.5)
    )
    assert found.more is not None and found.more > 16 * REQUESTS


def test_the_low_traffic_rule_does_not_pass_over_evidence_that_leans() -> None:
    unit, _ = _unit(18, 10, 1)
    found = unit.evaluate(STAGE_0)
    assert found.leaning is not None

    outcome = consider([found], set(), LowTrafficRule(), promoting=False, confidence=0.95)

    assert outcome.evidence is None
    assert outcome.statement == f"not applied: error_rate leans toward harm: {found.leaning}"
