"""No harm by blast radius when no ratio can be bounded: the canary's own errors count.

With errors in the canary and none in the baseline, the ratio's upper bound is infinite, so
the only way to show no harm is the canary's own error-rate bound, from *its* errors over
*its* requests, times the traffic it would get next, within the margin.
"""

from __future__ import annotations

from canarystream.analysis.checks import CheckGroup, Gate, Tick, Unit
from canarystream.analysis.cohort import CohortBucket
from canarystream.analysis.sequential import rate_upper_bound
from canarystream.contracts.decision import Verdict
from canarystream.policy.model import ErrorRateCheck

MARGIN = 0.01
GATE = Gate(ready=True, next_share=0.5, promoting=False, alpha=0.1)


def _bucket(requests: int, errors: int) -> CohortBucket:
    bucket = CohortBucket()
    for index in range(requests):
        bucket.requests.add(40.0, 503 if index < errors else 200)
    return bucket


def _unit(canary: tuple[int, int], baseline: tuple[int, int]) -> Unit:
    group = CheckGroup(ErrorRateCheck(advance_abs_margin=MARGIN), alpha=0.05, trackers={})
    (unit,) = group.units.values()
    group.update(Tick(_bucket(*canary), _bucket(*baseline), {}, now=5.0))
    return unit


def test_a_canary_with_errors_beside_a_clean_baseline_is_judged_by_its_own_rate() -> None:
    # 3 errors in 600 canary requests: too few to fail the ratio test, and the bound on the
    # canary's own rate times the next share is above the margin.
    assert rate_upper_bound(3, 600, GATE.alpha) * GATE.next_share > MARGIN
    evidence = _unit(canary=(600, 3), baseline=(5400, 0)).evaluate(GATE)

    assert evidence.verdict is Verdict.INCONCLUSIVE
    assert evidence.upper is not None and evidence.upper > 100


def test_a_clean_canary_beside_a_clean_baseline_shows_no_harm_from_its_own_requests() -> None:
    # No error anywhere: the canary's 2,000 requests bound its rate within the margin at the
    # next share; its 2,000 requests alone, not the baseline's 18,000, decide that.
    assert rate_upper_bound(0, 2000, GATE.alpha) * GATE.next_share <= MARGIN
    assert rate_upper_bound(0, 300, GATE.alpha) * GATE.next_share > MARGIN
    assert _unit(canary=(2000, 0), baseline=(18000, 0)).evaluate(GATE).verdict is Verdict.PASS
    assert _unit(canary=(300, 0), baseline=(18000, 0)).evaluate(GATE).verdict is (
        Verdict.INCONCLUSIVE
    )


def test_the_next_share_scales_the_canary_s_own_bound() -> None:
    # 300 clean requests bound the rate near 2.7 %: within the margin once weighted by a 10 %
    # next share, not at 50 %.
    small = Gate(ready=True, next_share=0.1, promoting=False, alpha=0.1)
    assert rate_upper_bound(0, 300, small.alpha) * small.next_share <= MARGIN
    unit = _unit(canary=(300, 0), baseline=(18000, 0))

    assert unit.evaluate(small).verdict is Verdict.PASS
    assert unit.evaluate(GATE).verdict is Verdict.INCONCLUSIVE
