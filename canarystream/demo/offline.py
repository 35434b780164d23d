"""``canarystream demo --offline``: simulate, replay and show a timeline, no broker.

The simulation is closed-loop (the canary's traffic share follows the engine's decisions);
the recorded events are then replayed through a fresh engine, which must reach exactly the
same decisions — the determinism the live service relies on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from canarystream.contracts.codec import encode_decision
from canarystream.contracts.decision import Decision
from canarystream.demo.scenarios import PLAN_MINUTES, ROUTER_DELAY, demo_scenarios
from canarystream.demo.timeline import render_timeline
from canarystream.engine import Engine
from canarystream.replay import replay_files
from canarystream.simulate.closed_loop import simulate

__all__ = ["run_offline"]


def run_offline(
    out_dir: Path = Path("out/demo"),
    *,
    minutes: float = PLAN_MINUTES,
    seed: int = 7,
    console: Console | None = None,
) -> int:
    """Run the offline demo; return a process exit code (0: replay = simulation)."""
    console = console or Console()
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path = out_dir / "events.jsonl"
    scenarios = demo_scenarios(minutes=minutes)
    origin = min(s.start_ts for s in scenarios)

    console.print("[bold]1. Simulating[/] two rollouts (closed loop: traffic follows decisions)…")
    live: list[Decision] = []

    class Recorder:
        """An engine that keeps every decision it takes."""

        def __init__(self) -> None:
            self.engine = Engine()

        def process(self, event: dict[str, Any]) -> list[Decision]:
            out = self.engine.process(event)
            live.extend(out)
            return out

    started = time.perf_counter()
    count = 0
    with events_path.open("wb") as sink:
        for event in simulate(scenarios, seed=seed, engine=Recorder(), delay=ROUTER_DELAY):
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
