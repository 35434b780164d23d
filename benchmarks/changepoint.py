"""Late and gradual regressions: time to detect by onset, drift, and A/A false rollbacks.

Run with ``python -m benchmarks.changepoint [--scale X] [--workers 2] [--tag NAME]``. Each
rollout is the detection benchmark's paired telemetry (:mod:`canarystream.simulate.paired`,
20 req/s per cohort, the default policy with ``baseline_mode: paired``) fed to the engine until
its first rollback or promote, or 45 minutes of event time. A regression starts ``onset``
seconds into the rollout; its time to detect is the rollback's time minus the onset. The drift
cell's canary latency grows by 10 % per 10 minutes from the start, so it crosses the latency
tolerance (+5 %) at 300 s; its time to detect is counted from then.
``--null-runs N`` also simulates the rollback tests alone under no regression, N streams of 360
ticks per case, looked at after every tick (:func:`null_detector_runs`).
Results: ``benchmarks/results/changepoint-<tag>.json`` and ``.md``.
"""

from __future__ import annotations

import platform
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.detection import clopper_pearson_upper
from benchmarks.paired import TERMINAL, paired_decisions
from benchmarks.pool import arguments, pooled, scaled, write_results
from canarystream.analysis.sequential import MeanRestarts, MeanSequence, RatioSequence
from canarystream.simulate.paired import T0, Cell

__all__ = ["CELLS", "main", "run_rollout"]

HORIZON_MIN = 45
RATE = 20.0
DRIFT_CROSSING_S = 300.0  # +10 % per 10 min reaches the +5 % tolerance after 5 minutes


def _cells() -> list[tuple[Cell, float, int]]:
    """(cell, time from which detection is counted, full-run rollout count)."""
    cells: list[tuple[Cell, float, int]] = [(Cell("aa-plain-20rps", rate=RATE), 0.0, 300)]
    effects = [
        ("errors-x3", {"error_mult": 3.0}),
        ("errors-x1.5", {"error_mult": 1.5}),
        ("latency-x1.25", {"latency_mult": 1.25}),
    ]
    for label, kwargs in effects:
        for onset in (0, 300, 600, 900):
            name = f"{label}-onset-{onset // 60}m"
            cell = Cell(name, rate=RATE, null=False, onset=float(onset), **kwargs)
            cells.append((cell, float(onset), 60))
    drift = Cell("latency-drift-10pct-per-10m", rate=RATE, null=False, latency_drift=0.1)
    cells.append((drift, DRIFT_CROSSING_S, 60))
    return cells


CELLS = _cells()


def run_rollout(cell: Cell, seed: int, horizon_min: int = HORIZON_MIN) -> dict[str, Any]:
    """One rollout of ``cell``: the engine's terminal action and its time (s from start)."""
    outcome, seconds, check = "held", None, ""
    for decisions in paired_decisions(cell, seed, horizon_min):
        ended = next((d for d in decisions if d.action.value in TERMINAL), None)
        if ended is not None:
            outcome, seconds, check = ended.action.value, ended.ts - T0, ended.summary
            break
    return {"cell": cell.name, "seed": seed, "outcome": outcome, "seconds": seconds, "why": check}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per cell: rollback, promote and held rates, and time to detect from the counted start."""
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_cell[row["cell"]].append(row)
    summary: dict[str, Any] = {}
    for cell, start, _ in CELLS:
        got = by_cell.get(cell.name, [])
        if not got:
            continue
        n = len(got)
        rolled = [r for r in got if r["outcome"] == "rollback"]
        # A rollback before the counted start is a false alarm (or, for drift, an early one).
        ttd = np.array([r["seconds"] - start for r in rolled], dtype=float)
        late = ttd[ttd >= 0]
        summary[cell.name] = {
            "null": cell.null,
            "n": n,
            "from_s": start,
            "rollback": len(rolled) / n,
            "rollback_upper95": clopper_pearson_upper(len(rolled), n),
            "before_start": int((ttd < 0).sum()),
            "promoted": sum(r["outcome"] == "promote" for r in got) / n,
            "ttd_median_s": float(np.median(late)) if late.size else None,
            "ttd_p90_s": float(np.quantile(late, 0.9)) if late.size else None,
        }
    return summary


def markdown(summary: dict[str, Any]) -> str:
    """One table: every cell's rates and times to detect."""
    lines = [
        "| cell | n | rollback % (95 % upper) | before onset | promoted % | TTD median s | "
        "TTD p90 s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in summary.items():
        med = "–" if e["ttd_median_s"] is None else f"{e['ttd_median_s']:.0f}"
        p90 = "–" if e["ttd_p90_s"] is None else f"{e['ttd_p90_s']:.0f}"
        lines.append(
            f"| {name} | {e['n']} | {100 * e['rollback']:.1f} ({100 * e['rollback_upper95']:.1f})"
            f" | {e['before_start']} | {100 * e['promoted']:.1f} | {med} | {p90} |"
        )
    return "\n".join(lines) + "\n"


def null_detector_runs(kind: str, alpha: float, runs: int, seed: int) -> dict[str, Any]:
    """Share of ``runs`` null streams of 360 ticks (30 min at 5 s) in which a rollback test
    ever fails, looked at after every tick: ``kind`` ``ratio-boundary`` (errors at exactly the
    tolerance, 1.1, about 2 events a tick), ``ratio-aa`` (equal rates) or ``mean-boundary``
    (Gaussian differences with their mean at the limit, the whole sequence at alpha/2 and its
    restarts every 6 ticks)."""
    rng = np.random.default_rng(seed)
    crossed = 0
    for _ in range(runs):
        if kind.startswith("ratio"):
            psi = 1.1 if kind == "ratio-boundary" else 1.0
            seq = RatioSequence((1.1, 1.5), detect=1.1)
            for k in rng.poisson(2.0, size=360):
                x = int(rng.binomial(k, psi / (psi + 1.0)))
                seq.update(x, int(k) - x, 100.0, 100.0)
                if seq.detector() * alpha >= 1.0:
                    crossed += 1
                    break
        else:
            whole, restarts = MeanSequence(target=30), MeanRestarts(30, every=6, horizon=60)
            for value in rng.normal(0.0, 1.0, size=360):
                whole.update(float(value))
                restarts.update(float(value))
                if whole.count < 6:
                    continue
                share = alpha * restarts.start_share()
                if whole.mean - whole.radius(share) > 0.0 or restarts.exceeds(0.0, alpha, whole, 6):
                    crossed += 1
                    break
    return {
        "kind": kind,
        "alpha": alpha,
        "runs": runs,
        "false_alarms": crossed,
        "rate": crossed / runs,
        "upper95": clopper_pearson_upper(crossed, runs),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the cells and write the results."""
    parser = arguments(__doc__, scale="multiply rollout counts (0: no rollouts)")
    parser.add_argument("--tag", default="current", help="suffix of the result files")
    parser.add_argument("--exclude", default="", help="skip cells whose name contains this")
    parser.add_argument(
        "--null-runs", type=int, default=0, help="also simulate the detectors alone, N runs each"
    )
    args = parser.parse_args(argv)
    nulls = _nulls(args.null_runs, args.workers) if args.null_runs else []
    tasks = []
    for cell, _start, count in CELLS:
        if args.scale <= 0 or (args.exclude and args.exclude in cell.name):
            continue
        # Seeds are shared by the cells of one effect, so onsets compare on the same draws.
        tasks += [(cell, 7_000_003 + seed) for seed in range(scaled(count, args.scale))]
    run = pooled(run_rollout, tasks, args.workers, chunksize=4)
    summary = summarise(run.rows)
    meta = run.meta(
        scale=args.scale,
        python=platform.python_version(),
        load_average=list(Path("/proc/loadavg").read_text().split()[:3]),
    )
    table = markdown(summary)
    name = f"changepoint-{args.tag}"
    write_results(name, table, meta=meta, nulls=nulls, summary=summary, rollouts=run.rows)
    print(run.line())
    return summary


def _nulls(runs: int, workers: int) -> list[dict[str, Any]]:
    """:func:`null_detector_runs` of each kind at two alphas, ``runs`` in all each, in ten
    parts; printed, and returned merged."""
    # alpha 0.05 / 6: the default policy's share of one check; 0.1 shows the bound's slack.
    jobs = [
        (kind, alpha, max(1, runs // 10), 11 + 1_000 * index + part)
        for index, (kind, alpha) in enumerate(
            (k, a) for k in ("ratio-boundary", "ratio-aa", "mean-boundary") for a in (0.1, 0.05 / 6)
        )
        for part in range(10)
    ]
    parts = pooled(null_detector_runs, jobs, workers, ordered=True).rows
    merged: dict[tuple[str, float], list[int]] = defaultdict(lambda: [0, 0])
    for part in parts:
        merged[(part["kind"], part["alpha"])][0] += part["false_alarms"]
        merged[(part["kind"], part["alpha"])][1] += part["runs"]
    nulls = []
    for (kind, alpha), (k, n) in merged.items():
        upper = clopper_pearson_upper(k, n)
        nulls.append(
            {
                "kind": kind,
                "alpha": alpha,
                "runs": n,
                "false_alarms": k,
                "rate": k / n,
                "upper95": upper,
            }
        )
        print(f"null {kind} alpha {alpha:.4f}: {k}/{n} = {k / n:.4f} (95 % upper {upper:.4f})")
    return nulls


if __name__ == "__main__":
    main()
