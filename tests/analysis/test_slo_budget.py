"""SLO checks: the canary's error rate or slow share against an absolute budget.

Each canary request is an event with probability ``p``; the unit tests ``H0: p <= budget``
on the odds ratio against the budget. Its e-value and bounds are recomputed here from the
binomial likelihood of all the canary's requests (``scipy.stats.binom``, in
:class:`tests.support.mixture.MixtureOracle`) over the unit's own grid and prior. The
baseline plays no part.
"""

from __future__ import annotations

import math

import pytest

from canarystream.analysis.checks import (
    CheckGroup,
    Gate,
    SloErrorRateCheck,
    SloErrorRateUnit,
    SloLatencyCheck,
    SloLatencyUnit,
    Tick,
)
from canarystream.analysis.checks.shapes import OneSampleRateUnit
from canarystream.analysis.cohort import CohortBucket
from canarystream.contracts.decision import Verdict
from canarystream.readable import evidence_text, percent
from tests.support.mixture import MixtureOracle

T0 = 1_790_000_000.0
READY = Gate(ready=True, next_share=0.5, promoting=False, alpha=0.1)
NOT_READY = Gate(ready=False, next_share=0.5, promoting=False, alpha=0.1)


def _bucket(statuses: list[int], latency: float = 50.0) -> CohortBucket:
    bucket = CohortBucket()
    for status in statuses:
        bucket.requests.add(latency, status)
    return bucket


def _errors(requests: int, errors: int, status: int = 503) -> CohortBucket:
    return _bucket([status] * errors + [200] * (requests - errors))


def _unit(check: SloErrorRateCheck | SloLatencyCheck, alpha: float = 0.05) -> OneSampleRateUnit:
    (unit,) = CheckGroup(check, alpha=alpha, trackers={}).units.values()
    assert isinstance(unit, OneSampleRateUnit)
    return unit


def _feed(unit: OneSampleRateUnit, ticks: list[tuple[int, int]]) -> None:
    for k, (requests, errors) in enumerate(ticks):
        unit.update(Tick(_errors(requests, errors), _errors(50, 25), {}, T0 + 5.0 * k))


def _strata_oracle(unit: OneSampleRateUnit, ticks: list[tuple[int, int]]) -> MixtureOracle:
    """The oracle fed tick by tick (the change detector needs the strata, not the totals)."""
    grid = unit.test.grid
    oracle = MixtureOracle(grid.psi, grid.log_prior)
    for requests, errors in ticks:
        oracle.add(errors, requests - errors, unit.budget, 1.0 - unit.budget)
    return oracle


def _oracle(unit: OneSampleRateUnit, events: int, samples: int) -> MixtureOracle:
    """The binomial likelihood of ``events`` in ``samples`` requests over the unit's grid of
    odds ratios (each request an event with odds ``psi`` times the budget's)."""
    grid = unit.test.grid
    oracle = MixtureOracle(grid.psi, grid.log_prior)
    return oracle.add(events, samples - events, unit.budget, 1.0 - unit.budget)


def _rate(budget: float, odds_ratio: float) -> float:
    """The event rate whose odds are ``odds_ratio`` times the budget's odds."""
    odds = odds_ratio * budget / (1.0 - budget)
    return odds / (1.0 + odds)


@pytest.mark.parametrize(
    ("budget", "ticks"),
    [
        (0.01, [(200, 1), (200, 3), (100, 0)]),
        (0.01, [(300, 9), (300, 6)]),
        (0.05, [(40, 2), (60, 1), (80, 5), (20, 0)]),
        (0.2, [(10, 4), (10, 1)]),
        (0.001, [(1000, 0), (1000, 1)]),
    ],
)
def test_e_value_and_upper_bound_are_those_of_the_binomial_likelihood(
    budget: float, ticks: list[tuple[int, int]]
) -> None:
    unit = _unit(SloErrorRateCheck(max_error_rate=budget))
    _feed(unit, ticks)
    events, samples = sum(e for _, e in ticks), sum(n for n, _ in ticks)
    oracle = _oracle(unit, events, samples)
    evidence = unit.evaluate(READY)

    detector = _strata_oracle(unit, ticks).detector(1.0)
    assert evidence.e_value == pytest.approx(detector, rel=1e-9)
    assert unit.test.upper_bound(READY.alpha) == oracle.upper(READY.alpha)
    fails = detector * unit.alpha >= 1.0
    assert (evidence.verdict is Verdict.FAIL) == fails
    assert evidence.upper == (None if fails else oracle.upper(READY.alpha))
    assert unit.test.lower_bound(unit.alpha) == oracle.lower(unit.alpha)
    reason = evidence.reason()
    assert (reason.canary_samples, reason.estimate) == (samples, events / samples)
    assert reason.lower == pytest.approx(_rate(budget, oracle.lower(unit.alpha)), rel=1e-12)
    if evidence.upper is not None and math.isfinite(evidence.upper):
        assert reason.upper == pytest.approx(_rate(budget, evidence.upper), rel=1e-12)


def test_the_verdicts_against_the_budget() -> None:
    check = SloErrorRateCheck(max_error_rate=0.01)
    clean, breaching = _unit(check, alpha=0.05), _unit(check, alpha=0.05)
    _feed(clean, [(2000, 2)] * 3)  # 0.1 % against a 1 % budget
    _feed(breaching, [(400, 20)] * 3)  # 5 %

    assert clean.evaluate(READY).verdict is Verdict.PASS
    assert clean.evaluate(READY).upper is not None
    assert clean.evaluate(READY).upper <= 1.0  # type: ignore[operator]
    assert clean.evaluate(READY).bound == 1.0
    assert clean.evaluate(READY).gate is READY
    assert clean.evaluate(NOT_READY).verdict is Verdict.INCONCLUSIVE
    assert clean.evaluate(NOT_READY).upper is None
    assert breaching.evaluate(NOT_READY).verdict is Verdict.FAIL
    assert breaching.evaluate(READY).e_value * 0.05 >= 1.0  # type: ignore[operator]
    assert breaching.evaluate(READY).upper is None  # a FAIL tests no PASS
    at_budget = _unit(check)
    _feed(at_budget, [(1000, 10)] * 3)  # exactly at the budget: neither
    assert at_budget.evaluate(READY).verdict is Verdict.INCONCLUSIVE
    assert at_budget.evaluate(READY).upper > 1.0  # type: ignore[operator]


def test_an_upper_bound_exactly_at_the_budget_passes() -> None:
    # 10 errors in 2,000 requests against a 1 % budget: the upper bound on the odds ratio at
    # 90 % is the grid point 1 itself, the budget: within it.
    unit = _unit(SloErrorRateCheck(max_error_rate=0.01))
    _feed(unit, [(2000, 10)])
    evidence = unit.evaluate(READY)

    assert evidence.upper == _oracle(unit, 10, 2000).upper(READY.alpha) == 1.0
    assert evidence.verdict is Verdict.PASS


def test_the_check_fails_at_the_first_tick_its_e_value_reaches_one_over_alpha() -> None:
    # 1 error in 20 requests a tick (5 % against a 2 % budget): the e-value grows slowly
    # enough to cross 100 below 200, so the threshold itself is what is tested.
    unit = _unit(SloErrorRateCheck(max_error_rate=0.02), alpha=0.01)
    events = samples = 0
    for k in range(60):
        unit.update(Tick(_errors(20, 1), CohortBucket(), {}, T0 + 5.0 * k))
        events, samples = events + 1, samples + 20
        e_value = _strata_oracle(unit, [(20, 1)] * (k + 1)).detector(1.0)
        evidence = unit.evaluate(NOT_READY)
        assert evidence.e_value == pytest.approx(e_value, rel=1e-9)
        assert evidence.verdict is (Verdict.FAIL if e_value >= 100.0 else Verdict.INCONCLUSIVE)
        if evidence.verdict is Verdict.FAIL:
            break
    assert evidence.verdict is Verdict.FAIL
    assert 100.0 <= e_value < 200.0


def test_without_canary_requests_there_is_no_data_whatever_the_baseline() -> None:
    unit = _unit(SloErrorRateCheck())
    assert unit.evaluate(READY).verdict is Verdict.NO_DATA
    unit.update(Tick(CohortBucket(), _errors(500, 100), {}, T0))

    evidence = unit.evaluate(READY)
    assert (evidence.verdict, evidence.e_value, evidence.upper) == (Verdict.NO_DATA, None, None)
    reason = evidence.reason()
    assert (reason.verdict, reason.canary_samples, reason.estimate, reason.upper) == (
        Verdict.NO_DATA,
        0,
        None,
        None,
    )
    assert reason.e_value == 1.0  # no evidence at all
    assert reason.message.startswith("canary error rate n/a [")


def test_the_reason_of_an_slo_check() -> None:
    unit = _unit(SloErrorRateCheck(max_error_rate=0.02, critical=False), alpha=0.04)
    _feed(unit, [(250, 2), (250, 3)])
    evidence = unit.evaluate(READY)
    reason = evidence.reason()
    oracle = _oracle(unit, 5, 500)
    lower = _rate(0.02, oracle.lower(0.04))
    upper = _rate(0.02, oracle.upper(READY.alpha))

    assert (reason.check, reason.kind, reason.verdict, reason.critical) == (
        "slo_error_rate",
        "slo_error_rate",
        evidence.verdict,
        False,
    )
    assert (reason.threshold, reason.tolerance, reason.advance_tolerance) == (25.0, 0.02, 0.02)
    assert reason.e_value == evidence.e_value
    assert reason.message == (
        f"canary error rate 1% [{percent(lower)}, {percent(upper)}] vs budget 2%, "
        f"{evidence_text(evidence.e_value, 25.0)}"
    )
    # Before the stage is ready the interval shown is still the one at the gate's alpha.
    early = unit.evaluate(NOT_READY).reason()
    assert early.upper is None
    assert early.message == reason.message


def test_odds_ratios_are_shown_as_rates() -> None:
    unit = _unit(SloErrorRateCheck(max_error_rate=0.1))
    assert unit._rate(1.0) == pytest.approx(0.1, rel=1e-12)
    assert unit._rate(9.0) == pytest.approx(0.5, rel=1e-12)  # odds 1/9 x 9 = 1
    assert unit._rate(0.0) == 0.0
    assert unit._rate(math.inf) == 1.0
    # No upper bound yet (a single error in one request): the interval ends at 100 %.
    _feed(unit, [(1, 1)])
    assert unit.interval_upper(unit.evaluate(NOT_READY)) == 1.0


def test_error_statuses_of_the_check_are_the_ones_counted() -> None:
    unit = _unit(SloErrorRateCheck(error_statuses="429,500-502"))
    assert isinstance(unit, SloErrorRateUnit)
    unit.update(Tick(_bucket([429, 500, 502, 503, 404, 200, 599]), CohortBucket(), {}, T0))

    assert (unit.events, unit.samples) == (3, 7)
    default = _unit(SloErrorRateCheck())
    default.update(Tick(_bucket([429, 499, 500, 599, 600]), CohortBucket(), {}, T0))
    assert (default.events, default.samples) == (2, 5)


def test_a_latency_slo_counts_requests_strictly_over_its_limit() -> None:
    check = SloLatencyCheck(quantile=0.9, max_ms=200.0)
    unit = _unit(check)
    assert isinstance(unit, SloLatencyUnit)
    canary = CohortBucket()
    for latency in (10.0, 199.9, 200.0, 200.1, 900.0):
        canary.requests.add(latency, 200)
    unit.update(Tick(canary, CohortBucket(), {}, T0))

    assert (unit.events, unit.samples) == (2, 5)
    assert unit.budget == pytest.approx(0.1, rel=1e-12)
    assert unit.name == "slo_latency-p90"
    assert (
        unit.evaluate(NOT_READY)
        .reason()
        .message.startswith("canary share of requests over 200 ms 40% [")
    )
    assert (
        unit.evaluate(NOT_READY)
        .reason()
        .message.endswith(f"] vs budget 10%, {evidence_text(unit.test.detector(), 20.0)}")
    )


def test_an_slo_unit_takes_the_check_s_criticality_and_its_group_s_alpha() -> None:
    for check in (SloErrorRateCheck(critical=False), SloLatencyCheck(max_ms=5.0, critical=False)):
        unit = _unit(check, alpha=0.03)
        assert (unit.critical, unit.alpha) == (False, 0.03)
        assert unit.to_state()["kind"] == check.kind
    for check in (SloErrorRateCheck(), SloLatencyCheck(max_ms=5.0)):
        assert _unit(check).critical is True
