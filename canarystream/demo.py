"""``make demo``: simulate a healthy and a regressed rollout, replay them, show a timeline.

The simulation is closed-loop (the canary's traffic share follows the engine's decisions);
the recorded events are then replayed through a fresh engine, which must reach exactly the
same decisions — the determinism the live service relies on.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from canarystream.contracts.codec import encode_decision
from canarystream.contracts.decision import Action, Decision, Verdict
from canarystream.engine import Engine
from canarystream.replay import replay_files
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset
from canarystream.simulate.scenario import Scenario

__all__ = ["demo_scenarios", "main", "render_timeline"]

_STYLE = {
    Action.ADVANCE: "cyan",
    Action.HOLD: "yellow",
    Action.ROLLBACK: "bold red",
    Action.PROMOTE: "bold green",
}


def demo_scenarios(start_ts: float = 1_790_000_000.0) -> list[Scenario]:
    """A healthy canary of ``checkout`` and one of ``payments`` whose errors triple at 9 min."""
    healthy = build_preset("healthy", service="checkout", duration=2400, start_ts=start_ts)
    regressed = build_preset("errors-x3", service="payments", duration=2400, start_ts=start_ts)
    assert regressed.regression is not None
    late = regressed.regression.model_copy(update={"onset": 540.0})
    return [healthy, regressed.model_copy(update={"regression": late})]


def render_timeline(decisions: list[Decision], origin: float, console: Console) -> None:
    """Print each rollout's decisions as a readable timeline."""
    by_rollout: dict[str, list[Decision]] = {}
    for decision in decisions:
        by_rollout.setdefault(decision.deployment, []).append(decision)
    for deployment, items in by_rollout.items():
        first = items[0]
        console.rule(
            f"[bold]{escape(deployment)}[/]: {escape(first.service)} "
            f"{escape(first.baseline_version)} → {escape(first.canary_version)} "
            f"(policy {escape(first.policy)})"
        )
        for decision in items:
            minutes, seconds = divmod(int(decision.ts - origin), 60)
            style = _STYLE[decision.action]
            console.print(
                f"  {minutes:3d}:{seconds:02d}  [{style}]{decision.action.value:<8}[/] "
                f"stage {decision.stage} · {decision.traffic_percent:g}%  "
                f"{escape(decision.summary)}",
                highlight=False,
            )
            if decision.action in (Action.ROLLBACK, Action.HOLD, Action.PROMOTE):
                for reason in decision.reasons:
                    if reason.kind == "guard" and reason.verdict is Verdict.PASS:
                        continue
                    mark = "✗" if reason.verdict is Verdict.FAIL else "·"
                    console.print(
                        f"            {mark} {escape(reason.check)}: {reason.verdict.value} — "
                        f"{escape(reason.message)}",
                        highlight=False,
                        style="red" if reason.verdict is Verdict.FAIL else "dim",
                    )


def main(out_dir: Path = Path("out/demo")) -> int:
    """Run the demo; return a process exit code."""
    console = Console()
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path = out_dir / "events.jsonl"
    scenarios = demo_scenarios()
    origin = min(s.start_ts for s in scenarios)

    console.print("[bold]1. Simulating[/] two rollouts (closed loop: traffic follows decisions)…")
    live: list[Decision] = []

    class Recorder(Engine):
        def process(self, event: object) -> list[Decision]:
            out = super().process(event)
            live.extend(out)
            return out

    started = time.perf_counter()
    count = 0
    with events_path.open("wb") as sink:
        for event in simulate(scenarios, seed=7, engine=Recorder()):
            sink.write(orjson.dumps(event) + b"\n")
            count += 1
    console.print(
        f"   {count:,} events in {time.perf_counter() - started:.1f}s → {events_path}",
        highlight=False,
    )

    console.print("[bold]2. Replaying[/] the recorded events through a fresh engine…")
    replayed: list[Decision] = []
    started = time.perf_counter()
    result = replay_files([events_path], on_decision=replayed.append)
    elapsed = time.perf_counter() - started
    (out_dir / "decisions.jsonl").write_bytes(
        b"".join(encode_decision(d) + b"\n" for d in replayed)
    )
    console.print(
        f"   {result.events:,} events in {elapsed:.1f}s ({result.events / elapsed:,.0f}/s), "
        f"{len(replayed)} decisions → {out_dir / 'decisions.jsonl'}",
        highlight=False,
    )
    same = [d.model_dump() for d in live] == [d.model_dump() for d in replayed]
    console.print(
        "   replay = live: "
        + ("[green]identical decisions[/]" if same else "[red]DECISIONS DIFFER[/]")
    )

    console.print("[bold]3. Timeline[/]")
    render_timeline(replayed, origin, console)

    table = Table(title="Outcome", title_justify="left")
    for column in ("deployment", "phase", "stage", "traffic %", "decisions"):
        table.add_column(column)
    for rollout in result.engine.rollouts.values():
        table.add_row(
            rollout.deployment,
            rollout.phase.value,
            str(rollout.stage),
            f"{rollout.traffic_percent:g}",
            str(rollout.seq + 1),
        )
    console.print(table)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
