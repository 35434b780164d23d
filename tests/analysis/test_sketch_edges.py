"""The latency sketch at its edges: the top bin, ranks on a bin boundary, stored state.

A range that is a whole number of bins wide puts its top value in the last bin (the default
range does not: its last bin stays empty), so only such a sketch shows whether the top bin
is counted and read. A stored sketch is read back exactly as it was written, or refused
with the field and the bins named.
"""

from __future__ import annotations

import orjson
import pytest

from canarystream.analysis.sketch import LogHistogram
from canarystream.errors import AnalysisError, StateFormatError

# Ten bins of relative accuracy 10 % from 1 to gamma^10 (about 7.44): bins 0 to 10.
ACCURACY = 0.1
GAMMA = (1 + ACCURACY) / (1 - ACCURACY)
TOP = GAMMA**10


def _ten_bins() -> LogHistogram:
    return LogHistogram(accuracy=ACCURACY, low=1.0, high=TOP)


def _within_accuracy(estimate: float | None, value: float) -> bool:
    return estimate is not None and abs(estimate / value - 1) <= ACCURACY + 1e-9


def test_the_top_of_the_range_is_counted_in_the_top_bin() -> None:
    sketch = _ten_bins().add([TOP])
    assert _within_accuracy(sketch.quantile(0.5), TOP)
    assert sketch.to_state()["first"] == 10


def test_the_largest_value_is_the_top_quantile_when_it_is_in_the_top_bin() -> None:
    sketch = _ten_bins().add([2.0, TOP])
    # TOP is the lower edge of the top bin, whose centre is 10 % above it (bin 9's is 10 %
    # below: within the accuracy too, so the centre itself is asserted).
    assert sketch.quantile(1.0) == pytest.approx(TOP * (1 + ACCURACY))
    assert _within_accuracy(sketch.quantile(0.0), 2.0)


def test_a_quantile_whose_rank_falls_on_a_bin_boundary_is_the_lower_value() -> None:
    # Two values: the median is the smaller one (at least half the mass at or below it).
    sketch = LogHistogram().add([10.0, 1000.0])
    assert _within_accuracy(sketch.quantile(0.5), 10.0)
    assert _within_accuracy(sketch.quantile(0.51), 1000.0)


def test_the_state_holds_only_the_span_of_filled_bins() -> None:
    assert LogHistogram().to_state()["first"] == 0
    assert LogHistogram().to_state()["counts"] == []
    state = LogHistogram().add([40.0, 40.0]).to_state()
    assert state["counts"] == [2.0]
    spread = LogHistogram().add([40.0, 50.0]).to_state()
    assert spread["counts"][0] == 1.0
    assert spread["counts"][-1] == 1.0


def test_a_restored_sketch_answers_before_any_new_value() -> None:
    sketch = LogHistogram().add([10.0, 20.0, 30.0])
    restored = LogHistogram.from_state(orjson.loads(orjson.dumps(sketch.to_state())))
    assert [restored.quantile(q) for q in (0.0, 0.5, 1.0)] == [
        sketch.quantile(q) for q in (0.0, 0.5, 1.0)
    ]


def test_a_stored_sketch_with_empty_bins_has_no_quantile_whatever_its_total() -> None:
    state = {**LogHistogram().to_state(), "total": 3.0}
    assert LogHistogram.from_state(state).quantile(0.5) is None


def test_stored_counts_up_to_the_top_bin_are_read_and_past_it_refused() -> None:
    state = _ten_bins().to_state()
    top = LogHistogram.from_state({**state, "first": 9, "counts": [1.0, 2.0], "total": 3.0})
    assert _within_accuracy(top.quantile(1.0), TOP)

    with pytest.raises(StateFormatError) as past:
        LogHistogram.from_state({**state, "first": 10, "counts": [1.0, 2.0]})
    assert str(past.value) == "LogHistogram.counts: bins 10..12 outside the sketch"
    with pytest.raises(StateFormatError, match=r"^LogHistogram\.counts: bins -1\.\.0 outside"):
        LogHistogram.from_state({**state, "first": -1, "counts": [1.0]})


def test_invalid_parameters_are_refused_with_the_ranges_allowed() -> None:
    with pytest.raises(AnalysisError) as refused:
        LogHistogram(accuracy=0.5)
    assert str(refused.value) == "need 0 < accuracy < 0.5 and 0 < low < high"
