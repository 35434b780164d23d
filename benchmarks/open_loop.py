"""Open-loop benchmark: recordings whose routing something else fixed, judged with backtest.

Run with ``python -m benchmarks.open_loop [--quick] [--workers 2] [--seeds N] [--tag T]``.
Each rollout is simulated open loop (:mod:`canarystream.simulate`, a scenario's ``routing``: a
fixed 1-in-6 canary, or Argo-like 20/40/60 % steps every 10 minutes), written as a recording
with its ``traffic_shifted`` events, then judged by
:func:`canarystream.backtest.backtest_files` (the ``backtest`` command's function) under two
policies: the default one, and one matched to the recording (its stages at the recorded
shares, 30 minutes in all). A regression's time to detect is counted from its onset, a
gradual latency drift's from when it crosses the smallest latency tolerance of the default
policy. Each promotion's guarantee (per check, the largest regression it rules out at the
promote confidence) is kept, and summed up per cell as the median over the promoted
rollouts. Results: ``benchmarks/results/open_loop.json`` and ``.md`` (``open_loop-T``
with ``--tag T``).
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.pool import arguments, machine, pooled, write_results
from canarystream.backtest import backtest_files
from canarystream.contracts.decision import Action, Decision
from canarystream.engine import Engine
from canarystream.policy.loading import PolicyRegistry
from canarystream.policy.model import Policy
from canarystream.readable import change, times
from canarystream.simulate.closed_loop import FixedShareEngine, simulate
from canarystream.simulate.presets import PRESETS
from canarystream.simulate.scenario import scenario_from_mapping

__all__ = ["CELLS", "OpenLoopCell", "guarantee_text", "main", "run_rollout", "summarise"]

T0 = 1_790_000_000.0
PLAN_S = 30 * 60.0  # the plans' length: the default policy's and the matched ones
DURATION = PLAN_S + 60.0  # a minute to see its end
ONE_IN_SIX = [{"at": 0.0, "percent": 100.0 / 6}]
ARGO = [
    {"at": 0.0, "percent": 20.0},
    {"at": 600.0, "percent": 40.0},
    {"at": 1200.0, "percent": 60.0},
]
POLICIES = ("default", "matched")
# The smallest latency tolerance of the default policy (typical latency and its quantiles):
# a gradual latency drift is a regression from when it crosses it.
LATENCY_TOLERANCE = min(
    check.tolerance
    for check in Policy.model_validate({"name": "default"}).checks
    if check.kind in ("latency", "latency_shift")
)


@dataclass(frozen=True)
class OpenLoopCell:
    """One kind of recorded rollout: a preset's service and fault, its rate and routing."""

    name: str
    preset: str
    rps: float  # the whole service's requests per second
    routing: list[dict[str, float]] = field(default_factory=lambda: ONE_IN_SIX)
    onset: float | None = None  # seconds: moves the preset's regression (None: as it is)
    null: bool = True
    regression: dict[str, Any] | None = None  # replaces the preset's regression (then onset)

    def scenario(self, seed: int, duration: float = DURATION) -> Any:
        """The cell's scenario for rollout ``seed`` (its own deployment id and draws)."""
        fields = dict(PRESETS[self.preset][1])
        if self.regression is not None:
            fields["regression"] = self.regression
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
    def _regression(self) -> dict[str, Any]:
        regression = self.regression or PRESETS[self.preset][1].get("regression", {})
        return regression if self.onset is None else {**regression, "onset": self.onset}

    @property
    def regression_at(self) -> float:
        """Seconds after the start the regression begins."""
        return float(self._regression.get("onset", 0.0))

    @property
    def detect_from(self) -> float:
        """Seconds after the start from which a rollback is counted as a detection: the onset,
        or for a gradual latency drift the moment it crosses ``LATENCY_TOLERANCE``."""
        regression = self._regression
        if regression.get("kind") == "gradual" and regression.get("target") == "latency":
            ramp = regression.get("ramp", 600.0)
            crossing = LATENCY_TOLERANCE * ramp / (regression["factor"] - 1.0)
            return round(self.regression_at + crossing, 3)
        return self.regression_at


DRIFT = {"kind": "gradual", "target": "latency", "factor": 1.1, "ramp": 600.0, "onset": 0.0}


def _cells() -> list[OpenLoopCell]:
    """The cells, named by the canary's own rate (a 1-in-6 canary of a 60 req/s service has
    10 req/s; Argo's steps, by the service's rate)."""
    cpu = "gauge-cpu+0.15"
    cells = [
        OpenLoopCell("aa-1in6-1rps", "healthy", 6.0),
        OpenLoopCell("aa-1in6-2rps", "healthy", 12.0),
        OpenLoopCell("aa-1in6-10rps", "healthy", 60.0),
        OpenLoopCell("aa-argo-20-40-60-30rps", "healthy", 30.0, ARGO),
        OpenLoopCell("errors-x3-1in6-10rps", "errors-x3", 60.0, null=False),
        OpenLoopCell("errors-x3-1in6-2rps", "errors-x3", 12.0, null=False),
        OpenLoopCell("latency-x1.25-1in6-10rps", "latency-x1.25", 60.0, null=False),
        OpenLoopCell("latency-x1.25-1in6-1rps", "latency-x1.25", 6.0, null=False),
        OpenLoopCell(f"{cpu}-1in6-10rps", "gauge-only", 60.0, null=False),
        OpenLoopCell(f"{cpu}-from-10m-1in6-10rps", "gauge-only", 60.0, onset=600.0, null=False),
        OpenLoopCell(f"{cpu}-from-10m-1in6-1rps", "gauge-only", 6.0, onset=600.0, null=False),
        OpenLoopCell("gradual-latency-1in6-10rps", "gradual-latency", 60.0, null=False),
        OpenLoopCell(
            "latency-drift-10pct-per-10m-1in6-10rps",
            "healthy",
            60.0,
            null=False,
            regression=DRIFT,
        ),
        OpenLoopCell("errors-x3-argo-30rps", "errors-x3", 30.0, ARGO, null=False),
    ]
    for minutes in (5, 10, 15):
        name = f"errors-x3-onset-{minutes}m-1in6-10rps"
        cells.append(OpenLoopCell(name, "errors-x3", 60.0, onset=minutes * 60.0, null=False))
    for minutes in (5, 10, 15):
        name = f"latency-x1.25-onset-{minutes}m-1in6-10rps"
        cells.append(OpenLoopCell(name, "latency-x1.25", 60.0, onset=minutes * 60.0, null=False))
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
    """How one policy ended one rollout, and when (from the start; for a regression's
    rollback, from ``cell.detect_from``: negative if it came before), and a promotion's
    guarantee: per check its kind, ``ruled_out`` and ``risk``."""
    last = decisions[-1]
    ended = next((d for d in decisions if d.action in (Action.ROLLBACK, Action.PROMOTE)), None)
    holds = [d.summary for d in decisions if d.action is Action.HOLD]
    outcome = last.phase.value if ended is None else ended.action.value
    seconds = None if ended is None else ended.ts - T0
    detect = None
    if ended is not None and ended.action is Action.ROLLBACK and not cell.null:
        detect = ended.ts - T0 - cell.detect_from
    guarantee = {}
    if ended is not None and ended.action is Action.PROMOTE:
        guarantee = {
            reason.check: {"kind": reason.kind, "ruled_out": reason.ruled_out, "risk": reason.risk}
            for reason in ended.reasons
            if reason.kind != "guard"
        }
    return {
        "outcome": outcome,
        "seconds": seconds,
        "detect_s": detect,
        "holds": len(holds),
        "ratio_holds": sum("sample ratio" in summary for summary in holds),
        "unapplied_holds": sum("decision not applied" in summary for summary in holds),
        "under_rule": ended is not None and "low-traffic rule" in ended.summary,
        "guarantee": guarantee,
        "last": last.summary,
    }


def _guarantees(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """Per check, over the promoted rollouts: its kind, the median ``ruled_out`` of those
    that rule one out, and how many promotions waived it (no bound)."""
    bounds: dict[str, list[float]] = defaultdict(list)
    kinds: dict[str, str] = {}
    waived: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        for check, entry in outcome.get("guarantee", {}).items():
            kinds[check] = entry["kind"]
            if entry["ruled_out"] is None:
                waived[check] += 1
            else:
                bounds[check].append(entry["ruled_out"])
    return {
        check: {
            "kind": kind,
            "ruled_out_median": float(np.median(bounds[check])) if bounds[check] else None,
            "waived": waived[check],
        }
        for check, kind in kinds.items()
    }


def guarantee_text(guarantees: dict[str, Any]) -> str:
    """The median guarantee at promotion as a person reads it, check by check, e.g.
    ``errors ≤ ×1.32, typical ≤ +1.3%, p99 ≤ +15.0%, cpu_utilization ≤ +0.005``."""
    parts = []
    for check, entry in guarantees.items():
        kind, bound = entry["kind"], entry["ruled_out_median"]
        name = check
        if kind == "error_rate":
            name = "errors" if check == "error_rate" else check
        elif kind == "latency_shift":
            name = "typical" if check == "latency_shift" else check
        elif check.startswith("latency-"):
            name = check.removeprefix("latency-")
        elif check.startswith("gauges[") and check.endswith("]"):
            name = check[len("gauges[") : -1]
        if bound is None:
            parts.append(f"{name} waived")
            continue
        if kind == "error_rate":
            text = f"≤ {times(bound)}"
        elif kind in ("latency", "latency_shift"):
            text = f"≤ {change(1.0 + bound)}"
        else:
            text = f"≤ {bound:+.2g}"
        if entry["waived"]:
            text += f" (waived in {entry['waived']})"
        parts.append(f"{name} {text}")
    return ", ".join(parts) or "-"


def summarise(rows: list[dict[str, Any]], cells: list[OpenLoopCell]) -> dict[str, Any]:
    """Per cell and policy: outcome shares, holds for the sample ratio, times to detect
    (median and p90 of the rollbacks from ``detect_from`` on; those before it are counted
    apart as early), the promotions under the low-traffic rule and the median guarantee."""
    summary: dict[str, Any] = {}
    for cell in cells:
        mine = [row for row in rows if row["cell"] == cell.name]
        if not mine:
            continue
        entry: dict[str, Any] = {"n": len(mine), "null": cell.null}
        if not cell.null:
            entry["detect_from_s"] = cell.detect_from
        for name in POLICIES:
            outcomes = [row[name] for row in mine]
            n = len(outcomes)
            counted = [o["detect_s"] for o in outcomes if o["detect_s"] is not None]
            detect = [s for s in counted if s >= 0]
            promoted = [o for o in outcomes if o["outcome"] == "promote"]
            entry[name] = {
                "promoted": sum(o["outcome"] == "promote" for o in outcomes) / n,
                "promoted_by_30m": sum(o["seconds"] <= PLAN_S for o in promoted) / n,
                "rollback": sum(o["outcome"] == "rollback" for o in outcomes) / n,
                "held": sum(o["outcome"] == "held" for o in outcomes) / n,
                "running": sum(o["outcome"] == "running" for o in outcomes) / n,
                "ratio_holds": sum(o["ratio_holds"] for o in outcomes),
                "unapplied_holds": sum(o["unapplied_holds"] for o in outcomes),
                "ttd_median_s": float(np.median(detect)) if detect else None,
                "ttd_p90_s": float(np.percentile(detect, 90)) if detect else None,
                "early_rollbacks": len(counted) - len(detect),
                "promoted_under_rule": sum(bool(o.get("under_rule")) for o in promoted),
                "guarantee": _guarantees(promoted),
            }
        summary[cell.name] = entry
    return summary


def _pct(x: float) -> str:
    return f"{100 * x:.0f}"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _promoted(e: dict[str, Any]) -> str:
    text = _pct(e["promoted"])
    return f"{text} ({e['promoted_under_rule']} rule)" if e.get("promoted_under_rule") else text


def markdown(summary: dict[str, Any]) -> str:
    """One table: per cell, each policy's promoted (of which under the low-traffic rule) /
    rolled back / held / still running % at the end, holds for the sample ratio or a decision
    not applied, the time to detect (from the onset, or a drift's crossing of the tolerance;
    rollbacks before it apart) and the median guarantee at promotion."""
    lines = [
        "| cell | n | policy | promoted % | rolled back % | held % | running % | "
        "sample-ratio / not-applied holds | TTD from s | TTD median s | TTD p90 s | "
        "early rollbacks | guarantee at promotion (median) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, entry in summary.items():
        start = _s(entry.get("detect_from_s"))
        for policy in POLICIES:
            e = entry[policy]
            lines.append(
                f"| {name} | {entry['n']} | {policy} | {_promoted(e)} | "
                f"{_pct(e['rollback'])} | {_pct(e['held'])} | {_pct(e['running'])} | "
                f"{e['ratio_holds']} / {e['unapplied_holds']} | {start} | "
                f"{_s(e['ttd_median_s'])} | {_s(e['ttd_p90_s'])} | "
                f"{e.get('early_rollbacks', 0)} | {guarantee_text(e.get('guarantee', {}))} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every cell and write the results."""
    parser = arguments(__doc__)
    parser.add_argument("--seeds", type=int, default=20, help="rollouts per cell")
    parser.add_argument("--quick", action="store_true", help="3 rollouts per cell")
    parser.add_argument("--tag", default="", help="write results/open_loop-TAG.*")
    parser.add_argument(
        "--minutes", type=float, default=DURATION / 60, help="length of each recording"
    )
    parser.add_argument("--cells", default="", help="only these cells (names, comma-separated)")
    args = parser.parse_args(argv)
    seeds = 3 if args.quick else args.seeds
    cells = [c for c in CELLS if not args.cells or c.name in args.cells.split(",")]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        duration = args.minutes * 60
        tasks = [(cell, seed, Path(folder), duration) for cell in cells for seed in range(seeds)]
        run = pooled(run_rollout, tasks, args.workers)
    run.rows.sort(key=lambda row: (row["cell"], row["seed"]))
    summary = summarise(run.rows, cells)
    meta = run.meta(minutes=args.minutes, **machine(load))
    table = markdown(summary)
    name = f"open_loop-{args.tag}" if args.tag else "open_loop"
    write_results(name, table, meta=meta, summary=summary, rollouts=run.rows)
    print(run.line())
    return summary


if __name__ == "__main__":
    main()
