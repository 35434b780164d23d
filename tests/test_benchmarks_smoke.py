"""Smoke test of the detection benchmark's core: two very short rollouts through the engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.batching import SIZES, rate, stream
from benchmarks.detection import (
    JUDGES,
    clopper_pearson_upper,
    markdown,
    run_rollout,
    summarise,
)
from canarystream.simulate.paired import Cell

# Seeded draws give one outcome per judge: (outcome, seconds to it) over six minutes.
EXPECTED = {
    "smoke-null": {
        "engine": ("held", None),  # no false rollback, and too early to promote
        "kayenta-5m": ("held", None),
        "kayenta-5m-critical": ("held", None),
        "kayenta-30m": ("held", None),
        "threshold-1m": ("rollback", 300),  # the fixed threshold's false alarm
    },
    "smoke-errors-x5": {
        "engine": ("rollback", 85.0),
        "kayenta-5m": ("held", None),
        "kayenta-5m-critical": ("rollback", 300),
        "kayenta-30m": ("held", None),
        "threshold-1m": ("rollback", 120),
    },
}


def test_two_short_rollouts_through_engine_and_peers() -> None:
    null = Cell("smoke-null", rate=8.0)
    regressed = Cell("smoke-errors-x5", rate=8.0, error_mult=5.0, null=False)
    rows = [run_rollout(null, seed=1, horizon_min=6), run_rollout(regressed, seed=2, horizon_min=6)]
    outcomes = {
        row["cell"]: {judge: (row[judge]["outcome"], row[judge]["seconds"]) for judge in JUDGES}
        for row in rows
    }
    assert outcomes == EXPECTED
    engine = rows[1]["engine"]
    assert engine["last"] == "critical regression: error_rate"
    assert 0 < engine["exposed"] < rows[1]["threshold-1m"]["exposed"]
    assert rows[0]["engine"]["exposed"] is None  # counted for rollbacks only
    summary = summarise(rows, [null, regressed])
    assert summary["smoke-errors-x5"]["engine"]["rollback"] == 1.0
    assert summary["smoke-errors-x5"]["engine"]["ttd_median_s"] == 85.0
    assert summary["smoke-null"]["engine"]["rollback"] == 0.0
    assert summary["smoke-null"]["engine"]["held"] == 1.0
    assert summary["smoke-null"]["threshold-1m"]["rollback"] == 1.0
    table = markdown(summary)
    assert "| smoke-null | 1 | 0.0 | 97.5 | 100.0 | 0.0 |" in table
    assert "| smoke-errors-x5 | 1 | 100.0 | 0.0 | 0.0 | 85 | 85 |" in table


def test_clopper_pearson_upper_matches_the_rule_of_three() -> None:
    assert clopper_pearson_upper(0, 1000) == pytest.approx(0.00368, abs=1e-4)
    assert clopper_pearson_upper(5, 5) == 1.0


def test_the_batching_benchmark_leaves_nothing_waiting_at_any_message_size() -> None:
    events = stream(minutes=0.5)
    for size in SIZES:
        per_second, waiting = rate(events, size, repeat=1)
        assert per_second > 0
        assert waiting < size  # at most the last message's events wait for a next one
