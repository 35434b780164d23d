"""The latency-shift check: sensitivity to a slower canary, silence on shared and benign changes."""

from __future__ import annotations

import numpy as np

from canarystream.analysis.checks import CheckGroup, Gate, Tick, Unit
from canarystream.analysis.cohort import CohortBucket
from canarystream.contracts.decision import Verdict
from canarystream.policy.model import LatencyShiftCheck

NOT_READY = Gate(ready=False, next_share=1.0, promoting=False, alpha=0.1)
ADVANCING = Gate(ready=True, next_share=1.0, promoting=False, alpha=0.1)
PROMOTING = Gate(ready=True, next_share=1.0, promoting=True, alpha=0.1)


def _bucket(latencies: np.ndarray) -> CohortBucket:
    bucket = CohortBucket()
    for value in latencies:
        bucket.requests.add(float(value), 200)
    return bucket


def _run(seed: int, canary_factor: float, ticks: int, per_tick: int, shared=None) -> list:
    rng = np.random.default_rng(seed)
    group = CheckGroup(LatencyShiftCheck(), alpha=0.01, trackers={})
    (unit,) = group.units.values()
    verdicts = []
    for tick in range(ticks):
        load = 1.0 if shared is None else shared(tick)
        base = rng.lognormal(np.log(80), 0.5, per_tick) * load
        canary = rng.lognormal(np.log(80), 0.5, per_tick) * load * canary_factor
        group.update(Tick(_bucket(canary), _bucket(base), {}, now=5.0 * tick))
        verdicts.append(unit.evaluate(NOT_READY).verdict)
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
    group = CheckGroup(LatencyShiftCheck(), alpha=0.01, trackers={})
    (unit,) = group.units.values()
    rng = np.random.default_rng(seed)
    for tick in range(ticks):
        base = rng.lognormal(np.log(80), 0.5, per_tick)
        canary = rng.lognormal(np.log(80), 0.5, per_tick) * factor
        group.update(Tick(_bucket(canary), _bucket(base), {}, now=5.0 * tick))
    return unit


def test_promotion_needs_the_bound_within_tolerance() -> None:
    # +6 %: shown within the advance tolerance (+15 %), not yet within the promote one (+7.5 %
    # by default), and no regression beyond the tolerance (+5 %) shown either.
    unit = _fed(seed=5, factor=1.06, ticks=30, per_tick=100)
    assert unit.evaluate(NOT_READY).verdict is Verdict.INCONCLUSIVE
    assert unit.evaluate(ADVANCING).verdict is Verdict.PASS
    promoting = unit.evaluate(PROMOTING)
    assert promoting.verdict is Verdict.INCONCLUSIVE
    reason = promoting.reason()
    # The reason shows the bound that was compared and the promote tolerance it was held to.
    assert reason.verdict is Verdict.INCONCLUSIVE
    assert reason.upper is not None and 0.075 < reason.upper <= 0.15
    assert reason.advance_tolerance is not None
    assert abs(reason.advance_tolerance - 0.075) < 1e-12
    advancing = unit.evaluate(ADVANCING).reason()
    assert advancing.verdict is Verdict.PASS and advancing.advance_tolerance == 0.15
    assert advancing.upper is not None and advancing.upper <= 0.15
    # Before the stage is ready no bound is compared, and none is shown as if it were.
    waiting = unit.evaluate(NOT_READY).reason()
    assert waiting.verdict is Verdict.INCONCLUSIVE and waiting.upper is None

    # An equal canary with more requests is shown within +7.5 %: promoted.
    same = _fed(seed=5, factor=1.0, ticks=100, per_tick=200)
    assert same.evaluate(PROMOTING).verdict is Verdict.PASS

    # +10 % with as many requests is beyond the tolerance, and shown to be.
    slower = _fed(seed=5, factor=1.10, ticks=100, per_tick=200)
    assert slower.evaluate(NOT_READY).verdict is Verdict.FAIL
    assert slower.evaluate(PROMOTING).verdict is Verdict.FAIL
