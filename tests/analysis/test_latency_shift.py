"""The latency-shift check: sensitivity to a slower canary, silence on shared and benign changes."""

from __future__ import annotations

import numpy as np

from canarystream.analysis.checks import CheckGroup, Unit
from canarystream.analysis.cohort import CohortBucket
from canarystream.contracts.decision import Verdict
from canarystream.policy.model import LatencyShiftCheck


def _bucket(latencies: np.ndarray) -> CohortBucket:
    bucket = CohortBucket()
    for value in latencies:
        bucket.requests.add(float(value), 200)
    return bucket


def _run(seed: int, canary_factor: float, ticks: int, per_tick: int, shared=None) -> list:
    rng = np.random.default_rng(seed)
    group = CheckGroup(LatencyShiftCheck(), alpha=0.01)
    (unit,) = group.units.values()
    verdicts = []
    for tick in range(ticks):
        load = 1.0 if shared is None else shared(tick)
        base = rng.lognormal(np.log(80), 0.5, per_tick) * load
        canary = rng.lognormal(np.log(80), 0.5, per_tick) * load * canary_factor
        group.fold(_bucket(canary), _bucket(base), {}, now=5.0 * tick)
        verdicts.append(unit.verdict(None))
    return verdicts


def test_a_25_percent_slower_canary_fails_within_a_minute_at_8_rps() -> None:
    # 8 requests/s per cohort, 5 s ticks: 40 requests per tick.
    first_fail = []
    for seed in range(20):
        verdicts = _run(seed, 1.25, ticks=36, per_tick=40)
        first_fail.append(verdicts.index(Verdict.FAIL) if Verdict.FAIL in verdicts else None)
    assert all(f is not None for f in first_fail)
    assert float(np.median(first_fail)) * 5.0 <= 60.0


def test_no_false_failure_for_equal_or_benign_canaries_under_shared_swings() -> None:
    # A/A, a +2 % benign offset, and both cohorts tripling their latency together mid-run:
    # none may fail (alpha 1 % per run; 3 x 100 runs make a single false failure unlikely
    # but possible, so allow one).
    def spike(tick: int) -> float:
        return 3.0 if 20 <= tick < 40 else 1.0

    failures = 0
    for seed in range(100):
        for factor, shared in ((1.0, None), (1.02, None), (1.0, spike)):
            failures += Verdict.FAIL in _run(1000 + seed, factor, 72, 20, shared)
    assert failures <= 1


def _fed(seed: int, factor: float, ticks: int, per_tick: int) -> Unit:
    group = CheckGroup(LatencyShiftCheck(), alpha=0.01)
    (unit,) = group.units.values()
    rng = np.random.default_rng(seed)
    for tick in range(ticks):
        base = rng.lognormal(np.log(80), 0.5, per_tick)
        canary = rng.lognormal(np.log(80), 0.5, per_tick) * factor
        group.fold(_bucket(canary), _bucket(base), {}, now=5.0 * tick)
    return unit


def test_promotion_needs_the_bound_within_tolerance() -> None:
    # +6 %: shown within the advance tolerance (+15 %), not yet within the promote one (+7.5 %
    # by default), and no regression beyond the tolerance (+5 %) shown either.
    unit = _fed(seed=5, factor=1.06, ticks=30, per_tick=100)
    assert unit.verdict(None) is Verdict.INCONCLUSIVE
    assert unit.verdict(0.1, promoting=False) is Verdict.PASS
    assert unit.verdict(0.1, promoting=True) is Verdict.INCONCLUSIVE
    upper = unit.reason(0.1, promoting=True).upper
    assert upper is not None and 0.075 < upper <= 0.15

    # An equal canary with more requests is shown within +7.5 %: promoted.
    same = _fed(seed=5, factor=1.0, ticks=100, per_tick=200)
    assert same.verdict(0.1, promoting=True) is Verdict.PASS

    # +10 % with as many requests is beyond the tolerance, and shown to be.
    slower = _fed(seed=5, factor=1.10, ticks=100, per_tick=200)
    assert slower.verdict(None) is Verdict.FAIL
    assert slower.verdict(0.1, promoting=True) is Verdict.FAIL
