"""When a mean-difference check (typical latency, gauges) may give a verdict at all.

No requests from either cohort: no verdict (the check does not gate). The baseline alone: the
canary is missing (NO_DATA). The canary with too few ticks beside a baseline: not yet known.
From ``min_ticks`` ticks with both cohorts on, a clear regression fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from canarystream.analysis.checks import CheckGroup, Gate, Tick, Unit
from canarystream.analysis.cohort import CohortBucket
from canarystream.contracts.decision import Verdict
from canarystream.policy.model import LatencyShiftCheck

GATE = Gate(ready=True, next_share=0.5, promoting=False, alpha=0.1)


def _bucket(latencies: list[float]) -> CohortBucket:
    bucket = CohortBucket()
    for value in latencies:
        bucket.requests.add(value, 200)
    return bucket


def _unit(ticks: list[tuple[list[float], list[float]]], min_ticks: int = 3) -> Unit:
    group = CheckGroup(LatencyShiftCheck(min_ticks=min_ticks), alpha=0.01, trackers={})
    (unit,) = group.units.values()
    for at, (canary, baseline) in enumerate(ticks):
        group.update(Tick(_bucket(canary), _bucket(baseline), {}, now=5.0 * at))
    return unit


SLOW = [300.0, 310.0, 290.0, 305.0]  # three times the baseline's latency
FAST = [100.0, 103.0, 97.0, 101.0]


@pytest.mark.parametrize(
    ("ticks", "verdict"),
    [
        ([], None),
        ([([], [])] * 4, None),
        ([([], FAST)] * 4, Verdict.NO_DATA),
        ([([100.0], FAST)] * 4, Verdict.INCONCLUSIVE),  # one request a tick: no difference
        ([(SLOW, [])] * 4, Verdict.INCONCLUSIVE),  # no baseline to compare with
    ],
    ids=["nothing", "empty-ticks", "baseline-only", "one-canary-request", "canary-only"],
)
def test_a_verdict_needs_both_cohorts(ticks: list, verdict: Verdict | None) -> None:
    unit = _unit(ticks)
    evidence = unit.evaluate(GATE)

    assert evidence.verdict is verdict
    assert (evidence.name, evidence.gate) == (unit.name, GATE)


def test_a_clear_regression_fails_at_min_ticks_and_not_before() -> None:
    rng = np.random.default_rng(3)
    ticks = [((np.array(SLOW) * rng.uniform(0.98, 1.02)).tolist(), FAST) for _ in range(3)]

    assert _unit(ticks[:2], min_ticks=3).evaluate(GATE).verdict is Verdict.INCONCLUSIVE
    assert _unit(ticks, min_ticks=3).evaluate(GATE).verdict is Verdict.FAIL


def test_before_the_stage_is_ready_an_equal_canary_is_not_yet_known() -> None:
    unit = _unit([(FAST, [v * 1.01 for v in FAST])] * 6)
    waiting = Gate(ready=False, next_share=0.5, promoting=False, alpha=0.1)

    assert unit.evaluate(waiting).verdict is Verdict.INCONCLUSIVE
    assert unit.evaluate(GATE).verdict is Verdict.PASS
