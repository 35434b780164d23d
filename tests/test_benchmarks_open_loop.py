"""The open-loop benchmark: two short recordings judged with backtest, and its summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.open_loop import (
    CELLS,
    T0,
    _outcome,
    guarantee_text,
    markdown,
    run_rollout,
    summarise,
)
from canarystream.contracts.decision import Action, Decision, Phase


def test_two_short_open_loop_rollouts_are_recorded_judged_and_summed_up(tmp_path: Path) -> None:
    cells = {cell.name: cell for cell in CELLS}
    healthy, late = cells["aa-1in6-10rps"], cells["errors-x3-onset-5m-1in6-10rps"]
    assert [s.traffic_percent for s in late.matched().stages] == [100 / 6]
    assert late.regression_at == late.detect_from == 300.0
    rows = [run_rollout(healthy, 1, tmp_path, duration=120), run_rollout(late, 1, tmp_path, 120)]
    assert list(tmp_path.iterdir()) == []  # each recording is removed once judged
    for row in rows:
        for policy in ("default", "matched"):
            # routed one in six, never held: not for the sample ratio, not for the routing
            assert row[policy]["holds"] == 0, row[policy]
            assert row[policy]["outcome"] == "running"
            assert row[policy]["guarantee"] == {}
    summary = summarise(rows, [healthy, late])
    assert summary["aa-1in6-10rps"]["matched"]["promoted"] == 0.0
    table = markdown(summary)
    assert "| aa-1in6-10rps | 1 | default | 0 | 0 | 0 | 100 | 0 / 0 | - | - | - | 0 | - |" in table
    assert (
        "| errors-x3-onset-5m-1in6-10rps | 1 | matched | 0 | 0 | 0 | 100 | 0 / 0 | 300 |" in table
    )


def test_a_drift_is_timed_from_crossing_the_tolerance_and_onsets_move_the_regression() -> None:
    cells = {cell.name: cell for cell in CELLS}
    # +10 % per 10 minutes from the start crosses the +5 % latency tolerance at 5 minutes;
    # the preset's +20 % per 10 minutes from minute 2 at 2.5 minutes after its onset.
    assert cells["latency-drift-10pct-per-10m-1in6-10rps"].detect_from == 300.0
    gradual = cells["gradual-latency-1in6-10rps"]
    assert (gradual.regression_at, gradual.detect_from) == (120.0, 270.0)
    cpu = cells["gauge-cpu+0.15-from-10m-1in6-1rps"]
    assert cpu.detect_from == 600.0
    assert cpu.scenario(0).regression.onset == 600.0
    assert cpu.scenario(0).traffic.total_rps == 6.0  # a 1-in-6 canary of 1 req/s
    for name in ("aa-1in6-1rps", "aa-1in6-2rps"):
        assert name in cells


def _promotion(error: float, p99: float | None, cpu: float) -> dict[str, Any]:
    return {
        "outcome": "promote",
        "seconds": 1800.0 if p99 is not None else 1830.0,
        "detect_s": None,
        "ratio_holds": 0,
        "unapplied_holds": 0,
        "under_rule": p99 is None,
        "guarantee": {
            "error_rate": {"kind": "error_rate", "ruled_out": error, "risk": None},
            "latency_shift": {"kind": "latency_shift", "ruled_out": 0.012, "risk": None},
            "latency-p99": {"kind": "latency", "ruled_out": p99, "risk": None},
            "gauges[cpu_utilization]": {"kind": "gauge", "ruled_out": cpu, "risk": None},
        },
    }


def _rollback(detect: float | None) -> dict[str, Any]:
    return {
        "outcome": "rollback",
        "detect_s": detect,
        "ratio_holds": 0,
        "unapplied_holds": 0,
        "under_rule": False,
        "guarantee": {},
    }


def test_the_summary_takes_the_median_guarantee_of_promotions_and_sets_early_rollbacks_apart() -> (
    None
):
    cells = {cell.name: cell for cell in CELLS}
    healthy, drift = cells["aa-1in6-2rps"], cells["latency-drift-10pct-per-10m-1in6-10rps"]
    promotions = [_promotion(1.2, 0.15, 0.004), _promotion(1.4, None, 0.006)]
    promotions.append(_promotion(2.0, 0.05, 0.005))
    rows = [{"cell": healthy.name, "default": p, "matched": p} for p in promotions]
    rows.append({"cell": healthy.name, "default": _rollback(None), "matched": _rollback(None)})
    for detect in (-30.0, 100.0, 200.0, 300.0):
        rows.append({"cell": drift.name, "default": _rollback(detect), "matched": _rollback(50)})
    summary = summarise(rows, [healthy, drift])
    mine = summary[healthy.name]["default"]
    assert (mine["promoted"], mine["rollback"], mine["promoted_under_rule"]) == (0.75, 0.25, 1)
    assert mine["promoted_by_30m"] == 0.5  # one promotion came at 30:30
    assert mine["guarantee"]["error_rate"] == {
        "kind": "error_rate",
        "ruled_out_median": 1.4,
        "waived": 0,
    }
    assert mine["guarantee"]["latency-p99"]["ruled_out_median"] == 0.1
    assert mine["guarantee"]["latency-p99"]["waived"] == 1
    assert guarantee_text(mine["guarantee"]) == (
        "errors ≤ ×1.40, typical ≤ +1.2%, p99 ≤ +10.0% (waived in 1), cpu_utilization ≤ +0.005"
    )
    assert guarantee_text({}) == "-"
    assert guarantee_text(
        {"latency-p99": {"kind": "latency", "ruled_out_median": None, "waived": 2}}
    ) == ("p99 waived")
    # A false rollback of a healthy canary is no detection; a drift's rollback before it
    # crossed its tolerance is counted apart, not as a time to detect of 0.
    assert mine["ttd_median_s"] is None
    timed = summary[drift.name]
    assert timed["detect_from_s"] == 300.0
    assert timed["default"]["early_rollbacks"] == 1
    assert timed["default"]["ttd_median_s"] == 200.0
    assert timed["default"]["ttd_p90_s"] == 280.0
    assert timed["matched"]["early_rollbacks"] == 0
    table = markdown(summary)
    assert (
        f"| {healthy.name} | 4 | default | 75 (1 rule) | 25 | 0 | 0 | 0 / 0 | - | - | - | 0 | "
        "errors ≤ ×1.40, typical ≤ +1.2%" in table
    )
    assert (
        f"| {drift.name} | 4 | default | 0 | 100 | 0 | 0 | 0 / 0 | 300 | 200 | 280 | 1 | - |"
        in (table)
    )


def _decision(seq: int, action: Action, phase: Phase, summary: str) -> Decision:
    return Decision(
        decision_id=f"d-{seq}",
        deployment="d",
        service="s",
        seq=seq,
        action=action,
        ts=T0 + 60.0 * seq,
        stage=0,
        traffic_percent=1.0,
        phase=phase,
        baseline_version="v1",
        canary_version="v2",
        policy="default",
        summary=summary,
    )


def test_only_a_decision_not_applied_counts_as_such_not_the_low_traffic_rule_left_unapplied() -> (
    None
):
    cell = {cell.name: cell for cell in CELLS}["aa-1in6-1rps"]
    running, held = Phase.RUNNING, Phase.HELD
    decisions = [
        _decision(0, Action.ADVANCE, running, "rollout started; stage 0 at 1% traffic"),
        _decision(1, Action.HOLD, held, "stage 0 deadline passed; low-traffic rule not applied"),
        _decision(2, Action.HOLD, held, "decision not applied: advance set the canary's share"),
        _decision(3, Action.HOLD, held, "sample ratio mismatch"),
    ]
    outcome = _outcome(decisions, cell)
    assert (outcome["outcome"], outcome["holds"]) == ("held", 3)
    assert (outcome["unapplied_holds"], outcome["ratio_holds"]) == (1, 1)
    assert outcome["guarantee"] == {} and outcome["detect_s"] is None
