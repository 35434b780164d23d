"""``canarystream simulate``: realistic rollout telemetry as JSON Lines."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from canarystream.cli.aliases import renamed
from canarystream.cli.app import app
from canarystream.errors import CanarystreamError

if TYPE_CHECKING:
    from rich.progress import Progress

    from canarystream.simulate.closed_loop import DecisionLike, EngineLike
    from canarystream.simulate.scenario import Scenario

__all__ = ["simulate_command"]

_CHUNK = 4096  # events per write
_PROGRESS_EVERY = 8192  # events between updates of the progress bar


class _LastDecisions:
    """Wraps an engine and remembers the last decision per deployment (for the summary)."""

    def __init__(self, engine: EngineLike) -> None:
        self.engine = engine
        self.last: dict[str, Any] = {}

    def process(self, event: dict[str, Any]) -> Sequence[DecisionLike]:
        decisions = self.engine.process(event)
        for decision in decisions:
            self.last[decision.deployment] = decision
        return decisions


def _scenarios(
    presets: Sequence[str],
    files: Sequence[Path],
    *,
    rps: float | None,
    duration: float | None,
    routing: list[dict[str, float]] | None = None,
) -> list[Scenario]:
    from canarystream.simulate.presets import PRESETS, build_preset, preset_names  # noqa: PLC0415
    from canarystream.simulate.scenario import load_scenarios  # noqa: PLC0415

    unknown = [name for name in presets if name not in PRESETS]
    if unknown:
        raise typer.BadParameter(
            f"unknown preset {unknown[0]!r}; known presets: {', '.join(preset_names())}",
            param_hint="PRESET",
        )
    scenarios: list[Scenario] = []
    uses: dict[str, int] = {}
    for name in presets:
        uses[name] = uses.get(name, 0) + 1
        # A preset named twice runs twice, as another service with its own draws.
        again = uses[name] > 1
        try:
            scenarios.append(
                build_preset(
                    name,
                    rps=rps,
                    duration=duration,
                    service=f"{name}-{uses[name]}" if again else None,
                    seed_offset=uses[name] - 1,
                    routing=routing,
                )
            )
        except CanarystreamError as exc:
            raise typer.BadParameter(str(exc), param_hint="--routing/--duration") from exc
    for path in files:
        try:
            loaded = load_scenarios(path)
        except CanarystreamError as exc:
            raise typer.BadParameter(str(exc), param_hint="--scenario") from exc
        try:
            scenarios += [s.override(rps=rps, duration=duration, routing=routing) for s in loaded]
        except CanarystreamError as exc:
            raise typer.BadParameter(str(exc), param_hint="--rps/--duration/--routing") from exc
    deployments = [s.deployment for s in scenarios]
    duplicated = sorted({d for d in deployments if deployments.count(d) > 1})
    if duplicated:
        raise typer.BadParameter(
            f"deployment ids must be unique; repeated: {', '.join(duplicated)}",
            param_hint="--scenario",
        )
    return scenarios


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def _engine(open_loop: bool, policies: Sequence[Path]) -> EngineLike:
    from canarystream.policy.loading import PolicyRegistry  # noqa: PLC0415
    from canarystream.simulate.closed_loop import FixedShareEngine  # noqa: PLC0415

    if open_loop:  # nothing follows the decisions: no engine needed
        return FixedShareEngine(0.0)
    try:
        from canarystream.engine import Engine  # noqa: PLC0415  (only for closed-loop runs)
    except ImportError as exc:
        raise typer.BadParameter(
            f"the engine is unavailable ({exc}); use --share for an open-loop run",
            param_hint="--share",
        ) from exc
    if not policies:
        return Engine()
    try:
        return Engine(policies=PolicyRegistry.from_paths(policies))
    except CanarystreamError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from exc


def _to_stdout(events: Iterable[dict[str, Any]]) -> None:
    stream = typer.get_binary_stream("stdout")
    try:
        _write(events, stream)
        stream.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly.
        _silence_stdout()
        raise typer.Exit(0) from None


def _to_file(events: Iterable[dict[str, Any]], path: Path) -> int:
    try:
        with path.open("wb") as handle:
            return _write(events, handle)
    except OSError as exc:
        raise typer.BadParameter(f"{path}: {exc.strerror}", param_hint="--out") from exc


def _write(events: Iterable[dict[str, Any]], stream: BinaryIO) -> int:
    import orjson  # noqa: PLC0415

    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    count = 0
    chunk: list[bytes] = []
    for event in events:
        chunk.append(dumps(event, option=option))
        if len(chunk) >= _CHUNK:
            stream.write(b"".join(chunk))
            count += len(chunk)
            chunk.clear()
    stream.write(b"".join(chunk))
    return count + len(chunk)


_HELP = (
    "Generate rollout telemetry (JSON Lines) from presets or scenario files.\n\n"
    "By default the run is closed-loop: the engine judges the telemetry as it is produced and "
    "each canary's traffic share follows its decisions; the last decision per rollout is "
    "summarised on stderr. --share and --routing run open loop instead, without the engine: "
    "the routing is fixed and recorded as traffic_shifted events, a recording for "
    "`canarystream backtest`."
)


def _routing(share: float | None, routing: str | None) -> list[dict[str, float]] | None:
    """The routing steps of ``--share`` or ``--routing`` (None: closed loop)."""
    from canarystream.policy.model import parse_duration  # noqa: PLC0415

    if share is not None and routing is not None:
        raise typer.BadParameter("give --share or --routing, not both", param_hint="--routing")
    if share is not None:
        return [{"at": 0.0, "percent": share}]
    if routing is None:
        return None
    steps: list[dict[str, float]] = []
    for index, item in enumerate(routing.split(",")):
        percent, at_sign, at = item.strip().partition("@")
        try:
            if not at_sign and index:
                raise ValueError("every share after the first needs its time: PERCENT@TIME")
            try:
                value = float(percent)
            except ValueError:
                raise ValueError(f"{percent.strip()!r} is not a percentage") from None
            steps.append({"at": parse_duration(at) if at_sign else 0.0, "percent": value})
        except ValueError as exc:
            raise typer.BadParameter(f"{item.strip()!r}: {exc}", param_hint="--routing") from exc
    return steps


@app.command("simulate", help=_HELP)
def simulate_command(  # typer passes options by keyword
    *,
    presets: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PRESET",
            help="Preset scenarios to run side by side (see --list).",
            show_default=False,
        ),
    ] = None,
    scenario: Annotated[
        list[Path] | None,
        typer.Option(
            "--scenario",
            "-s",
            help="Scenario file (.yaml or .json): one scenario or a list; may repeat.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the random draws.")] = 0,
    duration: Annotated[
        str | None,
        typer.Option(
            help="Override every scenario's duration: seconds or '30m'.", show_default=False
        ),
    ] = None,
    rps: Annotated[
        float | None,
        typer.Option(min=0.0, help="Override every scenario's request rate.", show_default=False),
    ] = None,
    share: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=100.0,
            help="Open loop: give every canary this traffic % from its start instead of "
            "following the engine's decisions (as --routing PERCENT).",
            show_default=False,
        ),
    ] = None,
    routing: Annotated[
        str | None,
        typer.Option(
            help="Open loop: every canary's traffic % over time, e.g. '20,40@10m,60@20m' "
            "(20 % from the start, 40 % from 10 min...), whatever the engine decides; each "
            "step is recorded as a traffic_shifted event. Sets the scenarios' routing.",
            show_default=False,
        ),
    ] = None,
    policy: Annotated[
        list[Path] | None,
        typer.Option(
            "--policy",
            help="Policy file or directory the engine knows by name (repeatable).",
            show_default=False,
        ),
    ] = None,
    policies: Annotated[
        list[Path] | None, typer.Option("--policies", hidden=True, help="Old name of --policy.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write here instead of stdout.", show_default=False),
    ] = None,
    step: Annotated[
        float, typer.Option(min=0.001, help="Seconds of event time per closed-loop step.")
    ] = 1.0,
    list_presets: Annotated[
        bool, typer.Option("--list", help="List the presets and exit.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option(help="No progress bar on stderr (it is shown on a terminal only).")
    ] = False,
) -> None:
    """Generate rollout telemetry from presets or scenario files (see ``_HELP``)."""
    from canarystream.simulate.closed_loop import simulate  # noqa: PLC0415  (numpy, scipy)
    from canarystream.simulate.presets import preset_names  # noqa: PLC0415

    if list_presets:
        _list_presets()
        return
    if not presets and not scenario:
        raise typer.BadParameter(
            f"name a preset or a --scenario file; presets: {', '.join(preset_names())}",
            param_hint="PRESET",
        )
    seconds = _seconds(duration)
    steps = _routing(share, routing)
    scenarios = _scenarios(presets or [], scenario or [], rps=rps, duration=seconds, routing=steps)
    policy = renamed(policy, policies, old="--policies", new="--policy")
    open_loop = all(s.routing is not None for s in scenarios)
    engine = _LastDecisions(_engine(open_loop, policy or []))
    events = simulate(scenarios, seed=seed, engine=engine, step=step)
    progress = _progress(quiet)
    try:
        with progress:
            events = _tracked(events, progress, scenarios)
            if out is None:
                _to_stdout(events)
            else:
                count = _to_file(events, out)
    except CanarystreamError as exc:  # e.g. a policy the engine cannot resolve
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if out is not None:
        typer.echo(f"wrote {count} events to {out}", err=True)
    _print_last(engine, scenarios)


def _progress(quiet: bool) -> Progress:
    """The progress bar on stderr, in event time simulated, shown on a terminal unless quiet."""
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    err = Console(stderr=True)
    return Progress(
        TextColumn("simulate"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[events]:,} events"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    )


def _tracked(
    events: Iterable[dict[str, Any]], progress: Progress, scenarios: Sequence[Scenario]
) -> Iterator[dict[str, Any]]:
    """``events``, moving ``progress`` along the event time they have reached."""
    start = min(s.start_ts for s in scenarios)
    total = max(s.end_ts for s in scenarios) - start
    task = progress.add_task("simulate", total=total, events=0)
    count = 0
    for event in events:
        yield event
        count += 1
        if not count % _PROGRESS_EVERY:
            progress.update(task, completed=event["ts"] - start, events=count)
    progress.update(task, completed=total, events=count)


def _list_presets() -> None:
    """Each preset and what it simulates."""
    from canarystream.simulate.presets import PRESETS  # noqa: PLC0415

    width = max(len(name) for name in PRESETS)
    for name, (description, _) in PRESETS.items():
        typer.echo(f"{name:<{width}}  {description}")


def _seconds(duration: str | None) -> float | None:
    """``--duration`` in seconds (None: not given)."""
    from canarystream.policy.model import parse_duration  # noqa: PLC0415

    if duration is None:
        return None
    try:
        return parse_duration(duration)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--duration") from exc


def _print_last(engine: _LastDecisions, scenarios: list[Scenario]) -> None:
    """Each rollout's last decision, on stderr."""
    from canarystream.readable import duration  # noqa: PLC0415

    for item in scenarios:
        decision = engine.last.get(item.deployment)
        if item.routing is not None:
            shares = "→".join(f"{step.percent:g}" for step in item.routing)
            typer.echo(
                f"{item.deployment}: open loop, routed {shares} %; judge it with "
                "canarystream backtest",
                err=True,
            )
        elif decision is None:
            typer.echo(f"{item.deployment}: no decision", err=True)
        else:
            typer.echo(
                f"{item.deployment}: {decision.phase} at {decision.traffic_percent:g} % "
                f"(+{duration(decision.ts - item.start_ts)}): {decision.summary}",
                err=True,
            )
