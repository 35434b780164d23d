"""Every check kind's stored units: read back to the same state and the same verdicts, or
refused naming the field.

A rollout stores its check groups with every unit and restores them after a restart; a unit
restored with one number wrong (a tolerance, a count, an anchor of its test, a window) goes on
deciding from it. Each kind is stored with data that gives every field a value of its own,
read back, stored again (the same plain data) and then fed the same ticks as the original:
the two must give the same evidence and the same reasons.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import orjson
import pytest

from canarystream.analysis.checks import (
    CheckGroup,
    CheckModel,
    ErrorRateCheck,
    Gate,
    GaugeCheck,
    GaugeUnit,
    LatencyCheck,
    LatencyShiftCheck,
    LatencyTracker,
    ProbeCheck,
    SloErrorRateCheck,
    SloLatencyCheck,
    Tick,
    Trackers,
)
from canarystream.analysis.cohort import CohortBucket
from canarystream.analysis.state import Reader
from canarystream.errors import StateFormatError

T0 = 1_790_000_000.0
GATES = [
    Gate(ready=False, next_share=0.1, promoting=False, alpha=0.2),
    Gate(ready=True, next_share=0.25, promoting=False, alpha=0.2),
    Gate(ready=True, next_share=1.0, promoting=True, alpha=0.05),
]


def _tick(rng: np.random.Generator, slow: float) -> tuple[CohortBucket, CohortBucket]:
    """A canary (``slow`` times the baseline's latency, more errors) and a baseline bucket."""
    buckets = []
    for factor, error_rate, n in ((slow, 0.06, 40), (1.0, 0.02, 160)):
        bucket = CohortBucket()
        for latency in rng.lognormal(np.log(80.0 * factor), 0.4, n):
            draw = rng.random()
            status = 503 if draw < error_rate else 429 if draw < 2 * error_rate else 200
            endpoint = "/cart" if rng.random() < 0.6 else "/pay"
            bucket.requests.add(float(latency), status)
            bucket.slice_for("endpoint", endpoint).add(float(latency), status)
        for name, mean in (("cpu", 0.4 * factor), ("queue", 12.0)):
            for value in rng.normal(mean, 0.05, 3):
                bucket.add_metric(name, float(value))
        for probe, fail in (("login", 0.1 * factor), ("search", 0.05)):
            for _ in range(4):
                bucket.add_probe(probe, bool(rng.random() >= fail))
        buckets.append(bucket)
    return buckets[0], buckets[1]


CHECKS: dict[str, CheckModel] = {
    "error-rate": ErrorRateCheck(
        tolerance=1.2, advance_tolerance=2.5, promote_tolerance=1.7, advance_abs_margin=0.004
    ),
    "error-rate-by-endpoint": ErrorRateCheck(breakdown="endpoint", error_statuses="429,500-599"),
    "latency": LatencyCheck(quantile=0.9, tolerance=0.1, advance_tolerance=0.3),
    "latency-by-endpoint": LatencyCheck(breakdown="endpoint", advance_abs_margin=0.01),
    "latency-shift": LatencyShiftCheck(tolerance=0.02, advance_tolerance=0.2, min_ticks=4),
    "gauges": GaugeCheck(tolerance=0.01, advance_tolerance=0.2, window=10, min_windows=3),
    "gauge-decrease": GaugeCheck(metric="cpu", direction="decrease", window=15),
    "probes": ProbeCheck(tolerance=1.2, advance_tolerance=4.0, advance_abs_margin=0.05),
    "probe-login": ProbeCheck(probe="login", critical=False),
    "slo-errors": SloErrorRateCheck(max_error_rate=0.05, error_statuses="429,500-599"),
    "slo-latency": SloLatencyCheck(quantile=0.95, max_ms=150.0, critical=False),
}


class _Run:
    """One check's group, its rollout's trackers, and the stream of ticks they were fed."""

    def __init__(self, check: CheckModel, seed: int) -> None:
        self.check = check
        self.rng = np.random.default_rng(seed)
        self.trackers: Trackers = {None: LatencyTracker(5.0)}
        for endpoint in ("/cart", "/pay"):
            self.trackers["endpoint", endpoint] = LatencyTracker(5.0)
        self.group = CheckGroup(check, alpha=0.04, trackers=self.trackers)
        self.now = T0

    def feed(self, ticks: int, slow: float = 1.3) -> None:
        for _ in range(ticks):
            self.now += 5.0
            canary, baseline = _tick(self.rng, slow)
            self.group.update(Tick(canary, baseline, self.trackers, self.now))
            for key, tracker in self.trackers.items():
                if key is None:
                    tracker.update(canary.requests, baseline.requests)
                else:
                    tracker.update(canary.slices[key], baseline.slices[key])

    def restored(self) -> _Run:
        """A run restored from this one's stored state (through JSON), with the same stream."""
        state = orjson.loads(orjson.dumps(self.group.to_state()))
        trackers = orjson.loads(
            orjson.dumps({repr(key): tracker.to_state() for key, tracker in self.trackers.items()})
        )
        run = copy.copy(self)
        run.rng = copy.deepcopy(self.rng)
        run.trackers = {
            key: LatencyTracker.from_state(trackers[repr(key)]) for key in self.trackers
        }
        run.group = CheckGroup.from_state(state, self.check, run.trackers)
        return run


def _evidence(group: CheckGroup) -> list[Any]:
    return [
        (e.name, e.verdict, e.e_value, e.upper, e.bound, e.reason().model_dump())
        for gate in GATES
        for e in group.evaluate(gate)
    ]


@pytest.mark.parametrize("name", list(CHECKS))
def test_a_stored_group_is_read_back_to_the_same_state_and_the_same_verdicts(name: str) -> None:
    run = _Run(CHECKS[name], seed=len(name))
    run.feed(12)
    state = run.group.to_state()
    restored = run.restored()

    assert restored.group.to_state() == state
    assert _evidence(restored.group) == _evidence(run.group)
    for r in (run, restored):
        r.feed(9, slow=2.5)
    assert restored.group.to_state() == run.group.to_state()
    assert _evidence(restored.group) == _evidence(run.group)


@pytest.mark.parametrize("name", list(CHECKS))
def test_every_number_of_a_stored_unit_is_the_one_read_back(name: str) -> None:
    """A field changed in the stored state is changed in the restored unit, whatever its
    value (not a default or another field that happened to be equal)."""
    run = _Run(CHECKS[name], seed=7)
    run.feed(8)
    state = orjson.loads(orjson.dumps(run.group.to_state()))
    stored = state["units"][0]["unit"]
    changed = 0
    for field, value in stored.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        edited = copy.deepcopy(state)
        edited["units"][0]["unit"][field] = value + 3 if isinstance(value, int) else value * 1.5
        restored = CheckGroup.from_state(edited, run.check, run.trackers)
        again = restored.to_state()["units"][0]["unit"]
        assert again[field] == edited["units"][0]["unit"][field], field
        changed += 1
    assert changed >= 1


def _state(name: str) -> tuple[_Run, dict[str, Any]]:
    run = _Run(CHECKS[name], seed=3)
    run.feed(6)
    return run, orjson.loads(orjson.dumps(run.group.to_state()))


def _refusal(run: _Run, state: dict[str, Any], check: CheckModel | None = None) -> str:
    with pytest.raises(StateFormatError) as raised:
        CheckGroup.from_state(state, check or run.check, run.trackers)
    return str(raised.value)


def test_a_unit_of_another_kind_is_refused() -> None:
    run, state = _state("error-rate")
    state["units"][0]["unit"]["kind"] = "probe"

    assert _refusal(run, state) == (
        "CheckGroup.units.0.unit.kind: unknown unit kind 'probe' for a error_rate check"
    )


def test_a_group_stored_for_another_check_is_refused() -> None:
    run, state = _state("probe-login")

    assert _refusal(run, state, ProbeCheck(probe="search")) == (
        "CheckGroup.name: 'probe-login' is not the policy's check 'probe-search'"
    )
    # The policy's own name counts, not only the derived one.
    named = ProbeCheck(probe="login", name="login-probe")
    assert _refusal(run, state, named) == (
        "CheckGroup.name: 'probe-login' is not the policy's check 'login-probe'"
    )


def test_a_gauge_unit_in_a_group_of_another_kind_is_refused() -> None:
    run, state = _state("gauge-decrease")
    other = LatencyShiftCheck()
    other_state = dict(state, name=other.default_name())
    with pytest.raises(StateFormatError) as raised:
        CheckGroup.from_state(other_state, other, run.trackers)
    # The kind is checked first, against the group's own check.
    assert str(raised.value) == (
        "CheckGroup.units.0.unit.kind: unknown unit kind 'gauge' for a latency_shift check"
    )
    unit = GaugeUnit.__new__(GaugeUnit)
    with pytest.raises(StateFormatError) as raised:
        unit.restore(Reader(state["units"][0]["unit"], "unit"), other, run.trackers)
    assert str(raised.value) == "unit.kind: a gauge unit in a group of LatencyShiftCheck"


def test_a_latency_unit_without_its_tracker_is_refused() -> None:
    run, state = _state("latency-by-endpoint")
    del run.trackers["endpoint", "/pay"]
    keys = [item["key"] for item in state["units"]]
    index = keys.index(["endpoint", "/pay"])

    assert _refusal(run, state) == (
        f"CheckGroup.units.{index}.unit.tracker: the rollout has no latency tracker for "
        "('endpoint', '/pay')"
    )


@pytest.mark.parametrize(
    ("name", "field", "value", "problem"),
    [
        ("error-rate", "exposure", [1, 2, 3], "expected 2 items, got 3"),
        ("error-rate", "events", [1], "expected 2 items, got 1"),
        ("error-rate-by-endpoint", "key", 3, "expected null, a string or a list of strings"),
        ("error-rate-by-endpoint", "ranges", [[500]], "expected a list of [integer, integer]"),
        ("latency", "samples", [1.5, 2], "expected a list of integers"),
        ("latency", "samples", [1, 2, 3], "expected 2 items, got 3"),
        ("latency", "quantile", "p90", "expected a number, got str"),
        ("latency-shift", "samples", [1, 2, 3], "expected 2 items, got 3"),
        ("latency-shift", "min_count", 2.5, "expected an integer, got float"),
        ("gauges", "window", [0.0, 1.0], "expected 4 items, got 2"),
        ("gauges", "metric", None, "expected a string, got null"),
        ("probes", "probe", 1, "expected a string, got int"),
        ("slo-errors", "budget", None, "expected a number, got null"),
        ("slo-errors", "events", 1.5, "expected an integer, got float"),
        ("slo-latency", "limit", "150", "expected a number, got str"),
        ("slo-latency", "describe", 2, "expected a string, got int"),
        ("slo-latency", "critical", 1, "expected a boolean, got int"),
    ],
)
def test_a_damaged_unit_is_refused_naming_its_field(
    name: str, field: str, value: Any, problem: str
) -> None:
    run, state = _state(name)
    state["units"][0]["unit"][field] = value

    assert _refusal(run, state).startswith(f"CheckGroup.units.0.unit.{field}: {problem}")


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ("name", "missing"),
        ("alpha", "missing"),
        ("dynamic", "missing"),
        ("overflow", "missing"),
        ("units", "missing"),
    ],
)
def test_a_damaged_group_is_refused_naming_its_field(field: str, problem: str) -> None:
    run, state = _state("gauges")
    del state[field]

    assert _refusal(run, state) == f"CheckGroup.{field}: {problem}"


def test_a_stored_gauge_window_not_yet_opened_reads_back_as_none() -> None:
    run = _Run(CHECKS["gauges"], seed=1)
    run.feed(1)
    state = orjson.loads(orjson.dumps(run.group.to_state()))
    (unit,) = [item["unit"] for item in state["units"] if item["key"] == "cpu"]
    unit["window_end"] = None
    restored = CheckGroup.from_state(state, run.check, run.trackers)

    assert restored.units["cpu"].to_state()["window_end"] is None
