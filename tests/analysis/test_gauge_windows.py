"""Gauge windows: a long gap in event time is stepped over at once, not window by window."""

from __future__ import annotations

import time

from canarystream.analysis.checks import GaugeUnit, Tick
from canarystream.analysis.cohort import CohortBucket
from canarystream.policy.model import GaugeCheck

T0 = 1_790_000_000.0


def _bucket(value: float) -> CohortBucket:
    bucket = CohortBucket()
    bucket.add_metric("cpu", value)
    return bucket


def test_a_gap_of_a_year_costs_no_more_than_a_few_windows() -> None:
    unit = GaugeUnit("gauge-cpu", "cpu", GaugeCheck(metric="cpu", window=0.1), 0.01)
    unit.update(Tick(_bucket(0.5), _bucket(0.4), {}, T0))
    started = time.perf_counter()
    unit.update(Tick(_bucket(0.5), _bucket(0.4), {}, T0 + 365 * 86_400.0))
    assert time.perf_counter() - started < 0.05
    assert unit.window_end is not None
    assert T0 + 365 * 86_400.0 < unit.window_end <= T0 + 365 * 86_400.0 + 0.1 + 1e-6


def test_windows_close_as_before_on_a_steady_stream() -> None:
    """Tick by tick the window ends advance by addition, exactly as they always have."""
    unit = GaugeUnit("gauge-cpu", "cpu", GaugeCheck(metric="cpu", window=10), 0.01)
    ends = []
    for k in range(1, 200):
        unit.update(Tick(_bucket(0.5 + k % 3 / 10), _bucket(0.5), {}, T0 + 5.0 * k))
        ends.append(unit.window_end)
    expected, end = [], T0 + 5.0 + 10
    for k in range(1, 200):
        while end <= T0 + 5.0 * k:
            end += 10
        expected.append(end)
    assert ends == expected
    assert unit.diffs.count == 99
