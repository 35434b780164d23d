"""Saturation benchmark: gauge regressions far past tolerance, and noisy healthy gauges.

Run with ``python -m benchmarks.saturation [--runs N] [--workers 2]``. Each rollout is the
simulator's default service in closed loop under the default policy (gauges non-critical,
``critical_margin`` twice the tolerance): the canary's ``cpu_utilization`` is 0.15 or 0.03
higher from the start or from minute 10, or unchanged (noisy healthy gauges: instance noise
0.03, load-sensitive), at 1 and 50 requests/s. Reported per cell: rollbacks, the time from the
onset to the rollback (median, max), and false rollbacks with a 95 % Clopper-Pearson upper
bound. Results: ``benchmarks/results/saturation.json`` and ``.md``.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.detection import clopper_pearson_upper
from benchmarks.pool import arguments, pooled, scaled, write_results
from canarystream.engine import Engine
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset
from canarystream.simulate.scenario import scenario_from_mapping

__all__ = ["CELLS", "main", "run_rollout"]

HORIZON = 1500.0  # s of event time: the onset at 10 minutes plus 15 minutes

# (name, total requests/s, cpu shift, onset s, runs weight)
CELLS: list[tuple[str, float, float, float, float]] = [
    ("cpu+0.15-start-1rps", 1.0, 0.15, 0.0, 0.25),
    ("cpu+0.15-start-50rps", 50.0, 0.15, 0.0, 0.25),
    ("cpu+0.15-at10m-1rps", 1.0, 0.15, 600.0, 0.25),
    ("cpu+0.15-at10m-50rps", 50.0, 0.15, 600.0, 0.25),
    ("cpu+0.03-start-50rps", 50.0, 0.03, 0.0, 0.25),
    ("healthy-1rps", 1.0, 0.0, 0.0, 1.0),
    ("healthy-50rps", 50.0, 0.0, 0.0, 0.25),
]


def run_rollout(cell: int, seed: int) -> dict[str, Any]:
    """One rollout of cell ``cell``: its outcome and when."""
    name, rps, shift, onset, _ = CELLS[cell]
    base = build_preset("gauge-only", rps=rps, duration=HORIZON, seed_offset=seed)
    data = base.model_dump()
    if shift:
        data["regression"] = {
            "kind": "gauge_only",
            "gauge": "cpu_utilization",
            "add": shift,
            "onset": onset,
        }
    else:
        data["regression"] = None
    scenario = scenario_from_mapping(data, source=name)
    engine = Engine()
    outcome: dict[str, Any] = {"cell": name, "seed": seed, "outcome": "none", "seconds": None}

    class Recorder:
        def process(self, event: dict[str, Any]) -> list[Any]:
            found = engine.process(event)
            for decision in found:
                terminal = decision.action.value in ("rollback", "promote")
                if terminal and outcome["outcome"] == "none":
                    outcome["outcome"] = decision.action.value
                    outcome["seconds"] = decision.ts - scenario.start_ts
                    outcome["summary"] = decision.summary
            return found

    for _ in simulate([scenario], seed=seed, engine=Recorder()):
        pass
    return outcome


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell: rollbacks, time from onset to rollback, and the 95 % upper bound."""
    out = []
    for name, _rps, shift, onset, _ in CELLS:
        cell = [r for r in rows if r["cell"] == name]
        rolled = [r for r in cell if r["outcome"] == "rollback"]
        after = [r["seconds"] - onset for r in rolled]
        out.append(
            {
                "cell": name,
                "n": len(cell),
                "rollback_pct": 100.0 * len(rolled) / len(cell) if cell else None,
                "upper95_pct": 100.0 * clopper_pearson_upper(len(rolled), len(cell))
                if cell and shift <= 0.05
                else None,
                "after_onset_median_s": statistics.median(after) if after else None,
                "after_onset_max_s": max(after) if after else None,
                "within_5min_pct": 100.0 * sum(a <= 300 for a in after) / len(cell)
                if cell
                else None,
            }
        )
    return out


def markdown(summary: list[dict[str, Any]]) -> str:
    """The table of :func:`summarise`."""

    def fmt(value: float | None, digits: int = 1) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [
        "| cell | n | rolled back % | 95 % upper % (no harm beyond tolerance) | "
        "onset → rollback median s | max s | within 5 min % |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary:
        lines.append(
            f"| {row['cell']} | {row['n']} | {fmt(row['rollback_pct'])} | "
            f"{fmt(row['upper95_pct'])} | {fmt(row['after_onset_median_s'], 0)} | "
            f"{fmt(row['after_onset_max_s'], 0)} | {fmt(row['within_5min_pct'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the cells and write the results."""
    parser = arguments(__doc__)
    parser.add_argument("--runs", type=int, default=400, help="rollouts of the healthy 1 rps cell")
    args = parser.parse_args(argv)
    tasks = [
        (index, 7_000_003 * index + seed)
        for index, cell in enumerate(CELLS)
        for seed in range(scaled(args.runs, cell[4]))
    ]
    run = pooled(run_rollout, tasks, args.workers, chunksize=2)
    summary = summarise(run.rows)
    table = markdown(summary)
    write_results("saturation", table, meta=run.meta(), summary=summary, rollouts=run.rows)
    print(run.line())
    return summary


if __name__ == "__main__":
    main()
