"""``make demo``: the live loop through Kafka and a real worker, then a replay to compare.

1. A worker subprocess starts on this run's own topics (``demo-<random>.``), the audit
   recorder beside it (:mod:`canarystream.demo.trail`), and ``canarystream notify`` posting
   to a local webhook receiver (:mod:`canarystream.demo.inbox`).
2. Both rollouts are announced (``deployment_started``); the demo waits until the worker
   lists them and their first decision (stage 0) is on the decisions topic.
3. The simulated fleets send their telemetry in accelerated event time: windows of one second
   of event time, paced at ``1/speed`` wall seconds, batched into messages, and recorded.
4. The fleet is its own router: a consumer of the decisions topic reads the decisions, and
   each applies to the fleet's canary share ``router_delay`` seconds of event time after its
   ``ts``. Before it sends a window the fleet waits until the worker has passed the event
   time at which the decisions for that window were due, and it has read them all. So the
   traffic follows the decisions at fixed event times, however busy the machine is: the
   recorded events are exactly those of the offline simulation with the same delay
   (:func:`canarystream.simulate.closed_loop.simulate`), and the outcome is reproducible.
5. A live terminal view shows each rollout's phase, stage, traffic, checks and decisions;
   the run ends ``linger`` seconds of event time after both rollouts have been promoted or
   rolled back, or with the plan.
6. The worker is stopped; once the audit trail holds every verdict and decision it is
   verified, and once every notification has arrived the notifier is stopped; the decisions
   on the topic are compared with an offline replay of the recorded events, and shown as a
   timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from canarystream.contracts.codec import encode_decision
from canarystream.contracts.decision import Decision, Phase
from canarystream.demo.inbox import DemoNotifications
from canarystream.demo.scenarios import PLAN_MINUTES, ROUTER_DELAY, demo_scenarios
from canarystream.demo.stack import DemoStack, WorkerProcess
from canarystream.demo.timeline import render_timeline
from canarystream.demo.trail import DemoTrail
from canarystream.demo.view import LiveView, RolloutState, clock_text
from canarystream.kafka.admin import broker_ready, create_topics
from canarystream.kafka.connection import LOCAL_BOOTSTRAP, Connection
from canarystream.kafka.publisher import EventPublisher
from canarystream.replay import replay_files
from canarystream.settings import load_settings
from canarystream.simulate.closed_loop import share_after
from canarystream.simulate.fleet import Fleet
from canarystream.simulate.scenario import Scenario

__all__ = ["LiveOptions", "decision_key", "run_live"]

_BY_TS = itemgetter("ts")
_BY_SEQ = attrgetter("seq")
_EVENTS = "events.jsonl"  # the recorded events, in the output directory


@dataclass(frozen=True)
class LiveOptions:
    """Knobs of the live demo."""

    out_dir: Path = Path("out/demo")
    speed: float = 20.0  # event seconds per wall second
    minutes: float = PLAN_MINUTES  # length of the plan in event time
    seed: int = 7
    batch: int = 50  # telemetry events per message
    linger: float = 60.0  # event seconds to keep going once both rollouts have ended
    router_delay: float = ROUTER_DELAY  # event seconds from a decision to the router applying it
    bootstrap: str | None = None  # default: KAFKA_BOOTSTRAP, else the local broker


def decision_key(decision: Decision) -> tuple[str, int, str, float, float]:
    """What must agree between the live worker and the replay."""
    return (decision.deployment, decision.seq, decision.action.value, decision.ts,
            decision.traffic_percent)  # fmt: skip


def _expected_phase(scenario: Scenario) -> Phase:
    return Phase.ROLLED_BACK if scenario.regression is not None else Phase.PROMOTED


def run_live(options: LiveOptions, console: Console | None = None) -> int:
    """Run the live demo; return a process exit code.

    0: replay = live, every rollout ended as it should (the regressed one rolled back, the
    healthy one promoted), the audit trail verifies and every notification arrived;
    1: otherwise; 2: no broker answers.
    """
    console = console or Console()
    bootstrap = options.bootstrap or load_settings().kafka_bootstrap or LOCAL_BOOTSTRAP
    # Checked as the demo's clients connect: with the security settings in force.
    if not broker_ready(Connection(load_settings(kafka_bootstrap=bootstrap))):
        console.print(
            f"[bold red]No Kafka broker answers at {escape(bootstrap)}.[/]\n"
            "  Start the local one with `canarystream kafka up` (`make demo` does this itself),\n"
            "  point KAFKA_BOOTSTRAP at a running cluster, or run the broker-free demo:\n"
            "  canarystream demo --offline",
            highlight=False,
        )
        return 2

    out_dir = options.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path = out_dir / _EVENTS
    scenarios = demo_scenarios(minutes=options.minutes)
    origin = min(s.start_ts for s in scenarios)
    data_dir = Path(tempfile.mkdtemp(prefix="canarystream-demo-"))
    stack = DemoStack(bootstrap, data_dir)
    running = contextlib.ExitStack()  # stops what _start started, the last first
    started = time.monotonic()
    try:
        worker, trail, notes = _start(stack, out_dir, scenarios, running, console)
        console.print(
            f"[bold]2. Running[/] two rollouts live: {options.minutes:g} minutes of event time "
            f"at {options.speed:g}× (Ctrl-C stops)…",
            highlight=False,
        )
        header = (
            f"worker pid {worker.process.pid} on :{worker.port} · topics {stack.prefix}* "
            f"at {bootstrap}"
        )
        view = LiveView(scenarios, speed=options.speed, header=header)
        played = time.monotonic()
        asyncio.run(_play(stack, worker, view, options, console))
        console.print(
            f"   {view.sent_events:,} events in {view.sent_messages:,} messages over "
            f"{time.monotonic() - played:.1f}s → {events_path}",
            highlight=False,
        )
        _print_latency(view, console)

        console.print("[bold]3. Stopping[/] the worker and reading the decisions topic…")
        live, trail_ok = _stop_and_collect(stack, worker, trail, console)
        notified = _await_notifications(notes, live, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except RuntimeError as exc:
        console.print(f"[bold red]demo failed:[/] {escape(str(exc))}", highlight=False)
        return 1
    finally:
        running.close()
        with contextlib.suppress(Exception):
            asyncio.run(stack.delete_topics())
        shutil.rmtree(data_dir, ignore_errors=True)

    (out_dir / "decisions.live.jsonl").write_bytes(
        b"".join(encode_decision(d) + b"\n" for d in live)
    )
    console.print(f"   {len(live)} decisions → {out_dir / 'decisions.live.jsonl'}", highlight=False)

    ok = _replay_and_compare(live, scenarios, out_dir, origin, console)
    console.print(f"total {time.monotonic() - started:.0f}s", style="dim")
    return 0 if ok and trail_ok and notified else 1


def _start(
    stack: DemoStack,
    out_dir: Path,
    scenarios: list[Scenario],
    running: contextlib.ExitStack,
    console: Console,
) -> tuple[WorkerProcess, DemoTrail, DemoNotifications]:
    """Start the audit recorder, the worker and the notifier, each to be stopped by
    ``running``; once the worker answers, print where to watch the run."""
    started = time.monotonic()
    console.print(
        f"[bold]1. Starting[/] a worker on topics {stack.prefix}* at {escape(stack.bootstrap)} "
        f"(log: {out_dir / 'worker.log'})…",
        highlight=False,
    )
    asyncio.run(create_topics(stack.connection))
    trail = DemoTrail(stack)
    trail.start()
    running.callback(trail.stop)
    worker = stack.start_worker(out_dir / "worker.log")
    running.callback(worker.stop)
    notes = DemoNotifications(
        stack, out_dir, lambda line: console.print(f"   {escape(line)}", highlight=False)
    )
    running.callback(notes.stop)
    worker.wait_ready()
    regressed = next(s for s in scenarios if s.regression is not None)
    console.print(
        f"   worker pid {worker.process.pid} serves http://127.0.0.1:{worker.port}/rollouts/ "
        f"after {time.monotonic() - started:.1f}s; a rollout's report while it runs: "
        f"{worker.url(f'/rollouts/{regressed.deployment}/report')}\n"
        f"   notify (log: {notes.notifier.log}) posts to {notes.url} → {notes.path}\n"
        "   watch it from another terminal: "
        f". {stack.write_watch_env(out_dir / 'watch.env')} && "
        "canarystream status --watch --clock event",
        highlight=False,
        soft_wrap=True,
    )
    return worker, trail, notes


def _await_notifications(notes: DemoNotifications, live: list[Decision], console: Console) -> bool:
    """Wait for the notifications of the ``live`` decisions; whether they all arrived."""
    received, want = notes.finish(live)
    ok = received >= want
    console.print(
        f"   notifications: {received} of {want} → {notes.path}"
        + ("" if ok else f" [bold red]MISSING[/]\n{escape(notes.notifier.tail())}"),
        highlight=False,
    )
    return ok


def _stop_and_collect(
    stack: DemoStack, worker: WorkerProcess, trail: DemoTrail, console: Console
) -> tuple[list[Decision], bool]:
    """Stop the worker, read its decisions (each checked against its key) and verify the audit
    trail once it holds every verdict and decision; the decisions and whether the trail is ok."""
    code = worker.stop()
    if code not in (0, None):
        console.print(f"   [yellow]the worker exited with code {code}[/]")
    live = asyncio.run(stack.read_decisions())
    console.print(
        f"   {len(live)} decisions, each signed by the worker's Ed25519 key; the "
        "announcements were signed by the deployer's, as the run's access file requires "
        "(keys made for this run; `canarystream keys generate` makes lasting ones)",
        highlight=False,
    )
    clock = time.perf_counter()
    recorded, report = trail.finish()
    ok = report.ok and report.records == recorded
    console.print(
        f"   audit trail: {report.records} records of {recorded} verdicts and decisions "
        f"signed by the worker, {report.deployments} chains; audit verify: "
        + ("[green]ok[/]" if ok else f"[bold red]PROBLEMS {report.counts}[/]")
        + f" ({time.perf_counter() - clock:.1f}s)",
        highlight=False,
    )
    return live, ok


def _replay_and_compare(
    live: list[Decision], scenarios: list[Scenario], out_dir: Path, origin: float, console: Console
) -> bool:
    """Replay the recorded events offline and show the live decisions as a timeline.

    True when the replay took the live decisions and every rollout ended as it should.
    """
    events_path = out_dir / _EVENTS
    console.print("[bold]4. Replaying[/] the recorded events offline through a fresh engine…")
    replayed: list[Decision] = []
    clock = time.perf_counter()
    result = replay_files([events_path], on_decision=replayed.append)
    replayed.sort(key=lambda d: (d.deployment, d.seq))
    (out_dir / "decisions.replay.jsonl").write_bytes(
        b"".join(encode_decision(d) + b"\n" for d in replayed)
    )
    console.print(
        f"   {result.events:,} events in {time.perf_counter() - clock:.1f}s, "
        f"{len(replayed)} decisions → {out_dir / 'decisions.replay.jsonl'}",
        highlight=False,
    )

    console.print("[bold]5. Timeline[/] (decisions of the live worker)")
    render_timeline(live, origin, console)

    same = [decision_key(d) for d in live] == [decision_key(d) for d in replayed]
    console.print(
        "replay = live on (deployment, seq, action, ts, traffic_percent): "
        + (
            f"[bold green]yes, all {len(live)} decisions[/]"
            if same
            else "[bold red]NO, the decisions differ[/]"
        )
    )
    final = {d.deployment: d.phase for d in live}
    outcome_ok = True
    for scenario in scenarios:
        got = final.get(scenario.deployment)
        want = _expected_phase(scenario)
        ok = got is want
        outcome_ok &= ok
        console.print(
            f"{scenario.deployment}: {got.value if got else 'no decision'} "
            + ("[green](as expected)[/]" if ok else f"[bold red](expected {want.value})[/]"),
            highlight=False,
        )
    return same and outcome_ok


async def _play(
    stack: DemoStack, worker: WorkerProcess, view: LiveView, options: LiveOptions, console: Console
) -> None:
    """Announce, run the fleets with the live view, and wait until the worker has it all."""
    first: set[str] = set()

    def on_decision(decision: Decision) -> None:
        view.on_decision(decision)
        first.add(decision.deployment)

    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(stack.follow_decisions(on_decision, stop)),
        asyncio.create_task(_poll_worker(worker, view, stop)),
    ]
    player = _Player(worker, view, options, tasks)
    try:
        async with EventPublisher(stack.connection, signed_as=stack.deployer()) as publisher:
            with (
                (options.out_dir / _EVENTS).open("wb") as sink,
                Live(view, console=console, auto_refresh=False, transient=False) as live,
            ):
                tasks.append(asyncio.create_task(_refresh(live, stop)))
                await player.announce(publisher, sink, first)
                await player.run(publisher, sink)
                await player.drain(stack)
                await asyncio.sleep(0.3)  # the last decisions reach the view
                view.note = "done"
                live.refresh()
            if not console.is_terminal:
                console.line()  # the last frame, printed once, ends without a newline
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 5)


class _Player:
    """Plays the fleets' telemetry at the demo's pace, each step once the worker is ready.

    Every wait watches the worker and the helper ``tasks``: it fails at once if one of them did.
    """

    def __init__(
        self,
        worker: WorkerProcess,
        view: LiveView,
        options: LiveOptions,
        tasks: list[asyncio.Task[None]],
    ) -> None:
        self.worker, self.view, self.options, self.tasks = worker, view, options, tasks
        self.scenarios = [state.scenario for state in view.rollouts.values()]
        self.fleets = [Fleet(s, options.seed, stream=i) for i, s in enumerate(self.scenarios)]

    def check(self) -> None:
        """Raise if the worker died or a helper task failed."""
        _check(self.tasks, self.worker)

    async def until(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        """Wait until ``condition`` holds; raise after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            self.check()
            if loop.time() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)

    async def announce(self, publisher: EventPublisher, sink: BinaryIO, first: set[str]) -> None:
        """Announce the rollouts; wait until the worker lists them and ``first`` has a
        decision of each."""
        view = self.view
        names = {s.deployment for s in self.scenarios}
        starts = [fleet.deployment_event() for fleet in self.fleets]
        sink.write(b"".join(orjson.dumps(e) + b"\n" for e in starts))
        await publisher.send(starts)
        view.note = "rollouts announced; waiting for the worker to take them"
        await self.until(lambda: names <= view.known(), "the worker to list the rollouts", 60)
        await self.until(lambda: names <= first, "the first decisions", 60)

    async def run(self, publisher: EventPublisher, sink: BinaryIO) -> None:
        """Send one window of event time after the other, paced at the demo's speed."""
        view, options = self.view, self.options
        view.note = "running: the fleet sends telemetry; its traffic follows decisions"
        delay = options.router_delay
        loop = asyncio.get_running_loop()
        origin = view.origin
        end = max(s.end_ts for s in self.scenarios)
        begun = loop.time()
        view.run_started = time.monotonic()
        states = [view.rollouts[fleet.scenario.deployment] for fleet in self.fleets]
        window = 0
        while (t0 := origin + window) < end:

            def due(t0: float = t0) -> bool:
                return all(_due_known(st, t0, delay) for st in states)

            await self.until(
                due,
                f"the worker to pass event time {clock_text(t0 - delay - origin)}",
                120,
            )
            if all(_ended_by(st, t0, delay + options.linger) for st in states):
                break
            batch = self._window(states, t0)
            sink.write(b"".join(orjson.dumps(e) + b"\n" for e in batch))
            view.sent_messages += await publisher.send(batch, batch=options.batch)
            view.sent_events += len(batch)
            view.produced_until = t0 + 1.0
            view.window_sent[window] = time.monotonic()
            window += 1
            if view.all_terminal():
                view.note = "both rollouts have ended; a little more event time…"
            self.check()
            await asyncio.sleep(max(begun + window / options.speed - loop.time(), 0.0))

    def _window(self, states: list[RolloutState], t0: float) -> list[dict[str, Any]]:
        """The fleets' telemetry of the second from ``t0``, at the shares then applied."""
        t1 = t0 + 1.0
        batch: list[dict[str, Any]] = []
        for fleet, state in zip(self.fleets, states, strict=True):
            s = fleet.scenario
            if s.start_ts < t1 and t0 < s.end_ts:
                batch += fleet.step(t0, 1.0, _share(state, t0, self.options.router_delay))
        batch.sort(key=_BY_TS)
        return batch

    async def drain(self, stack: DemoStack) -> None:
        """Wait until the worker has processed every event sent."""
        view = self.view
        view.note = "waiting until the worker has processed every event…"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while (behind := await stack.backlog()) > 0:
            self.check()
            if loop.time() > deadline:
                raise RuntimeError(f"the worker is still {behind} messages behind")
            view.note = f"waiting for the worker: {behind} messages to process"
            await asyncio.sleep(0.5)


def _applied(state: RolloutState, t0: float, delay: float) -> list[Decision]:
    """The decisions a router ``delay`` event seconds behind has applied by ``t0``.

    The same test as :func:`canarystream.simulate.closed_loop.simulate`, so the live fleet
    sends exactly what the offline simulation does.
    """
    return [d for d in state.history if d.ts + delay <= t0]


def _share(state: RolloutState, t0: float, delay: float) -> float:
    """The canary's share of the window that starts at ``t0``."""
    applied = _applied(state, t0, delay)
    return share_after(max(applied, key=_BY_SEQ)) if applied else 0.0


def _ended_by(state: RolloutState, t0: float, delay: float) -> bool:
    """Whether a promotion or rollback had been applied ``delay`` event seconds by ``t0``."""
    return any(d.phase.is_terminal for d in _applied(state, t0, delay))


def _due_known(state: RolloutState, t0: float, delay: float) -> bool:
    """Whether every decision due to be applied by ``t0`` has been read.

    The worker has taken every decision up to its clock for the rollout; the status that shows
    that clock also gives the rollout's last ``seq``, which must have been read. After a
    terminal decision the share no longer changes, so nothing more is awaited.
    """
    last = max(state.history, key=_BY_SEQ, default=None)
    if last is not None and last.phase.is_terminal:
        return True
    return (
        state.event_time is not None
        and state.event_time + delay >= t0
        and last is not None
        and last.seq >= state.status_seq
    )


def _check(tasks: list[asyncio.Task[None]], worker: WorkerProcess) -> None:
    """Raise if the worker died or a helper task failed."""
    if not worker.alive():
        raise RuntimeError(f"the worker exited ({worker.process.returncode}):\n{worker.tail()}")
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError(f"a demo task failed: {task.exception()!r}")


async def _poll_worker(worker: WorkerProcess, view: LiveView, stop: asyncio.Event) -> None:
    """Keep the view's picture of the worker current: status often, metrics now and then."""
    next_metrics = 0.0
    while not stop.is_set():
        try:
            view.on_status(await asyncio.to_thread(worker.rollouts))
            if time.monotonic() >= next_metrics:
                next_metrics = time.monotonic() + 1.0
                text = (await asyncio.to_thread(worker.get, "/metrics")).decode()
                view.consumed = _consumed(text)
        except (OSError, ValueError):
            pass  # a busy or stopping worker: try again
        await asyncio.sleep(0.05)


def _consumed(metrics: str) -> float:
    """Sum of ``canarystream_events_consumed_total`` in a Prometheus text exposition."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("canarystream_events_consumed_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _refresh(live: Live, stop: asyncio.Event) -> None:
    while not stop.is_set():
        live.refresh()
        await asyncio.sleep(0.25)


def _print_latency(view: LiveView, console: Console) -> None:
    """Wall time from sending the window that closed a decision's tick to reading it."""
    latencies = []
    for state in view.rollouts.values():
        for decision in state.history:
            if decision.seq == 0:
                continue  # taken on the announcement, before any telemetry
            window = int(decision.ts - view.origin)
            sent = view.window_sent.get(window)
            got = state.received.get(decision.seq)
            if sent is not None and got is not None:
                latencies.append(got - sent)
        ended = next((d for d in state.history if d.phase.is_terminal), None)
        if ended is not None:
            console.print(
                f"   {state.scenario.deployment}: {ended.phase.value} at event time "
                f"{clock_text(ended.ts - view.origin)}",
                highlight=False,
            )
    if latencies:
        console.print(
            f"   decision latency (window sent → decision read): median "
            f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
            f"over {len(latencies)} decisions",
            highlight=False,
        )
