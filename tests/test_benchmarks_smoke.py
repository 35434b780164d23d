"""Smoke test of the detection benchmark's core: two very short rollouts through the engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.detection import (
    JUDGES,
    clopper_pearson_upper,
    markdown,
    run_rollout,
    summarise,
)
from benchmarks.gen import Cell


def test_two_short_rollouts_through_engine_and_peers() -> None:
    null = Cell("smoke-null", rate=8.0)
    regressed = Cell("smoke-errors-x5", rate=8.0, error_mult=5.0, null=False)
    rows = [run_rollout(null, seed=1, horizon_min=6), run_rollout(regressed, seed=2, horizon_min=6)]
    for row in rows:
        for judge in JUDGES:
            assert row[judge]["outcome"] in ("rollback", "promote", "held")
    # At 5 x the error rate the engine rolls back within six minutes.
    assert rows[1]["engine"]["outcome"] == "rollback"
    assert 0 < rows[1]["engine"]["seconds"] <= 360
    summary = summarise(rows, [null, regressed])
    assert summary["smoke-errors-x5"]["engine"]["rollback"] == 1.0
    assert "smoke-null" in markdown(summary)


def test_clopper_pearson_upper_matches_the_rule_of_three() -> None:
    assert clopper_pearson_upper(0, 1000) == pytest.approx(0.00368, abs=1e-4)
    assert clopper_pearson_upper(5, 5) == 1.0
