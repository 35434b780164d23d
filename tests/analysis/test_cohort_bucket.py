"""One tick of one cohort: what a bucket counts, and its stored form read back or refused.

A worker stores the open tick's buckets with the rollout, so a restart goes on from exactly
the telemetry it had; a stored bucket that does not fit is refused naming the field's path
(what a dead letter carries), never half read.
"""

from __future__ import annotations

from typing import Any

import pytest

from canarystream.analysis.cohort import CohortBucket, Slice, count_in
from canarystream.errors import StateFormatError


def _bucket() -> CohortBucket:
    bucket = CohortBucket()
    bucket.requests.add(40.0, 200)
    bucket.requests.add(55.5, 503)
    bucket.slice_for("endpoint", "/pay").add(12.0, 200)
    for name, value in (("cpu", 0.25), ("cpu", 0.75), ("mem", 1.0)):
        bucket.add_metric(name, value)
    for ok in (True, True, False):
        bucket.add_probe("login", ok)
    bucket.events = 6
    return bucket


def test_gauge_samples_sum_and_count_per_metric() -> None:
    assert _bucket().metrics == {"cpu": [1.0, 2.0], "mem": [1.0, 1.0]}


def test_probe_results_count_ok_and_failed_per_probe() -> None:
    assert _bucket().probes == {"login": [2, 1]}


def test_status_ranges_include_both_ends() -> None:
    statuses = {499: 1, 500: 2, 503: 4, 599: 8, 600: 16, 429: 32}
    assert count_in(statuses, ((500, 599),)) == 14
    assert count_in(statuses, ((429, 429), (500, 599))) == 46


def test_a_stored_bucket_is_read_back_whole() -> None:
    state = _bucket().to_state()
    again = CohortBucket.from_state(state)

    assert again.to_state() == state
    assert again.requests.latencies == [40.0, 55.5]
    assert again.requests.statuses == {200: 1, 503: 1}
    assert again.requests.latency_array().tolist() == [40.0, 55.5]
    assert again.slices[("endpoint", "/pay")].latencies == [12.0]
    assert (again.metrics, again.probes, again.events) == (
        {"cpu": [1.0, 2.0], "mem": [1.0, 1.0]},
        {"login": [2, 1]},
        6,
    )
    again.add_metric("cpu", 1.0)
    again.add_probe("login", False)
    assert (again.metrics["cpu"], again.probes["login"]) == ([2.0, 3.0], [2, 2])


def _with(**fields: Any) -> dict[str, Any]:
    return {**_bucket().to_state(), **fields}


SLICE = {"latencies": [12.0], "statuses": [[200, 1]]}


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (
            _with(slices=[{"key": ["endpoint", "/pay", "x"], "slice": SLICE}]),
            "CohortBucket.slices.0.key: expected [field, value]",
        ),
        (_with(metrics={"cpu": [1.0]}), "CohortBucket.metrics.cpu: expected 2 items, got 1"),
        (
            _with(probes={"login": [1, 2, 3]}),
            "CohortBucket.probes.login: expected 2 items, got 3",
        ),
        (
            _with(requests={"latencies": "x", "statuses": []}),
            "CohortBucket.requests.latencies: expected a list, got str",
        ),
        (
            _with(slices=[{"key": ["endpoint", "/pay"], "slice": {"latencies": [1.0]}}]),
            "CohortBucket.slices.0.slice.statuses: missing",
        ),
    ],
)
def test_a_stored_bucket_that_does_not_fit_is_refused_naming_the_field(
    state: dict[str, Any], message: str
) -> None:
    with pytest.raises(StateFormatError) as refused:
        CohortBucket.from_state(state)
    assert str(refused.value) == message


def test_a_stored_slice_is_refused_naming_the_slice() -> None:
    with pytest.raises(StateFormatError) as refused:
        Slice.from_state({"latencies": [1.0], "statuses": "x"})
    assert str(refused.value) == "Slice.statuses: expected a list, got str"
