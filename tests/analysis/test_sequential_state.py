"""Stored sequences that cannot be what ``to_state`` wrote are refused, naming the field.

A refused state is dead-lettered with the error's text, so the text must say which object and
which field of it was wrong; a state that reads back must give back every parameter, not the
constructor's defaults.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from canarystream.analysis.sequential import MeanSequence, RatioSequence
from canarystream.errors import AnalysisError, StateFormatError


def _stored(seq: RatioSequence | MeanSequence) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(seq.to_state()))


@pytest.mark.parametrize("anchors", [[], [1.0, 0.0], [-1.0, 1.1], [0.0]])
def test_a_ratio_sequence_without_positive_anchors_is_refused(anchors: list[float]) -> None:
    state = _stored(RatioSequence((1.0, 1.1)).update(3, 1, 10.0, 10.0))
    state["anchors"] = anchors

    with pytest.raises(StateFormatError) as refused:
        RatioSequence.from_state(state)

    assert str(refused.value) == "RatioSequence.anchors: expected positive ratios"


def test_a_ratio_sequence_whose_likelihood_does_not_fit_its_grid_is_refused() -> None:
    state = _stored(RatioSequence((1.0, 1.1)).update(3, 1, 10.0, 10.0))
    size = len(state["loglik"])
    state["loglik"] = state["loglik"][:-1]

    with pytest.raises(StateFormatError) as refused:
        RatioSequence.from_state(state)

    assert str(refused.value) == f"RatioSequence.loglik: expected {size} items, got {size - 1}"


def test_a_mean_sequence_keeps_its_variance_floor_and_target_across_a_restore() -> None:
    seq = MeanSequence(target=7, min_variance=0.25)
    for _ in range(10):
        seq.update(3.0)  # a constant stream: the variance is the floor
    restored = MeanSequence.from_state(_stored(seq))

    assert (restored.target, restored.min_variance) == (7, 0.25)
    assert restored.variance == seq.variance == 0.25
    assert restored.interval(0.05) == seq.interval(0.05)


@pytest.mark.parametrize(
    ("seq", "field"),
    [(RatioSequence((1.0,)), "x_total"), (MeanSequence(), "count")],
    ids=["ratio", "mean"],
)
def test_a_bad_field_is_named_with_its_object(
    seq: RatioSequence | MeanSequence, field: str
) -> None:
    state = _stored(seq)
    state[field] = "many"

    with pytest.raises(StateFormatError) as refused:
        type(seq).from_state(state)

    name = type(seq).__name__
    assert re.fullmatch(rf"{name}\.{field}: expected an integer, got str", str(refused.value))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MeanSequence(target=0), "target must be at least 1"),
        (lambda: RatioSequence((1.0, 0.0)), "ratio anchors must be positive"),
        (
            lambda: RatioSequence().update(1, -1, 1.0, 1.0),
            "counts and exposures must be non-negative",
        ),
    ],
    ids=["target", "anchors", "counts"],
)
def test_invalid_arguments_say_what_is_wrong(make: Any, message: str) -> None:
    with pytest.raises(AnalysisError, match=f"^{message}$"):
        make()
