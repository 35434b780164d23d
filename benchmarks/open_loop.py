"""Open-loop benchmark: recordings whose routing something else fixed, judged with backtest.

Run with ``python -m benchmarks.open_loop [--quick] [--workers 2] [--seeds N]``. Each rollout
is simulated open loop (:mod:`canarystream.simulate`, a scenario's ``routing``: a fixed 1-in-6
canary, or Argo-like 20/40/60 % steps every 10 minutes), written as a recording with its
``traffic_shifted`` events, then judged by :func:`canarystream.backtest.backtest_files` (the
``backtest`` command's function) under two policies: the default one, and one matched to the
recording (its stages at the recorded shares, 30 minutes in all). A regression's time to detect
is counted from its onset. Results: ``benchmarks/results/open_loop.json`` and ``.md``.
"""

from __future__ import annotations

import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.pool import arguments, pooled, write_results
from canarystream.backtest import backtest_files
from canarystream.contracts.decision import Action, Decision
from canarystream.engine import Engine
from canarystream.policy.loading import PolicyRegistry
from canarystream.policy.model import Policy
from canarystream.simulate.closed_loop import FixedShareEngine, simulate
from canarystream.simulate.presets import PRESETS
from canarystream.simulate.scenario import scenario_from_mapping

__all__ = ["CELLS", "OpenLoopCell", "main", "run_rollout", "summarise"]

T0 = 1_790_000_000.0
DURATION = 31 * 60.0  # a 30-minute plan, and a minute to see its end
ONE_IN_SIX = [{"at": 0.0, "percent": 100.0 / 6}]
ARGO = [
    {"at": 0.0, "percent": 20.0},
    {"at": 600.0, "percent": 40.0},
    {"at": 1200.0, "percent": 60.0},
]
POLICIES = ("default", "matched")


@dataclass(frozen=True)
class OpenLoopCell:
    """One kind of recorded rollout: a preset's service and fault, its rate and routing."""

    name: str
    preset: str
    rps: float  # the whole service's requests per second
    routing: list[dict[str, float]] = field(default_factory=lambda: ONE_IN_SIX)
    onset: float | None = None  # seconds: moves the preset's regression (None: as it is)
    null: bool = True

    def scenario(self, seed: int, duration: float = DURATION) -> Any:
        """The cell's scenario for rollout ``seed`` (its own deployment id and draws)."""
        fields = dict(PRESETS[self.preset][1])
        if self.onset is not None:
            fields["regression"] = {**fields["regression"], "onset": self.onset}
        return scenario_from_mapping(
            {
                "deployment": f"{self.name}-{seed}",
                "service": self.name,
                "start_ts": T0,
                "duration": duration,
                "seed_offset": seed,
                **fields,
                "traffic": {**fields.get("traffic", {}), "total_rps": self.rps},
                "routing": self.routing,
            }
        )

    def matched(self) -> Policy:
        """A policy matched to the recording: a stage per recorded share, 30 minutes in all."""
        steps = self.routing
        ends = [step["at"] for step in steps[1:]] + [1800.0]
        stages = [
            {"traffic_percent": step["percent"], "min_duration": end - step["at"]}
            for step, end in zip(steps, ends, strict=True)
        ]
        return Policy.model_validate({"name": "matched", "stages": stages})

    @property
    def regression_at(self) -> float:
        """Seconds after the start the regression begins."""
        if self.onset is not None:
            return self.onset
        regression = PRESETS[self.preset][1].get("regression", {})
        return float(regression.get("onset", 0.0))


def _cells() -> list[OpenLoopCell]:
    cells = [
        OpenLoopCell("aa-1in6-2rps", "healthy", 12.0),
        OpenLoopCell("aa-1in6-10rps", "healthy", 60.0),
        OpenLoopCell("aa-argo-20-40-60-30rps", "healthy", 30.0, ARGO),
        OpenLoopCell("errors-x3-1in6-10rps", "errors-x3", 60.0, null=False),
        OpenLoopCell("latency-x1.25-1in6-10rps", "latency-x1.25", 60.0, null=False),
        OpenLoopCell("gauge-cpu+0.15-1in6-10rps", "gauge-only", 60.0, null=False),
        OpenLoopCell("gradual-latency-1in6-10rps", "gradual-latency", 60.0, null=False),
        OpenLoopCell("errors-x3-argo-30rps", "errors-x3", 30.0, ARGO, null=False),
    ]
    for minutes in (5, 10, 15):
        name = f"errors-x3-onset-{minutes}m-1in6-10rps"
        cells.append(OpenLoopCell(name, "errors-x3", 60.0, onset=minutes * 60.0, null=False))
    return cells


CELLS = _cells()


def _engine(policy: Policy | None) -> Engine:
    if policy is None:
        return Engine()
    return Engine(PolicyRegistry([policy], default=policy))


def run_rollout(
    cell: OpenLoopCell, seed: int, folder: Path, duration: float = DURATION
) -> dict[str, Any]:
    """Record one rollout of ``cell`` (``duration`` seconds) and judge it under each policy."""
    events = simulate([cell.scenario(seed, duration)], seed=seed, engine=FixedShareEngine(0.0))
    path = folder / f"{cell.name}-{seed}.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    row: dict[str, Any] = {"cell": cell.name, "seed": seed}
    try:
        for name in POLICIES:
            decisions: list[Decision] = []
            engine = _engine(cell.matched() if name == "matched" else None)
            backtest_files([path], engine=engine, on_decision=decisions.append)
            row[name] = _outcome(decisions, cell)
    finally:
        path.unlink()
    return row


def _outcome(decisions: list[Decision], cell: OpenLoopCell) -> dict[str, Any]:
    """How one policy ended one rollout, and when (from the start; from the onset for a
    regression's rollback)."""
    last = decisions[-1]
    ended = next((d for d in decisions if d.action in (Action.ROLLBACK, Action.PROMOTE)), None)
    holds = [d.summary for d in decisions if d.action is Action.HOLD]
    outcome = last.phase.value if ended is None else ended.action.value
    seconds = None if ended is None else ended.ts - T0
    detect = None
    if ended is not None and ended.action is Action.ROLLBACK and not cell.null:
        detect = max(seconds - cell.regression_at, 0.0) if seconds is not None else None
    return {
        "outcome": outcome,
        "seconds": seconds,
        "detect_s": detect,
        "holds": len(holds),
        "ratio_holds": sum("sample ratio" in summary for summary in holds),
        "unapplied_holds": sum("not applied" in summary for summary in holds),
        "last": last.summary,
    }


def summarise(rows: list[dict[str, Any]], cells: list[OpenLoopCell]) -> dict[str, Any]:
    """Per cell and policy: outcome shares, holds for the sample ratio, times to detect."""
    summary: dict[str, Any] = {}
    for cell in cells:
        mine = [row for row in rows if row["cell"] == cell.name]
        if not mine:
            continue
        entry: dict[str, Any] = {"n": len(mine), "null": cell.null}
        for name in POLICIES:
            outcomes = [row[name] for row in mine]
            n = len(outcomes)
            detect = [o["detect_s"] for o in outcomes if o["detect_s"] is not None]
            entry[name] = {
                "promoted": sum(o["outcome"] == "promote" for o in outcomes) / n,
                "rollback": sum(o["outcome"] == "rollback" for o in outcomes) / n,
                "held": sum(o["outcome"] == "held" for o in outcomes) / n,
                "running": sum(o["outcome"] == "running" for o in outcomes) / n,
                "ratio_holds": sum(o["ratio_holds"] for o in outcomes),
                "unapplied_holds": sum(o["unapplied_holds"] for o in outcomes),
                "ttd_median_s": float(np.median(detect)) if detect else None,
                "ttd_p90_s": float(np.percentile(detect, 90)) if detect else None,
            }
        summary[cell.name] = entry
    return summary


def _pct(x: float) -> str:
    return f"{100 * x:.0f}"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def markdown(summary: dict[str, Any]) -> str:
    """One table: per cell, each policy's promoted / rolled back / held / still running % at
    the end, holds for the sample ratio or a decision not applied, and the time to detect
    from the onset."""
    lines = [
        "| cell | n | policy | promoted % | rolled back % | held % | running % | "
        "sample-ratio holds | not-applied holds | TTD median s | TTD p90 s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in summary.items():
        for policy in POLICIES:
            e = entry[policy]
            lines.append(
                f"| {name} | {entry['n']} | {policy} | {_pct(e['promoted'])} | "
                f"{_pct(e['rollback'])} | {_pct(e['held'])} | {_pct(e['running'])} | "
                f"{e['ratio_holds']} | "
                f"{e['unapplied_holds']} | {_s(e['ttd_median_s'])} | {_s(e['ttd_p90_s'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every cell and write the results."""
    parser = arguments(__doc__)
    parser.add_argument("--seeds", type=int, default=20, help="rollouts per cell")
    parser.add_argument("--quick", action="store_true", help="3 rollouts per cell")
    args = parser.parse_args(argv)
    seeds = 3 if args.quick else args.seeds
    with tempfile.TemporaryDirectory() as folder:
        tasks = [(cell, seed, Path(folder)) for cell in CELLS for seed in range(seeds)]
        run = pooled(run_rollout, tasks, args.workers)
    run.rows.sort(key=lambda row: (row["cell"], row["seed"]))
    summary = summarise(run.rows, CELLS)
    meta = run.meta(python=platform.python_version())
    table = markdown(summary)
    write_results("open_loop", table, meta=meta, summary=summary, rollouts=run.rows)
    print(run.line())
    return summary


if __name__ == "__main__":
    main()
