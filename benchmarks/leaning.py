"""Leaning-evidence benchmark: what the blast-radius margin lets through, closed loop.

Run with ``python -m benchmarks.leaning [--scale X] [--workers 2] [--tag T]``. Each rollout
is a preset of :mod:`canarystream.simulate.presets` under the default policy (``stable``
baseline: stages 1, 5, 10, 25, 50 % of 6 minutes), its telemetry routed by the engine's own
decisions with the router 15 s behind them (:func:`canarystream.simulate.closed_loop.simulate`),
for 40 minutes of event time. Reported per cell: promoted, rolled back and held at the end;
how many rollouts were advanced past the first stage (for a regression: on evidence that did
not yet fail it); the median minutes to the terminal decision; and the median number of canary
requests served before it (the users who met the canary).
Results: ``benchmarks/results/<tag>.json`` and ``benchmarks/results/<tag>.md``.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter, defaultdict
from typing import Any

from benchmarks.pool import arguments, machine, pooled, scaled, write_results
from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset

__all__ = ["CELLS", "main", "run_rollout", "summarise"]

DURATION_S = 2400.0
ROUTER_DELAY_S = 15.0
TERMINAL = ("promote", "rollback")

CELLS: list[tuple[str, float, int]] = [
    ("errors-x3", 200.0, 40),
    ("errors-x3", 20.0, 40),
    ("errors-x1.5", 200.0, 40),
    ("latency-x1.25", 20.0, 40),
    ("healthy", 200.0, 40),
    ("healthy", 20.0, 80),
]
"""(preset, service req/s, rollouts at scale 1)."""


class _Recorder:
    """The engine, keeping every decision it returns."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.decisions: list[Decision] = []

    def process(self, event: dict[str, Any]) -> list[Decision]:
        found = self.engine.process(event)
        self.decisions.extend(found)
        return found


def run_rollout(preset: str, rps: float, seed: int) -> dict[str, Any]:
    """One closed-loop rollout of ``preset`` at ``rps``: outcome, when, how far, how many users."""
    scenario = build_preset(preset, rps=rps, duration=DURATION_S)
    recorder = _Recorder()
    served, start, ended, seen = 0, None, False, 0
    for event in simulate([scenario], seed=seed, engine=recorder, delay=ROUTER_DELAY_S):
        start = event["ts"] if start is None else start
        if not ended:  # the decisions this event brought included
            ended = any(d.action.value in TERMINAL for d in recorder.decisions[seen:])
            seen = len(recorder.decisions)
        canary = event["type"] == "request" and event.get("version") == scenario.canary_version
        served += canary and not ended
    final = next((d for d in recorder.decisions if d.action.value in TERMINAL), None)
    advanced = [d.stage for d in recorder.decisions if d.action.value == "advance"]
    return {
        "cell": f"{preset}-{rps:g}rps",
        "seed": seed,
        "outcome": final.action.value if final is not None else "held",
        "minutes": None if final is None or start is None else (final.ts - start) / 60.0,
        "furthest_stage": max(advanced, default=0),
        "canary_requests": served,
        "last": recorder.decisions[-1].summary[:200] if recorder.decisions else "",
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per cell: outcome counts, rollouts past the first stage, medians."""
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_cell[row["cell"]].append(row)
    summary: dict[str, dict[str, Any]] = {}
    for cell, found in by_cell.items():
        outcomes = Counter(r["outcome"] for r in found)
        minutes = [r["minutes"] for r in found if r["minutes"] is not None]
        summary[cell] = {
            "rollouts": len(found),
            **{what: outcomes.get(what, 0) for what in ("promote", "rollback", "held")},
            "past_first_stage": sum(r["furthest_stage"] > 0 for r in found),
            "median_minutes": statistics.median(minutes) if minutes else None,
            "median_canary_requests": statistics.median(r["canary_requests"] for r in found),
        }
    return summary


def markdown(summary: dict[str, dict[str, Any]]) -> str:
    """The summary as a table."""
    lines = [
        "| cell | rollouts | promoted | rolled back | held | past stage 0 | median min "
        "| median canary requests |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell, s in summary.items():
        minutes = "-" if s["median_minutes"] is None else f"{s['median_minutes']:.1f}"
        lines.append(
            f"| {cell} | {s['rollouts']} | {s['promote']} | {s['rollback']} | {s['held']} "
            f"| {s['past_first_stage']} | {minutes} | {s['median_canary_requests']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run the cells and write the results."""
    parser = arguments(__doc__, scale="multiply rollout counts")
    parser.add_argument("--tag", default="leaning", help="results file name")
    args = parser.parse_args(argv)
    # Seeds 0.. in every cell: the same draws before and after a change of the engine.
    tasks = [
        (preset, rps, seed)
        for preset, rps, count in CELLS
        for seed in range(scaled(count, args.scale))
    ]
    load = os.getloadavg()[0]
    run = pooled(run_rollout, tasks, args.workers, ordered=True)
    summary = summarise(run.rows)
    meta = run.meta(
        scale=args.scale,
        **machine(load),
    )
    write_results(args.tag, markdown(summary), meta=meta, summary=summary, rollouts=run.rows)
    return summary


if __name__ == "__main__":
    main()
