"""Validation of the latency sketch against exact quantiles from numpy."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from canarystream.analysis.sketch import LogHistogram
from canarystream.errors import AnalysisError

QUANTILES = (0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0)
SLACK = 1e-9  # float rounding at bin edges, far below any accuracy setting


def _latencies(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """Latency-like samples in milliseconds, all inside the sketch's default range."""
    if kind == "lognormal":
        return rng.lognormal(4.0, 0.7, size)
    if kind == "exponential":
        return 0.5 + rng.exponential(50.0, size)
    # Mixed: cache hits near 0.1 ms, a lognormal body, 1 % timeouts between 10 and 30 s.
    parts = [
        rng.uniform(0.05, 0.2, size // 5),
        rng.lognormal(5.0, 0.4, size - size // 5 - size // 100),
        rng.uniform(10_000.0, 30_000.0, size // 100),
    ]
    return rng.permutation(np.concatenate(parts))


def _assert_within_accuracy(sketch: LogHistogram, values: np.ndarray, q: float) -> None:
    """The estimate is within ``accuracy`` (relative) of a value numpy's ``q`` quantile
    interpolates between, i.e. of an order statistic next to rank ``q (n - 1)``."""
    low = float(np.quantile(values, q, method="lower"))
    high = float(np.quantile(values, q, method="higher"))
    estimate = sketch.quantile(q)
    assert estimate is not None
    accuracy = sketch.accuracy + SLACK
    assert low * (1 - accuracy) <= estimate <= high * (1 + accuracy), (q, low, high, estimate)


@pytest.mark.parametrize("accuracy", [0.005, 0.01, 0.02])
@pytest.mark.parametrize("kind", ["lognormal", "exponential", "mixed"])
def test_quantiles_are_within_relative_accuracy_of_numpy(kind: str, accuracy: float) -> None:
    rng = np.random.default_rng(int(accuracy * 1000) + len(kind))
    values = _latencies(kind, rng, 40_000)
    sketch = LogHistogram(accuracy=accuracy).add(values)
    assert sketch.total == values.size
    for q in QUANTILES:
        _assert_within_accuracy(sketch, values, q)


def test_every_value_in_range_is_recovered_within_accuracy() -> None:
    """A lone value comes back as its bin's centre, within ``accuracy`` across the range."""
    sketch_args = {"accuracy": 0.01, "low": 0.01, "high": 3.6e6}
    values = np.exp(np.random.default_rng(2).uniform(math.log(0.01), math.log(3.6e6), 2000))
    values = np.concatenate([values, [0.01, 3.6e6, 1.0, 1000.0]])
    for value in values.tolist():
        estimate = LogHistogram(**sketch_args).add([value]).quantile(0.5)
        assert estimate is not None
        assert abs(estimate / value - 1) <= 0.01 + SLACK, value


def test_batch_add_equals_one_by_one_adds() -> None:
    values = _latencies("mixed", np.random.default_rng(3), 3000)
    batch = LogHistogram().add(values)
    single = LogHistogram()
    for value in values.tolist():
        single.add([value])
    chunked = LogHistogram()
    for chunk in np.array_split(values, 7):
        chunked.add(chunk.tolist())

    for other in (single, chunked):
        np.testing.assert_array_equal(other.counts, batch.counts)
        assert other.total == batch.total
        assert [other.quantile(q) for q in QUANTILES] == [batch.quantile(q) for q in QUANTILES]


def test_decay_halves_totals_and_keeps_quantiles() -> None:
    values = _latencies("lognormal", np.random.default_rng(4), 10_000)
    sketch = LogHistogram().add(values)
    before = sketch.counts.copy()
    quantiles = [sketch.quantile(q) for q in QUANTILES]

    assert sketch.decay(0.5) is sketch
    assert sketch.total == 5000.0
    np.testing.assert_array_equal(sketch.counts, before / 2)
    assert [sketch.quantile(q) for q in QUANTILES] == quantiles
    sketch.decay(1.0)  # no-op
    assert sketch.total == 5000.0


def test_decay_weights_recent_values_more() -> None:
    sketch = LogHistogram().add(np.full(1000, 10.0))
    sketch.decay(0.5).add(np.full(1000, 100.0))  # old data now weighs 500 against 1000
    assert sketch.quantile(0.3) == pytest.approx(10.0, rel=0.01)
    assert sketch.quantile(0.4) == pytest.approx(100.0, rel=0.01)


@pytest.mark.parametrize("factor", [0.9, 0.7, 0.3, 0.1, 0.95, 0.99, 0.5**0.05])
def test_extreme_quantiles_after_fractional_decay_stay_on_the_data(factor: float) -> None:
    """After decay by a factor that is not a power of two, q = 0 and q = 1 are still the
    smallest and largest values seen (within accuracy), not the edges of the range."""
    values = _latencies("lognormal", np.random.default_rng(5), 1000)
    sketch = LogHistogram().add(values)
    for _ in range(3):
        sketch.decay(factor).add(values[:10])
    assert sketch.quantile(1.0) == pytest.approx(values.max(), rel=0.01 + SLACK)
    assert sketch.quantile(0.0) == pytest.approx(values.min(), rel=0.01 + SLACK)


def test_empty_sketch_has_no_quantiles() -> None:
    sketch = LogHistogram()
    assert sketch.quantile(0.5) is None
    assert sketch.add([]).quantile(0.99) is None
    assert sketch.decay(0.5).quantile(0.5) is None
    assert sketch.add([20.0]).quantile(0.5) == pytest.approx(20.0, rel=0.01)


def test_values_out_of_range_are_clamped_into_the_edge_bins() -> None:
    sketch = LogHistogram(accuracy=0.01, low=1.0, high=1000.0)
    sketch.add([1e-6, 0.0, -3.0, 0.5, 1.0, 5e3, 1e9, math.inf])
    assert sketch.total == 8
    assert sketch.counts.sum() == 8
    assert sketch.quantile(0.25) == pytest.approx(1.0, rel=0.01 + SLACK)
    assert sketch.quantile(0.5) == pytest.approx(1.0, rel=0.01 + SLACK)
    assert sketch.quantile(0.75) == pytest.approx(1000.0, rel=0.01 + SLACK)
    assert sketch.quantile(1.0) == pytest.approx(1000.0, rel=0.01 + SLACK)


def test_quantiles_follow_new_values_and_decay() -> None:
    sketch = LogHistogram().add(np.full(100, 5.0))
    assert sketch.quantile(0.99) == pytest.approx(5.0, rel=0.01)
    sketch.add(np.full(300, 50.0))
    assert sketch.quantile(0.5) == pytest.approx(50.0, rel=0.01)
    sketch.decay(0.001).add(np.full(2, 500.0))  # 100 x 5 ms and 300 x 50 ms now weigh 0.4
    assert sketch.quantile(0.5) == pytest.approx(500.0, rel=0.01)


def test_state_round_trip_preserves_state_and_continues_identically() -> None:
    rng = np.random.default_rng(6)
    sketch = LogHistogram(accuracy=0.02, low=0.1, high=1e5).add(_latencies("mixed", rng, 5000))
    sketch.quantile(0.5)
    state = orjson.loads(orjson.dumps(sketch.to_state()))
    assert 0 < len(state["counts"]) < sketch.counts.size  # only the bins that hold counts
    restored = LogHistogram.from_state(state)
    np.testing.assert_array_equal(restored.counts, sketch.counts)
    assert (restored.total, restored.accuracy, restored.low, restored.high) == (
        sketch.total,
        sketch.accuracy,
        sketch.low,
        sketch.high,
    )
    more = _latencies("lognormal", rng, 2000)
    for target in (sketch, restored):
        target.decay(0.8).add(more)
    np.testing.assert_array_equal(restored.counts, sketch.counts)
    assert [restored.quantile(q) for q in QUANTILES] == [sketch.quantile(q) for q in QUANTILES]


@pytest.mark.parametrize(
    "kwargs",
    [{"accuracy": 0.0}, {"accuracy": 0.5}, {"low": 0.0}, {"low": 10.0, "high": 10.0}],
)
def test_invalid_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(AnalysisError):
        LogHistogram(**kwargs)


def test_empty_sketch_state_round_trip() -> None:
    restored = LogHistogram.from_state(orjson.loads(orjson.dumps(LogHistogram().to_state())))

    assert restored.total == 0 and not restored.counts.any()
    assert restored.quantile(0.5) is None
