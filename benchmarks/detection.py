"""Detection benchmark: false rollbacks under A/A, power and time to detect under regressions.

Run with ``python -m benchmarks.detection [--quick] [--workers 2]``. Every rollout's events
go through :meth:`canarystream.engine.Engine.process` in ts order (policy: the default with
``baseline_mode: paired``), until its terminal decision or 45 minutes of event time. The
peer judges of :mod:`benchmarks.peers` read per-minute aggregates of the same draws.
Results: ``benchmarks/results/detection.json`` and ``benchmarks/results/detection.md``.
"""

from __future__ import annotations

import platform
from collections import defaultdict
from typing import Any

import numpy as np
from scipy.stats import beta

from benchmarks.peers import IntervalMannWhitneyJudge, ThresholdJudge
from benchmarks.pool import arguments, pooled, scaled, write_results
from canarystream.engine import Engine
from canarystream.simulate.paired import CHUNK, T0, Cell, PairedRollout

__all__ = ["CELLS", "clopper_pearson_upper", "main", "run_rollout", "summarise"]

HORIZON_MIN = 45
PEER_MIN = 30
JUDGES = ("engine", "kayenta-5m", "kayenta-5m-critical", "kayenta-30m", "threshold-1m")


def _cells() -> list[tuple[Cell, int]]:
    """Every cell with its full-run rollout count."""
    cells: list[tuple[Cell, int]] = [
        (Cell("aa-plain-20rps"), 1000),
        (Cell("aa-ramp-x3-20rps", load="ramp"), 150),
        (Cell("aa-diurnal-20rps", load="diurnal"), 150),
        (Cell("aa-global-incident-20rps", incident=True), 150),
        (Cell("aa-benign-offset-2pct-20rps", latency_mult=1.02), 150),
        (Cell("aa-slow-instance-4pct-20rps", slow_instance=1.04), 150),
        (Cell("aa-low-traffic-1rps", rate=1.0), 200),
        (Cell("aa-plain-200rps", rate=200.0), 40),
    ]
    effects = [
        ("errors-x1.5", {"error_mult": 1.5}),
        ("errors-x3", {"error_mult": 3.0}),
        ("latency-x1.1", {"latency_mult": 1.1}),
        ("latency-x1.25", {"latency_mult": 1.25}),
        ("tail-p95-x1.5", {"tail_mult": 1.5}),
    ]
    counts = {1.0: 60, 8.0: 100, 20.0: 150, 200.0: 20}
    # The cells named by the targets get more rollouts, for tighter estimates.
    targeted = {("errors-x1.5", 20.0), ("latency-x1.1", 20.0), ("errors-x3", 8.0)}
    targeted.add(("latency-x1.25", 8.0))
    for rate, count in counts.items():
        for label, kwargs in effects:
            n = 300 if (label, rate) in targeted else count
            cells.append((Cell(f"reg-{label}-{rate:g}rps", rate=rate, null=False, **kwargs), n))
    return cells


CELLS = _cells()


def run_rollout(cell: Cell, seed: int, horizon_min: int = HORIZON_MIN) -> dict[str, Any]:
    """One rollout of ``cell``: the engine's and the peers' outcomes on the same draws."""
    gen = PairedRollout(cell, seed)
    engine = Engine()
    engine.process(gen.deployment_event())
    peers = {
        "kayenta-5m": IntervalMannWhitneyJudge(5),
        "kayenta-5m-critical": IntervalMannWhitneyJudge(5, critical=True),
        "kayenta-30m": IntervalMannWhitneyJudge(30),
        "threshold-1m": ThresholdJudge(),
    }
    outcome, detect_s, exposed, holds, last_summary = "held", None, 0, 0, ""
    canary_version = gen.versions[1]
    live = True
    for k in range(horizon_min):
        need_peers = k < PEER_MIN and not all(p.result.done for p in peers.values())
        if not live and not need_peers:
            break
        events, stats = gen.chunk(float(k * CHUNK), build=live)
        for peer in peers.values():
            if k < PEER_MIN:
                peer.observe(stats)
        if not live:
            continue
        process = engine.process
        for event in events:
            decisions = process(event)
            if decisions:
                for decision in decisions:
                    action = decision.action.value
                    last_summary = decision.summary
                    if action == "hold":
                        holds += 1
                    elif action in ("rollback", "promote"):
                        outcome = action
                        detect_s = decision.ts - T0
                        live = False
                if not live:
                    break
            if event["type"] == "request" and event["version"] == canary_version:
                exposed += 1
    out: dict[str, Any] = {
        "cell": cell.name,
        "seed": seed,
        "engine": {
            "outcome": outcome,
            "seconds": detect_s,
            "exposed": exposed if outcome == "rollback" else None,
            "holds": holds,
            "last": last_summary[:160],
        },
    }
    for name, peer in peers.items():
        result = peer.result
        out[name] = {
            "outcome": result.outcome if result.done else "held",
            "seconds": result.minute * 60 if result.minute is not None else None,
            "exposed": result.exposed if result.outcome == "rollback" else None,
            "holds": result.holds,
        }
    return out


def clopper_pearson_upper(k: int, n: int, level: float = 0.95) -> float:
    """Upper end of the two-sided Clopper-Pearson interval for k successes in n."""
    if n == 0 or k >= n:
        return 1.0
    return float(beta.ppf(1 - (1 - level) / 2, k + 1, n - k))


def summarise(rows: list[dict[str, Any]], cells: list[Cell]) -> dict[str, Any]:
    """Per cell and judge: rates with bounds, detection times and exposure."""
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_cell[row["cell"]].append(row)
    summary: dict[str, Any] = {}
    for cell in cells:
        cell_rows = by_cell.get(cell.name, [])
        if not cell_rows:
            continue
        entry: dict[str, Any] = {"null": cell.null, "rate": cell.rate, "n": len(cell_rows)}
        for judge in JUDGES:
            results = [row[judge] for row in cell_rows]
            n = len(results)
            rollbacks = [r for r in results if r["outcome"] == "rollback"]
            promoted = sum(r["outcome"] == "promote" for r in results)
            held = sum(r["outcome"] == "held" for r in results)
            times = np.array([r["seconds"] for r in rollbacks], dtype=float)
            exposed = np.array([r["exposed"] for r in rollbacks], dtype=float)
            entry[judge] = {
                "rollback": len(rollbacks) / n,
                "rollback_upper95": clopper_pearson_upper(len(rollbacks), n),
                "held": held / n,
                "promoted": promoted / n,
                "ttd_median_s": float(np.median(times)) if times.size else None,
                "ttd_p90_s": float(np.quantile(times, 0.9)) if times.size else None,
                "exposed_median": float(np.median(exposed)) if exposed.size else None,
            }
        summary[cell.name] = entry
    return summary


def _fmt_pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _fmt_s(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f}"


def markdown(summary: dict[str, Any]) -> str:
    """Tables for the README: null cells, regression cells, then the peers."""
    lines = [
        "### Null (A/A) cells — engine",
        "",
        "| cell | n | false rollback % | 95 % upper % | false hold % | promoted % |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in summary.items():
        if entry["null"]:
            e = entry["engine"]
            lines.append(
                f"| {name} | {entry['n']} | {_fmt_pct(e['rollback'])} | "
                f"{_fmt_pct(e['rollback_upper95'])} | {_fmt_pct(e['held'])} | "
                f"{_fmt_pct(e['promoted'])} |"
            )
    lines += [
        "",
        "### Regression cells — engine",
        "",
        "| cell | n | power % | held % | promoted % | TTD median s | TTD p90 s | "
        "canary requests before rollback (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in summary.items():
        if not entry["null"]:
            e = entry["engine"]
            lines.append(
                f"| {name} | {entry['n']} | {_fmt_pct(e['rollback'])} | {_fmt_pct(e['held'])} | "
                f"{_fmt_pct(e['promoted'])} | {_fmt_s(e['ttd_median_s'])} | "
                f"{_fmt_s(e['ttd_p90_s'])} | {_fmt_s(e['exposed_median'])} |"
            )
    peers = JUDGES[1:]
    lines += [
        "",
        "### Peers on the same draws — rollback % (null: false rollback; regression: power) "
        "/ promoted % / TTD median s",
        "",
        "| cell | n | " + " | ".join(JUDGES) + " |",
        "|---|---:|" + "---|" * len(JUDGES),
    ]
    for name, entry in summary.items():
        cols = []
        for judge in ("engine", *peers):
            e = entry[judge]
            cols.append(
                f"{_fmt_pct(e['rollback'])} / {_fmt_pct(e['promoted'])} / "
                f"{_fmt_s(e['ttd_median_s'])}"
            )
        lines.append(f"| {name} | {entry['n']} | " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the matrix and write the results."""
    parser = arguments(__doc__, scale="multiply rollout counts")
    parser.add_argument("--quick", action="store_true", help="a tenth of the rollouts")
    args = parser.parse_args(argv)
    scale = args.scale * (0.1 if args.quick else 1.0)
    tasks = []
    for index, (cell, count) in enumerate(CELLS):
        # Seeds differ per cell, so no two cells share draws.
        tasks += [(cell, 1_000_003 * index + seed) for seed in range(scaled(count, scale))]
    # Expensive cells first so the two workers finish together.
    tasks.sort(key=lambda t: -t[0].rate)
    run = pooled(run_rollout, tasks, args.workers, chunksize=4, every=500)
    summary = summarise(run.rows, [cell for cell, _ in CELLS])
    meta = run.meta(quick=args.quick, scale=args.scale, python=platform.python_version())
    table = markdown(summary)
    write_results("detection", table, meta=meta, summary=summary, rollouts=run.rows)
    print(run.line())
    return summary


if __name__ == "__main__":
    main()
