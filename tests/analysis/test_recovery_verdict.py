"""The verdict after a rollback, recomputed from its definition, and the watch's stored form.

After a rollback the service's traffic over the window is compared with the baseline's
before: a normal lower bound on the error rate's excess over the allowed level (Agresti-Caffo
pseudo-counts, the reference's own uncertainty included) and one on the shift of mean log
latency. The numbers in the reasons are what a person reads to trust "not recovering".
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from canarystream.analysis.cohort import Slice
from canarystream.analysis.recovery import RecoveryWatch
from canarystream.contracts.decision import Verdict
from canarystream.errors import StateFormatError
from canarystream.policy.model import RollbackVerification
from canarystream.readable import change

CONFIG = RollbackVerification()  # 95 %, ratio 1.5 plus 0.001, latency +10 %, 100 requests
ERRORS = ((500, 599),)


def _slice(latencies: np.ndarray, errors: int) -> Slice:
    found = Slice()
    for index, latency in enumerate(latencies.tolist()):
        found.add(latency, 503 if index < errors else 200)
    return found


def _watch(reference: Slice, *after: Slice) -> RecoveryWatch:
    watch = RecoveryWatch(CONFIG, ERRORS)
    watch.fold_reference(reference)
    watch.start(100.0)
    watch.fold_after(*after)
    return watch


RNG = np.random.default_rng(11)
REFERENCE = RNG.lognormal(math.log(40.0), 0.3, 1000)
AFTER = RNG.lognormal(math.log(50.0), 0.3, 400)


def test_the_reasons_carry_the_bounds_of_their_definition() -> None:
    # The traffic after the rollback arrives in two ticks (two slices): both are counted.
    recovered, summary, (errors, latency) = _watch(
        _slice(REFERENCE, 10), _slice(AFTER[:150], 3), _slice(AFTER[150:], 5)
    ).verdict()

    z = stats.norm.ppf(0.95)
    rate, allowed = 8 / 400, 10 / 1000 * 1.5 + 0.001
    p_after, p_ref = 9 / 402, 11 / 1002
    spread = math.sqrt(p_after * (1 - p_after) / 402 + 1.5**2 * p_ref * (1 - p_ref) / 1002)
    assert (errors.estimate, errors.threshold) == (pytest.approx(rate), pytest.approx(allowed))
    assert errors.lower == pytest.approx(rate - z * spread, rel=1e-12)
    assert errors.verdict is (Verdict.FAIL if rate - allowed - z * spread > 0 else Verdict.PASS)

    before, now = np.log1p(REFERENCE), np.log1p(AFTER)
    shift = now.mean() - before.mean()
    shift_lower = shift - z * math.sqrt(now.var() / 400 + before.var() / 1000)
    assert latency.estimate == pytest.approx(math.expm1(shift), rel=1e-9)
    assert latency.lower == pytest.approx(math.expm1(shift_lower), rel=1e-9)
    # Latency 25 % up, shown above the 10 % tolerance: not recovering.
    assert shift_lower > math.log1p(0.1)
    assert latency.verdict is Verdict.FAIL
    assert (recovered, summary) == (False, "not back at baseline levels: recovery-latency")
    for reason in (errors, latency):
        assert (reason.kind, reason.canary_samples, reason.baseline_samples) == (
            "recovery",
            400,
            1000,
        )
    assert latency.tolerance == 0.1
    assert errors.message == "error rate 2% after the rollback vs 1% before"
    assert latency.message == f"typical latency {change(math.exp(shift))} vs before the rollout"


def test_both_failures_are_named_when_errors_and_latency_are_up() -> None:
    recovered, summary, reasons = _watch(_slice(REFERENCE, 10), _slice(AFTER, 40)).verdict()
    assert [r.verdict for r in reasons] == [Verdict.FAIL, Verdict.FAIL]
    assert (recovered, summary) == (
        False,
        "not back at baseline levels: recovery-error-rate, recovery-latency",
    )


def test_a_service_back_at_its_levels_is_recovered() -> None:
    recovered, summary, reasons = _watch(
        _slice(REFERENCE, 10), _slice(REFERENCE[:400], 4)
    ).verdict()
    assert (recovered, summary) == (True, "back at baseline levels")
    assert [r.verdict for r in reasons] == [Verdict.PASS, Verdict.PASS]


def test_exactly_the_minimum_of_requests_after_is_enough_and_one_reference_request_too() -> None:
    recovered, _, reasons = _watch(_slice(REFERENCE[:1], 0), _slice(REFERENCE[:100], 0)).verdict()
    assert recovered and len(reasons) == 2

    recovered, summary, reasons = _watch(
        _slice(REFERENCE[:1], 0), _slice(REFERENCE[:99], 0)
    ).verdict()
    assert (recovered, reasons) == (False, [])
    assert (
        summary == "only 99 requests in the 300s after the rollback (needs 100): recovery not shown"
    )


def test_a_stored_watch_goes_on_watching_with_its_tallies_and_ranges() -> None:
    watch = RecoveryWatch(CONFIG, ((429, 429), (500, 599)))
    watch.fold_reference(_slice(REFERENCE, 10))
    watch.start(100.0)
    watch.fold_after(_slice(AFTER[:200], 3), _slice(AFTER[200:], 5))

    again = RecoveryWatch.from_state(watch.to_state(), CONFIG)
    assert again.to_state() == watch.to_state()
    assert again.config is CONFIG
    assert again.error_ranges == ((429, 429), (500, 599))
    assert (again.watching, again.due(399.0), again.due(400.0)) == (True, False, True)
    assert again.verdict() == watch.verdict()


def test_a_stored_watch_that_does_not_fit_is_refused_naming_the_field() -> None:
    state = RecoveryWatch(CONFIG, ERRORS).to_state()
    with pytest.raises(StateFormatError) as refused:
        RecoveryWatch.from_state({**state, "since": "soon"}, CONFIG)
    assert str(refused.value).startswith("RecoveryWatch.since: ")
