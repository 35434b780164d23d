"""No harm is shown *within* a limit: a bound exactly at it passes, the next grid point not.

The upper bound on the ratio is a point of the ratio grid and the advance tolerance is
placed on that grid, so a bound equal to the tolerance is an ordinary outcome (51 canary
errors against 57 in equal traffic give exactly 1.5 at 90 %). The blast-radius margins are
inclusive too: extra errors at the next share exactly at the margin show no harm.
"""

from __future__ import annotations

from canarystream.analysis.checks import CheckGroup, Gate, Tick, Unit
from canarystream.analysis.cohort import CohortBucket
from canarystream.analysis.sequential import rate_upper_bound
from canarystream.contracts.decision import Verdict
from canarystream.policy.model import ErrorRateCheck

GATE = Gate(ready=True, next_share=0.5, promoting=False, alpha=0.1)
REQUESTS = 1000


def _bucket(errors: int) -> CohortBucket:
    bucket = CohortBucket()
    for index in range(REQUESTS):
        bucket.requests.add(40.0, 503 if index < errors else 200)
    return bucket


def _unit(canary_errors: int, baseline_errors: int, margin: float) -> Unit:
    check = ErrorRateCheck(advance_tolerance=1.5, advance_abs_margin=margin)
    group = CheckGroup(check, alpha=0.05, trackers={})
    (unit,) = group.units.values()
    group.update(Tick(_bucket(canary_errors), _bucket(baseline_errors), {}, now=5.0))
    return unit


def test_an_upper_bound_exactly_at_the_advance_tolerance_passes() -> None:
    at_tolerance = _unit(51, 57, margin=0.0).evaluate(GATE)
    assert (at_tolerance.upper, at_tolerance.bound) == (1.5, 1.5)
    assert at_tolerance.verdict is Verdict.PASS

    # One more canary error: the bound moves past the tolerance, to the grid's e^0.44.
    above = _unit(52, 57, margin=0.0).evaluate(GATE)
    assert above.upper is not None and 1.5 < above.upper < 1.56
    assert above.verdict is Verdict.INCONCLUSIVE


def test_extra_errors_exactly_at_the_blast_radius_margin_pass() -> None:
    upper = _unit(52, 57, margin=0.0).evaluate(GATE).upper
    assert upper is not None
    margin = (upper - 1.0) * (57 / REQUESTS) * GATE.next_share

    assert _unit(52, 57, margin=margin).evaluate(GATE).verdict is Verdict.PASS
    assert _unit(52, 57, margin=margin * 0.999).evaluate(GATE).verdict is Verdict.INCONCLUSIVE


def test_the_canary_s_own_rate_bound_exactly_at_the_margin_passes() -> None:
    # No errors in either cohort: the ratio has no upper bound; the canary's own rate decides.
    margin = rate_upper_bound(0, REQUESTS, GATE.alpha) * GATE.next_share

    assert _unit(0, 0, margin=margin).evaluate(GATE).verdict is Verdict.PASS
    assert _unit(0, 0, margin=margin * 0.999).evaluate(GATE).verdict is Verdict.INCONCLUSIVE


def test_errors_in_the_canary_alone_lean_toward_harm_and_the_margin_does_not_apply() -> None:
    # Three canary errors against none in equal traffic: within the margin on the canary's own
    # rate, but the estimate is beyond any ratio and the evidence against the tolerance rises.
    margin = rate_upper_bound(3, REQUESTS, GATE.alpha) * GATE.next_share
    found = _unit(3, 0, margin=margin).evaluate(GATE)

    assert found.verdict is Verdict.INCONCLUSIVE
    assert found.leaning == "evidence against the tolerance at e = 2.42"
    assert "the blast-radius margin does not apply" in found.reason().message
