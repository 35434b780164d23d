"""Smoke test of the leaning-evidence benchmark: one closed-loop rollout, and its summary."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.leaning import markdown, run_rollout, summarise


def test_one_regressed_rollout_is_counted_as_it_ran() -> None:
    row = run_rollout("errors-x3", 200.0, 0)

    assert row["cell"] == "errors-x3-200rps"
    assert (row["outcome"], row["furthest_stage"]) == ("rollback", 0)
    assert row["last"] == "back at baseline levels"  # the rollback verified
    minutes = row["minutes"]
    assert minutes is not None and 2 < minutes < 20
    # The canary had 1 % of 200 req/s until the rollback (give or take the router's delay).
    expected = 0.01 * 200 * minutes * 60
    assert 0.8 * expected < row["canary_requests"] < 1.2 * expected

    summary = summarise([row, {**row, "seed": 1, "outcome": "held", "minutes": None}])
    cell = summary["errors-x3-200rps"]
    assert (cell["rollouts"], cell["rollback"], cell["held"], cell["promote"]) == (2, 1, 1, 0)
    assert cell["median_minutes"] == minutes
    assert f"| errors-x3-200rps | 2 | 0 | 1 | 1 | 0 | {minutes:.1f} |" in markdown(summary)
