"""The latency-quantile unit in detail: its tracker's thresholds, which requests count as
slower, the verdict's edges, the samples still needed and the guarantee a promotion rests on.

The units here read a tracker held fixed (the rollout updates it after the units each tick),
so every tick's threshold ``T`` is the same and each tick's exceedances are set by hand:
canary requests at 1.5 T (slower than every tolerance), 1.2 T (slower than the tolerance and
the promote tolerance), 1.1 T (slower than the tolerance only) or 0.5 T, baseline ones at 2 T
or 0.5 T. :class:`tests.support.mixture.MixtureOracle` gives the e-values and bounds of the
same strata from the binomial likelihood; the Mantel-Haenszel estimate is summed by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from canarystream.analysis.checks import Gate, LatencyCheck, LatencyTracker, Tick
from canarystream.analysis.checks.latency import LatencyQuantileUnit
from canarystream.analysis.cohort import CohortBucket, Slice
from canarystream.contracts.decision import Verdict
from canarystream.errors import StateFormatError
from canarystream.readable import times
from tests.support.mixture import MixtureOracle

T0 = 1_790_000_000.0
NOT_READY = Gate(ready=False, next_share=0.25, promoting=False, alpha=0.2)
ADVANCING = Gate(ready=True, next_share=0.25, promoting=False, alpha=0.2)
PROMOTING = Gate(ready=True, next_share=1.0, promoting=True, alpha=0.1)
TOLERANCE, PROMOTE, ADVANCE = 0.05, 0.15, 0.3
CHECK = LatencyCheck(
    quantile=0.9, tolerance=TOLERANCE, promote_tolerance=PROMOTE, advance_tolerance=ADVANCE
)
SEQUENCES = ("test", "promotable", "no_harm")


def _slice(values: list[float] | np.ndarray) -> Slice:
    found = Slice()
    for value in values:
        found.add(float(value), 200)
    return found


def _bucket(values: list[float]) -> CohortBucket:
    bucket = CohortBucket()
    for value in values:
        bucket.requests.add(value, 200)
    return bucket


class _Stream:
    """A latency unit on a fixed threshold, and oracles of its three sequences."""

    def __init__(self, check: LatencyCheck = CHECK, alpha: float = 0.05) -> None:
        self.tracker = LatencyTracker(5.0)
        self.tracker.update(Slice(), _slice(np.linspace(1.0, 100.0, 1000)))
        threshold = self.tracker.threshold(0.9)
        assert threshold is not None and 85.0 < threshold < 95.0
        self.threshold = threshold
        self.unit = LatencyQuantileUnit("latency-p90", check, None, alpha, self.tracker)
        grid = self.unit.test.grid
        self.oracles = {name: MixtureOracle(grid.psi, grid.log_prior) for name in SEQUENCES}
        self.mh = {name: [0.0, 0.0] for name in SEQUENCES}

    def feed(
        self,
        nc: int,
        nb: int,
        y: int,
        *,
        over_all: int = 0,
        over_promote: int = 0,
        over_test: int = 0,
        ticks: int = 1,
    ) -> _Stream:
        t = self.threshold
        slow = [1.5 * t] * over_all + [1.2 * t] * over_promote + [1.1 * t] * over_test
        canary = slow + [0.5 * t] * (nc - len(slow))
        baseline = [2.0 * t] * y + [0.5 * t] * (nb - y)
        counts = {
            "test": over_all + over_promote + over_test,
            "promotable": over_all + over_promote,
            "no_harm": over_all,
        }
        for _ in range(ticks):
            self.unit.update(Tick(_bucket(canary), _bucket(baseline), {None: self.tracker}, T0))
            for name, x in counts.items():
                self.oracles[name].add(x, y, nc, nb)
                self.mh[name][0] += x * nb / (nc + nb)
                self.mh[name][1] += y * nc / (nc + nb)
        return self

    def estimate(self, name: str) -> float:
        num, den = self.mh[name]
        return num / den

    def upper(self, name: str, alpha: float) -> float:
        return self.oracles[name].upper(alpha)


# --- the tracker -------------------------------------------------------------------------------


def test_a_baseline_with_exactly_the_samples_needed_gives_a_threshold() -> None:
    tracker = LatencyTracker(5.0)
    tracker.update(Slice(), _slice(np.full(50, 10.0)))  # max(50, 10 / (1 - 0.5)) = 50

    assert tracker.baseline.total == 50.0
    assert tracker.threshold(0.5) == pytest.approx(10.0, rel=0.02)
    assert tracker.shortfall(0.5) is None
    assert tracker.threshold(0.95) is None  # 10 / 0.05 = 200
    assert tracker.shortfall(0.95) is not None


def test_the_shortfall_names_the_quantile_the_samples_and_the_rate_it_takes() -> None:
    tracker = LatencyTracker(5.0)
    tracker.update(Slice(), _slice(np.full(1234, 10.0)))
    # 10 / (1 - 0.999) requests; a steady r req/s fills the sketch to r x 300 s / ln 2.
    assert f"{10_000 * math.log(2) / 300.0:.1f}" == "23.1"

    assert tracker.shortfall(0.999) == (
        "no baseline p99.9 to compare with yet: its sketch holds 1,234 of the 10,000 "
        "requests it needs, which takes at least 23.1 baseline req/s"
    )
    assert tracker.shortfall(0.99) is None  # 1,234 of 1,000


def test_a_damaged_tracker_is_refused_naming_its_field() -> None:
    tracker = LatencyTracker(5.0)
    tracker.update(_slice([20.0]), _slice([10.0, 30.0]))
    state = tracker.to_state()
    del state["decay"]

    with pytest.raises(StateFormatError, match=r"^LatencyTracker\.decay: missing$"):
        LatencyTracker.from_state(state)


# --- which requests count --------------------------------------------------------------------


def test_a_request_counts_as_slower_only_beyond_its_threshold() -> None:
    # Exactly at T (baseline) or at (1 + tolerance) T (canary) is not slower.
    stream = _Stream()
    t = stream.threshold
    at = [t * (1.0 + TOLERANCE)] * 4 + [t * (1.0 + PROMOTE)] * 3 + [t * (1.0 + ADVANCE)] * 2
    canary = [*at, 1.5 * t, 1.5 * t, *([0.5 * t] * 39)]
    baseline = [t] * 5 + [2.0 * t] * 7 + [0.5 * t] * 188
    stream.unit.update(Tick(_bucket(canary), _bucket(baseline), {None: stream.tracker}, T0))
    unit = stream.unit

    # Beyond the tolerance: the 3 at the promote and the 2 at the advance tolerance, and the 2
    # at 1.5 T; beyond the promote tolerance: 4; beyond the advance tolerance: 2.
    assert (unit.test.x_total, unit.test.y_total) == (7, 7)
    assert (unit.promotable.x_total, unit.promotable.y_total) == (4, 7)
    assert (unit.no_harm.x_total, unit.no_harm.y_total) == (2, 7)
    assert unit.samples == [50, 200]


def test_a_breakdown_unit_reads_its_own_slice_of_each_cohort() -> None:
    key = ("endpoint", "/pay")
    tracker = LatencyTracker(5.0)
    tracker.update(Slice(), _slice(np.linspace(1.0, 100.0, 1000)))
    t = tracker.threshold(0.9)
    assert t is not None
    unit = LatencyQuantileUnit("latency-p90-pay", CHECK, key, 0.05, tracker)

    def tick(pay: tuple[int, int, int, int] | None, cart: tuple[int, int]) -> Tick:
        canary, baseline = CohortBucket(), CohortBucket()
        for bucket, n, slow in ((canary, *cart), (baseline, cart[0], 0)):
            for index in range(n):  # /cart: all slow in the canary
                latency = 3.0 * t if index < slow else 0.5 * t
                bucket.requests.add(latency, 200)
                bucket.slice_for("endpoint", "/cart").add(latency, 200)
        if pay is not None:
            nc, xc, nb, yb = pay
            for bucket, n, slow in ((canary, nc, xc), (baseline, nb, yb)):
                for index in range(n):
                    latency = 2.0 * t if index < slow else 0.5 * t
                    bucket.requests.add(latency, 200)
                    bucket.slice_for("endpoint", "/pay").add(latency, 200)
        return Tick(canary, baseline, {key: tracker}, T0)

    unit.update(tick((30, 3, 120, 12), (70, 70)))
    assert unit.samples == [30, 120]
    assert (unit.test.x_total, unit.test.y_total) == (3, 12)
    unit.update(tick(None, (70, 70)))  # no /pay request in either cohort
    assert unit.samples == [30, 120]
    assert (unit.test.x_total, unit.test.y_total) == (3, 12)


def test_a_canary_without_a_baseline_is_inconclusive_not_absent() -> None:
    stream = _Stream().feed(50, 0, 0, over_all=5)

    assert stream.unit.samples == [50, 0]
    for gate in (NOT_READY, ADVANCING):
        evidence = stream.unit.evaluate(gate)
        assert (evidence.verdict, evidence.e_value) == (Verdict.INCONCLUSIVE, 1.0)


# --- the verdict -----------------------------------------------------------------------------


def test_the_check_fails_once_the_detector_reaches_one_over_alpha() -> None:
    def stream(alpha: float = 0.05) -> _Stream:
        return _Stream(alpha=alpha).feed(100, 400, 40, over_all=25, ticks=2)

    detector = stream().oracles["test"].detector(1.0)
    assert detector > 20.0
    for alpha, verdict in (
        (1.05 / detector, Verdict.FAIL),
        (0.95 / detector, Verdict.INCONCLUSIVE),
    ):
        evidence = stream(alpha).unit.evaluate(NOT_READY)
        assert evidence.e_value == pytest.approx(detector, rel=1e-9)
        assert evidence.verdict is verdict
    # At exactly 1 / alpha it fails too (Ville's inequality bounds P(ever >= 1 / alpha)): the
    # unit's own value, to the last bit, as the threshold.
    exact = stream().unit.test.detector()
    assert exact == pytest.approx(detector, rel=1e-9)
    assert exact * (1.0 / exact) == 1.0
    assert stream(1.0 / exact).unit.evaluate(NOT_READY).verdict is Verdict.FAIL


def _with_margin(margin: float) -> _Stream:
    check = CHECK.model_copy(update={"advance_abs_margin": margin})
    return _Stream(check).feed(200, 400, 40, over_all=20, ticks=10)


def test_a_blast_radius_equal_to_the_margin_passes() -> None:
    upper = _with_margin(0.002).upper("no_harm", ADVANCING.alpha)
    assert 1.0 < upper < math.inf
    # (upper - 1) x the share of requests beyond the quantile at the next stage, computed as
    # the unit does so that the two are equal to the last bit.
    margin = (upper - 1.0) * ((1.0 - 0.9) * ADVANCING.next_share)

    assert _with_margin(margin).unit.evaluate(ADVANCING).verdict is Verdict.PASS
    below = _with_margin(math.nextafter(margin, 0.0)).unit.evaluate(ADVANCING)
    assert below.verdict is Verdict.INCONCLUSIVE


def test_a_pass_by_blast_radius_says_so_after_the_numbers() -> None:
    evidence = _with_margin(0.01).unit.evaluate(ADVANCING)
    assert evidence.upper is not None and 1.0 < evidence.upper <= 1.0 + 0.01 / 0.025
    message = evidence.reason().message

    assert evidence.verdict is Verdict.PASS
    assert message.startswith("p90 canary n/a ms vs baseline ")
    assert message.endswith(
        "(no harm at ×1 or less); no harm by blast radius: extra slow requests within 1% of "
        "all traffic at 25%"
    )


def test_an_inconclusive_verdict_says_how_many_more_canary_samples_its_bound_needs() -> None:
    stream = _Stream().feed(200, 400, 40, over_all=18, ticks=10)
    evidence = stream.unit.evaluate(ADVANCING)
    estimate, upper = stream.estimate("no_harm"), stream.upper("no_harm", ADVANCING.alpha)
    assert estimate == pytest.approx(0.9, rel=1e-12)
    assert evidence.upper == upper
    # The bound in force: (upper - 1) x 10 % x 25 % within 0.2 %, an upper bound of 1.08.
    limit = 1.0 + 0.002 / (0.1 * 0.25)
    assert upper > limit
    # The bound's distance from the estimate shrinks as 1 / sqrt(n) on the log scale, n the
    # canary's 2,000 requests (not the baseline's 4,000).
    ratio = (math.log(upper) - math.log(estimate)) / (math.log(limit) - math.log(estimate))
    more = math.ceil(2000 * ratio**2) - 2000

    assert evidence.verdict is Verdict.INCONCLUSIVE
    assert more > 1000
    assert evidence.more == more


def test_a_pass_needs_no_more_samples() -> None:
    stream = _Stream().feed(400, 400, 40, over_all=20, ticks=10)
    evidence = stream.unit.evaluate(ADVANCING)

    assert stream.estimate("no_harm") == pytest.approx(0.5, rel=1e-12)
    assert evidence.upper == stream.upper("no_harm", ADVANCING.alpha) <= 1.0
    assert (evidence.verdict, evidence.more) == (Verdict.PASS, None)


# --- the guarantee a promotion rests on ------------------------------------------------------


def _ruled_out(test: float, promotable: float, no_harm: float) -> float | None:
    """The smallest increase whose sequence's bound on the exceedance ratio is within 1."""
    for tolerance, upper in ((TOLERANCE, test), (PROMOTE, promotable), (ADVANCE, no_harm)):
        if upper <= 1.0:
            return tolerance
    return None


@pytest.mark.parametrize(
    ("nc", "y", "slow", "bounds", "ruled_out"),
    [
        # Every bound at 1 exactly (a grid point): the tolerance itself is ruled out.
        (90, 20, {}, (1.0, 1.0, 1.0), TOLERANCE),
        (400, 40, {"over_all": 20, "ticks": 10}, (0.644, 0.644, 0.644), TOLERANCE),
        # Two requests slower than the tolerance only: its bound is above 1, not the promote one.
        (50, 40, {"over_test": 2}, (1.616, 0.869, 0.869), PROMOTE),
        # Two slower than the promote tolerance: only the advance one's bound, at 1, is within.
        (90, 20, {"over_promote": 2}, (1.896, 1.896, 1.0), ADVANCE),
        # Too few requests for any bound to reach 1.
        (20, 40, {}, (1.859, 1.859, 1.859), None),
        # The promote bound at the grid point just above 2 (a grid of the anchor 1 alone).
        (40, 40, {"over_promote": 2}, (2.014, 2.014, 1.041), None),
    ],
)
def test_the_increase_a_promotion_rules_out(
    nc: int,
    y: int,
    slow: dict[str, int],
    bounds: tuple[float, float, float],
    ruled_out: float | None,
) -> None:
    stream = _Stream().feed(nc, 400, y, **slow)
    uppers = tuple(stream.upper(name, PROMOTING.alpha) for name in SEQUENCES)
    assert uppers == pytest.approx(bounds, abs=5e-4)
    assert [u == 1.0 for u in uppers] == [b == 1.0 for b in bounds]  # the ties are exact
    assert _ruled_out(*uppers) == ruled_out
    evidence = stream.unit.evaluate(PROMOTING)

    assert evidence.upper == uppers[1]
    assert evidence.ruled_out == ruled_out
    assert stream.unit.evaluate(ADVANCING).ruled_out is None


def test_a_pass_at_a_bound_of_exactly_one_is_no_blast_radius_pass() -> None:
    stream = _Stream().feed(30, 400, 40)
    evidence = stream.unit.evaluate(ADVANCING)

    assert evidence.upper == stream.upper("no_harm", ADVANCING.alpha) == 1.0
    assert evidence.verdict is Verdict.PASS
    assert evidence.reason().message.endswith("upper bound at +30% ×1.00 (no harm at ×1 or less)")


# --- leaning toward harm: no blast-radius pass -----------------------------------------------


def _leaning(slow_canary: int, ticks: int) -> _Stream:
    """``ticks`` ticks: ``slow_canary`` of 200 canary requests beyond every tolerance, 40 of 400
    baseline ones beyond ``T``, and a margin wide enough for the blast radius to pass them."""
    check = CHECK.model_copy(update={"advance_abs_margin": 0.05})
    return _Stream(check).feed(200, 400, 40, over_all=slow_canary, ticks=ticks)


@pytest.mark.parametrize(
    ("slow_canary", "ticks", "clause"),
    [(28, 1, "estimate"), (30, 2, "against"), (30, 3, "detector")],
)
def test_a_canary_whose_quantile_leans_beyond_its_tolerance_gets_no_blast_radius_pass(
    slow_canary: int, ticks: int, clause: str
) -> None:
    stream = _leaning(slow_canary, ticks)
    evidence = stream.unit.evaluate(ADVANCING)
    upper = stream.upper("no_harm", ADVANCING.alpha)
    assert upper > 1.0 and (upper - 1.0) * 0.1 * 0.25 <= 0.05  # the margin alone would pass
    estimate = stream.estimate("no_harm")
    against = stream.oracles["test"].e_value(1.0)
    detector = stream.oracles["test"].detector(1.0)
    assert estimate == pytest.approx(slow_canary / 20, rel=1e-12)
    assert against > 1.0 and detector < 1 / 0.05  # leaning, not failing
    against_text = f"evidence against the tolerance at e = {against:.3g}"
    expected = {
        "detector": f"change detector at e = {detector:.3g} ≥ 5",
        "against": against_text,
        "estimate": f"canary requests beyond +30% of the baseline p90 {times(estimate)} as "
        f"frequent as baseline ones beyond it with {against_text}",
    }[clause]

    assert evidence.verdict is Verdict.INCONCLUSIVE
    assert evidence.leaning == expected
    assert evidence.reason().message.endswith(
        f"; leans toward harm ({expected}): the blast-radius margin does not apply"
    )
    # No samples to reach the bound itself: the estimate is at or beyond it.
    assert evidence.more is None


@pytest.mark.parametrize(("slow_canary", "ticks"), [(20, 10), (24, 1), (26, 2)])
def test_a_canary_with_nothing_pointing_to_a_regression_keeps_its_blast_radius_pass(
    slow_canary: int, ticks: int
) -> None:
    # At the baseline, or above it with the evidence against the tolerance at most 1.
    stream = _leaning(slow_canary, ticks)
    evidence = stream.unit.evaluate(ADVANCING)

    assert stream.estimate("no_harm") >= 1.0
    assert stream.oracles["test"].e_value(1.0) <= 1.0
    assert (evidence.verdict, evidence.leaning) == (Verdict.PASS, None)
