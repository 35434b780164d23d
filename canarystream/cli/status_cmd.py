"""``canarystream status [--watch] [--json]`` and ``canarystream get DEPLOYMENT [--json]``.

Both read the decisions topic (not one worker's memory), so they show every rollout of the
cluster: :mod:`canarystream.kafka.decisions` reads it, :mod:`canarystream.summary` folds the
decisions into summaries. With signing on, only decisions signed with the worker's key
(``CANARYSTREAM_VERIFY_KEYS``) are shown; the others are counted and the count is printed.
"""

from __future__ import annotations

import contextlib
import sys
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from canarystream.cli.app import app
from canarystream.errors import BrokerError, ConfigError
from canarystream.readable import duration, instant

if TYPE_CHECKING:
    from rich.console import RenderableType

    from canarystream.contracts.decision import Decision
    from canarystream.kafka.connection import Connection
    from canarystream.kafka.decisions import DecisionFeed
    from canarystream.summary import RolloutBook, RolloutSummary

__all__: list[str] = []

_PHASE_STYLE = {
    "running": "cyan",
    "held": "yellow",
    "frozen": "bold magenta",
    "rolled_back": "bold red",
    "promoted": "bold green",
    "aborted": "red",
}

Lookback = Annotated[
    int,
    typer.Option(
        min=1, help="Messages read back from the end of each partition of the decisions topic."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class ClockKind(StrEnum):
    """What ages and times in stage are measured against."""

    wall = "wall"
    event = "event"


Clock = Annotated[
    ClockKind,
    typer.Option(
        help="Ages against the wall clock, or against event time (the newest decision's "
        "time: for replays and demos, whose event time is not today's).",
    ),
]


def _now(book: RolloutBook, clock: ClockKind) -> float:
    newest = book.newest_ts if clock is ClockKind.event else None
    return time.time() if newest is None else newest


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console  # noqa: PLC0415
    from rich.markup import escape  # noqa: PLC0415

    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _setup() -> tuple[Connection, DecisionFeed]:
    """The connection and a feed verifying decisions with the worker's key (signing on)."""
    from canarystream.cli.options import settings_with  # noqa: PLC0415
    from canarystream.kafka.connection import Connection  # noqa: PLC0415
    from canarystream.kafka.decisions import DecisionFeed  # noqa: PLC0415
    from canarystream.security import actuator_verifier  # noqa: PLC0415

    settings = settings_with()
    return Connection(settings), DecisionFeed(actuator_verifier(settings))


def _ignored_line(feed: DecisionFeed) -> str | None:
    if not feed.forged and not feed.invalid:
        return None
    parts = []
    if feed.forged:
        parts.append(f"{feed.forged} not signed by the worker's key (forged or unsigned)")
    if feed.invalid:
        parts.append(f"{feed.invalid} not decisions")
    return "ignored messages of the decisions topic: " + "; ".join(parts)


def _versions(summary: RolloutSummary) -> str:
    return f"{summary.last.baseline_version} → {summary.last.canary_version}"


def _table(
    book: RolloutBook, feed: DecisionFeed, now: float, clock: ClockKind = ClockKind.wall
) -> RenderableType:
    from rich.console import Group  # noqa: PLC0415
    from rich.markup import escape  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    title = f"rollouts at {instant(now)}" + (" (event time)" if clock is ClockKind.event else "")
    table = Table(title=title, title_justify="left", expand=False)
    for name in ("deployment", "service", "versions", "phase", "stage", "traffic", "age"):
        table.add_column(name, overflow="fold")
    table.add_column("in stage", overflow="fold")
    table.add_column("last decision", overflow="fold", ratio=2)
    table.add_column("checks failing or inconclusive", overflow="fold", ratio=3)
    for summary in book.summaries():
        last = summary.last
        checks = "\n".join(
            f"{'✗' if c.verdict.value == 'fail' else '?'} {c.check} ({c.kind}): {c.plain}"
            for c in summary.attention
        )
        page = " [bold red]PAGE[/]" if last.page else ""
        table.add_row(
            escape(summary.deployment),
            escape(summary.service),
            escape(_versions(summary)),
            f"[{_PHASE_STYLE.get(summary.phase.value, '')}]{summary.phase.value}[/]",
            str(summary.stage),
            f"{summary.traffic_percent:g}%",
            duration(summary.age(now)),
            duration(summary.in_stage(now)),
            f"{last.action.value}{page} {duration(max(0.0, now - last.ts))} ago: "
            f"{escape(last.summary)}",
            escape(checks) or "—",
        )
    parts: list[Any] = [table if len(book) else Text("no rollouts on the decisions topic")]
    if ignored := _ignored_line(feed):
        parts.append(Text(ignored, style="yellow"))
    return Group(*parts)


def _status_json(book: RolloutBook, feed: DecisionFeed, now: float) -> dict[str, Any]:
    return {
        "now": now,
        "rollouts": [summary.to_dict(now) for summary in book.summaries()],
        "ignored": {"forged": feed.forged, "invalid": feed.invalid},
    }


def _write_json(data: dict[str, Any]) -> None:
    import orjson  # noqa: PLC0415

    sys.stdout.write(orjson.dumps(data).decode("utf-8") + "\n")
    sys.stdout.flush()


def _console() -> Any:
    from rich.console import Console  # noqa: PLC0415

    # Off a terminal nothing is cut: a wide page that folds rather than truncates.
    return Console() if sys.stdout.isatty() else Console(width=200, soft_wrap=False)


async def _watch(
    connection: Connection,
    feed: DecisionFeed,
    *,
    lookback: int,
    as_json: bool,
    seconds: float | None,
    clock: ClockKind,
) -> None:
    from rich.live import Live  # noqa: PLC0415

    from canarystream.kafka.decisions import read_decisions  # noqa: PLC0415
    from canarystream.summary import RolloutBook  # noqa: PLC0415

    book = RolloutBook(keep_timelines=False)
    deadline = None if seconds is None else time.monotonic() + seconds
    batches = read_decisions(connection, feed, lookback=lookback, follow=True)
    if as_json:
        async for batch in batches:
            changed = {d.deployment for d in batch if book.add(d) is not None}
            now = _now(book, clock)
            for deployment in sorted(changed):
                summary = book.get(deployment)
                assert summary is not None
                _write_json({"now": now, "rollout": summary.to_dict(now)})
            if deadline is not None and time.monotonic() >= deadline:
                break
        return
    first = _table(book, feed, _now(book, clock), clock)
    with Live(first, console=_console(), auto_refresh=False) as live:
        async for batch in batches:
            book.extend(batch)
            live.update(_table(book, feed, _now(book, clock), clock), refresh=True)
            if deadline is not None and time.monotonic() >= deadline:
                break


async def _read(
    connection: Connection, feed: DecisionFeed, *, lookback: int | None, partition: int | None
) -> RolloutBook:
    from canarystream.kafka.decisions import read_decisions  # noqa: PLC0415
    from canarystream.summary import RolloutBook  # noqa: PLC0415

    book = RolloutBook()
    async for batch in read_decisions(connection, feed, lookback=lookback, partition=partition):
        book.extend(batch)
    return book


def _run(job: Any) -> Any:
    """Run a coroutine, turning Kafka and settings failures into a message and exit 2."""
    import asyncio  # noqa: PLC0415

    from aiokafka.errors import KafkaError  # noqa: PLC0415  (aiokafka is slow to import)

    try:
        return asyncio.run(job)
    except (ConfigError, BrokerError) as exc:
        raise _fail(str(exc)) from exc
    except KafkaError as exc:
        raise _fail(f"kafka: {exc}", 1) from exc


@app.command("status")
def status(
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep the view live as decisions arrive.")
    ] = False,
    as_json: AsJson = False,
    lookback: Lookback = 10_000,
    watch_seconds: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="With --watch: stop after this many seconds (default: until Ctrl-C).",
            show_default=False,
        ),
    ] = None,
    clock: Clock = ClockKind.wall,
) -> None:
    """Every rollout of the cluster, from the decisions topic: phase, stage, traffic, age,
    time in stage, the last decision and the checks failing or inconclusive.

    With --watch --json, one JSON line per rollout each time it changes. Exit codes: 0 shown;
    1 Kafka failed; 2 settings (such as the worker's key to verify decisions with)."""
    try:
        connection, feed = _setup()
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    if watch:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the live view
            _run(
                _watch(
                    connection,
                    feed,
                    lookback=lookback,
                    as_json=as_json,
                    seconds=watch_seconds,
                    clock=clock,
                )
            )
        return
    book = _run(_read(connection, feed, lookback=lookback, partition=None))
    now = _now(book, clock)
    if as_json:
        _write_json({**_status_json(book, feed, now), "clock": clock.value})
    else:
        _console().print(_table(book, feed, now, clock))


def _timeline(summary: RolloutSummary, decisions: list[Decision]) -> RenderableType:
    from rich.console import Group  # noqa: PLC0415
    from rich.markup import escape  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    last = summary.last
    lines: list[Any] = [
        Text.from_markup(
            f"[bold]{escape(summary.deployment)}[/]: {escape(summary.service)} "
            f"{escape(_versions(summary))}, policy {escape(last.policy)}: "
            f"[{_PHASE_STYLE.get(summary.phase.value, '')}]{summary.phase.value}[/] at stage "
            f"{summary.stage} ({summary.traffic_percent:g}%)"
        )
    ]
    if summary.first_seq > 1:
        lines.append(Text(f"(decisions before seq {summary.first_seq} not read back)", "dim"))
    origin = summary.started_at
    for decision in decisions:
        page = " [bold red]PAGE[/]" if decision.page else ""
        lines.append(
            Text.from_markup(
                f"{instant(decision.ts)} (+{duration(decision.ts - origin)}) "
                f"#{decision.seq} [bold]{decision.action.value}[/]{page} stage "
                f"{decision.stage} · {decision.traffic_percent:g}% · {decision.phase.value}: "
                f"{escape(decision.summary)}"
            )
        )
        for reason in decision.reasons:
            from canarystream.summary import CheckStatus  # noqa: PLC0415

            check = CheckStatus.from_reason(reason)
            mark = {"fail": "✗", "pass": "✓", "inconclusive": "?"}.get(reason.verdict.value, "·")
            lines.append(
                Text(
                    f"    {mark} {reason.check} ({reason.kind}) {reason.verdict.value}: "
                    f"{check.plain}; {reason.message}",
                    style="red" if reason.verdict.value == "fail" else "dim",
                )
            )
    return Group(*lines)


@app.command("get")
def get(
    deployment: Annotated[str, typer.Argument(metavar="DEPLOYMENT", help="Rollout id.")],
    as_json: AsJson = False,
    lookback: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Messages read back per partition (default: the whole partition).",
            show_default=False,
        ),
    ] = None,
    clock: Clock = ClockKind.wall,
) -> None:
    """One rollout's timeline: every decision with its reasons, from the decisions topic.

    Exit codes: 0 shown; 1 Kafka failed; 2 settings, or no decision names DEPLOYMENT."""
    from canarystream.contracts.topics import DECISIONS_TOPIC, service_partition  # noqa: PLC0415

    try:
        connection, feed = _setup()
    except ConfigError as exc:
        raise _fail(str(exc)) from exc

    async def read() -> RolloutBook:
        from canarystream.kafka.control import open_reader, topic_partitions  # noqa: PLC0415

        async with open_reader(connection) as consumer:
            count = len(await topic_partitions(consumer, connection.topic(DECISIONS_TOPIC)))
        # Decisions are keyed by deployment: its partition holds them all.
        keyed = service_partition(deployment, count)
        return await _read(connection, feed, lookback=lookback, partition=keyed)

    book = _run(read())
    summary = book.get(deployment)
    if summary is None:
        ignored = _ignored_line(feed)
        raise _fail(
            f"no decision on {connection.topic(DECISIONS_TOPIC)} names deployment "
            f"{deployment!r}" + (f" ({ignored})" if ignored else "")
        )
    decisions = book.timeline(deployment)
    now = _now(book, clock)
    if as_json:
        _write_json(
            {
                "rollout": summary.to_dict(now),
                "decisions": [d.model_dump(mode="json") for d in decisions],
                "ignored": {"forged": feed.forged, "invalid": feed.invalid},
            }
        )
        return
    console = _console()
    console.print(_timeline(summary, decisions), highlight=False)
    if ignored := _ignored_line(feed):
        console.print(ignored, style="yellow", highlight=False)
