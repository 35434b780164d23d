"""Low-traffic benchmark: healthy canaries at 1, 2 and 5 req/s on the default 30-minute plan.

Run with ``python -m benchmarks.lowtraffic [--scale X] [--workers 2]``. Same telemetry and
feeding as :mod:`benchmarks.detection` (paired cohorts of ``rate`` req/s each, the default
policy with ``baseline_mode: paired``: stages 1, 5, 10, 25, 50 % of 6 minutes), engine only.
A rollout runs until its first rollback or promotion, or 45 minutes of event time. Reported
per cell: promoted by the plan's end (30 min) and by 45 min (and how many of those under the
policy's low-traffic rule), held, rolled back, and for the healthy promotions the largest
effect each check ruled out at the promote confidence.
Results: ``benchmarks/results/lowtraffic.json`` and ``benchmarks/results/lowtraffic.md``.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from benchmarks.detection import clopper_pearson_upper
from benchmarks.paired import TERMINAL, paired_decisions
from benchmarks.pool import arguments, machine, pooled, scaled, write_results
from canarystream.analysis.sequential import RatioSequence
from canarystream.simulate.paired import MEDIAN_MS, SIGMA, T0, Cell

__all__ = ["CELLS", "main", "p99_reach", "run_rollout", "summarise"]

HORIZON_MIN = 45
PLAN_S = 1800.0


def _cells() -> list[tuple[Cell, int]]:
    rates = (1.0, 2.0, 5.0)
    cells = [(Cell(f"aa-{rate:g}rps", rate=rate), 200) for rate in rates]
    for rate in rates:
        cells.append(
            (Cell(f"reg-errors-x3-{rate:g}rps", rate=rate, null=False, error_mult=3.0), 60)
        )
        cells.append(
            (Cell(f"reg-latency-x1.25-{rate:g}rps", rate=rate, null=False, latency_mult=1.25), 60)
        )
    return cells


CELLS = _cells()


def run_rollout(cell: Cell, seed: int, horizon_min: int = HORIZON_MIN) -> dict[str, Any]:
    """One rollout of ``cell``: its outcome, when, and the last decision's account."""
    outcome, seconds, last = "held", None, None
    for decisions in paired_decisions(cell, seed, horizon_min):
        for decision in decisions:
            last = decision
            if decision.action.value in TERMINAL:
                outcome, seconds = decision.action.value, decision.ts - T0
        if seconds is not None:
            break
    checks: dict[str, dict[str, Any]] = {}
    if last is not None:
        for reason in last.reasons:
            checks[reason.check] = {
                "verdict": reason.verdict.value,
                "ruled_out": getattr(reason, "ruled_out", None),
            }
    under_rule = outcome == "promote" and last is not None and "low-traffic rule" in last.summary
    return {
        "cell": cell.name,
        "seed": seed,
        "outcome": outcome,
        "under_rule": under_rule,
        "seconds": seconds,
        "stage": None if last is None else last.stage,
        "summary": "" if last is None else last.summary[:400],
        "checks": checks,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per cell: shares promoted (by the plan's end and by 45 min), held, rolled back."""
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_cell[row["cell"]].append(row)
    out: dict[str, Any] = {}
    for cell, _ in CELLS:
        found = by_cell.get(cell.name, [])
        if not found:
            continue
        n = len(found)
        promoted = [r for r in found if r["outcome"] == "promote"]
        rollbacks = [r for r in found if r["outcome"] == "rollback"]
        on_plan = [r for r in promoted if r["seconds"] <= PLAN_S + 1e-6]
        held = [r for r in found if r["outcome"] == "held"]
        # Which checks were still short of a verdict in the held rollouts' last decision.
        waiting: Counter[str] = Counter()
        for row in held:
            for name, check in row["checks"].items():
                if check["verdict"] == "inconclusive":
                    waiting[name] += 1
        guarantees: dict[str, list[float]] = defaultdict(list)
        for row in promoted:
            for name, check in row["checks"].items():
                if check["ruled_out"] is not None:
                    guarantees[name].append(check["ruled_out"])
        times = np.array([r["seconds"] for r in promoted], dtype=float)
        out[cell.name] = {
            "null": cell.null,
            "rate": cell.rate,
            "n": n,
            "promoted_by_plan_end": len(on_plan) / n,
            "promoted_by_45m": len(promoted) / n,
            "promoted_under_rule": sum(1 for r in promoted if r.get("under_rule")) / n,
            "held": len(held) / n,
            "rollback": len(rollbacks) / n,
            "rollback_upper95": clopper_pearson_upper(len(rollbacks), n),
            "promote_median_s": float(np.median(times)) if times.size else None,
            "held_waiting_on": dict(waiting.most_common()),
            "ruled_out_median": {k: float(np.median(v)) for k, v in sorted(guarantees.items())},
        }
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(summary: dict[str, Any]) -> str:
    """The table for the README."""
    lines = [
        "| cell | n | promoted by 30 min % | promoted by 45 min % | of which under the rule % "
        "| held % | rolled back % (95 % upper) | held: checks still inconclusive (count) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, e in summary.items():
        waiting = ", ".join(f"{k} {v}" for k, v in e["held_waiting_on"].items()) or "–"
        lines.append(
            f"| {name} | {e['n']} | {_pct(e['promoted_by_plan_end'])} | "
            f"{_pct(e['promoted_by_45m'])} | {_pct(e['promoted_under_rule'])} | "
            f"{_pct(e['held'])} | {_pct(e['rollback'])} "
            f"({_pct(e['rollback_upper95'])}) | {waiting} |"
        )
    return "\n".join(lines) + "\n"


def p99_reach(rate: float, runs: int = 200, seed: int = 1) -> dict[str, float]:
    """What the p99 check could show by the plan's end even with a perfect threshold.

    The check's promote sequence alone, on the matrix's lognormal latencies: from 6 minutes
    on (when a 5-minute sketch would first hold enough baseline requests at 2 req/s) to 30
    minutes, canary requests over 1.075 x the true baseline p99 against baseline requests over
    it, per 5 s tick. Returns the share of runs whose 95 % upper bound is within 1 (promote
    tolerance) and within 1.2 (the blast-radius clause at promotion), and the bound's median.
    """
    rng = np.random.default_rng(seed)
    threshold = MEDIAN_MS * math.exp(SIGMA * 2.3263478740408408)
    uppers = []
    for _ in range(runs):
        seq = RatioSequence(anchors=(1.0,))
        for _tick in range(6 * 12, 30 * 12):
            nb, nc = int(rng.poisson(rate * 5)), int(rng.poisson(rate * 5))
            b = MEDIAN_MS * np.exp(SIGMA * rng.standard_normal(nb))
            c = MEDIAN_MS * np.exp(SIGMA * rng.standard_normal(nc))
            seq.update(int((c > threshold * 1.075).sum()), int((b > threshold).sum()), nc, nb)
        uppers.append(seq.upper_bound(0.05))
    found = np.array(uppers)
    return {
        "within_1": float((found <= 1.0).mean()),
        "within_1.2": float((found <= 1.2).mean()),
        "median": float(np.median(found)),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the cells and write the results."""
    parser = arguments(__doc__, scale="multiply rollout counts")
    parser.add_argument("--tag", default="lowtraffic", help="results file name")
    parser.add_argument("--p99", action="store_true", help="only the p99 reachability runs")
    args = parser.parse_args(argv)
    if args.p99:
        reach = {f"{rate:g}rps": p99_reach(rate) for rate in (1.0, 2.0, 5.0, 8.0)}
        print(json.dumps(reach, indent=1))
        return reach
    tasks = []
    for index, (cell, count) in enumerate(CELLS):
        # Seeds differ per cell (and from the detection matrix's), so no two cells share draws.
        tasks += [(cell, 7_000_003 * (index + 1) + s) for s in range(scaled(count, args.scale))]
    tasks.sort(key=lambda t: -t[0].rate)
    load = os.getloadavg()[0]
    run = pooled(run_rollout, tasks, args.workers, chunksize=4)
    summary = summarise(run.rows)
    meta = run.meta(
        scale=args.scale,
        **machine(load),
    )
    table = markdown(summary)
    write_results(args.tag, table, meta=meta, summary=summary, rollouts=run.rows)
    print(json.dumps(meta))
    return summary


if __name__ == "__main__":
    main()
