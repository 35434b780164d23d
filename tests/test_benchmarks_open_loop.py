"""Smoke test of the open-loop benchmark: two short recordings judged with backtest."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.open_loop import CELLS, markdown, run_rollout, summarise


def test_two_short_open_loop_rollouts_are_recorded_judged_and_summed_up(tmp_path: Path) -> None:
    cells = {cell.name: cell for cell in CELLS}
    healthy, late = cells["aa-1in6-10rps"], cells["errors-x3-onset-5m-1in6-10rps"]
    assert [s.traffic_percent for s in late.matched().stages] == [100 / 6]
    assert late.regression_at == 300.0
    rows = [run_rollout(healthy, 1, tmp_path, duration=120), run_rollout(late, 1, tmp_path, 120)]
    assert list(tmp_path.iterdir()) == []  # each recording is removed once judged
    for row in rows:
        for policy in ("default", "matched"):
            # routed one in six, never held: not for the sample ratio, not for the routing
            assert row[policy]["holds"] == 0, row[policy]
            assert row[policy]["outcome"] == "running"
    summary = summarise(rows, [healthy, late])
    assert summary["aa-1in6-10rps"]["matched"]["promoted"] == 0.0
    assert "| aa-1in6-10rps | 1 | default | 0 | 0 | 0 | 100 | 0 | 0 | - | - |" in markdown(summary)
