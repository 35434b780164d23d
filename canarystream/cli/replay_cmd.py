"""``canarystream replay``: run recorded events through the engine, offline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from canarystream.cli.app import app
from canarystream.contracts.codec import encode_decision
from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.engine.engine import DEFAULT_TOMBSTONE_TTL
from canarystream.errors import ConfigError, PolicyError
from canarystream.policy.loading import PolicyRegistry, load_policy
from canarystream.replay import Rejection, ReplayResult, StrictReplayError, replay_files
from canarystream.settings import load_settings

__all__ = ["build_engine", "summary_table"]

_PROGRESS_MIN_BYTES = 20_000_000
_MAX_REPORTED = 50  # rejected lines printed one by one; the rest are counted


def build_engine(
    policy_paths: list[Path], *, tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL
) -> Engine:
    """An engine knowing the policies in ``policy_paths`` (files or directories).

    A single policy file also becomes the default for deployments that name no policy.
    """
    registry = PolicyRegistry.from_paths(policy_paths)
    if len(policy_paths) == 1 and policy_paths[0].is_file():
        default = load_policy(policy_paths[0])
        registry = PolicyRegistry([default], default=default)
    return Engine(registry, tombstone_ttl=tombstone_ttl)


def summary_table(result: ReplayResult) -> Table:
    """One row per rollout: where it ended and how many decisions it took."""
    table = Table(title="Rollouts", title_justify="left")
    for column in ("deployment", "service", "canary", "phase", "stage", "traffic %", "decisions"):
        table.add_column(column)
    for rollout in result.engine.rollouts.values():
        table.add_row(
            rollout.deployment,
            rollout.service,
            f"{rollout.canary_version} (baseline {rollout.baseline_version})",
            rollout.phase.value,
            str(rollout.stage),
            f"{rollout.traffic_percent:g}",
            str(rollout.seq + 1),
        )
    return table


@app.command()
def replay(
    files: Annotated[list[Path], typer.Argument(help="JSON Lines files, each sorted by ts.")],
    policy: Annotated[
        list[Path] | None,
        typer.Option(
            help="Policy file or directory (repeatable); one file is also the default. "
            "Default: CANARYSTREAM_POLICIES."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write decisions here (JSON Lines); default stdout.")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Stop with exit code 1 at the first invalid line.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary on stderr.")] = False,
) -> None:
    """Replay recorded events through the engine and write its decisions."""
    err = Console(stderr=True, soft_wrap=True)
    for path in files:
        if not path.is_file():
            err.print(f"[red]error:[/] {path}: no such file")
            raise typer.Exit(2)
    try:
        settings = load_settings()
        engine = build_engine(
            policy or settings.policies, tombstone_ttl=settings.deployment_tombstone_ttl
        )
    except (PolicyError, ConfigError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc

    sink = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115  (closed below)
    reported = 0

    def on_decision(decision: Decision) -> None:
        sink.write(encode_decision(decision) + b"\n")

    def on_reject(rejection: Rejection) -> None:
        nonlocal reported
        reported += 1
        if reported <= _MAX_REPORTED and not quiet:
            err.print(
                f"[yellow]skipped[/] {escape(str(rejection))}", highlight=False, soft_wrap=True
            )

    total = sum(path.stat().st_size for path in files)
    progress = Progress(
        TextColumn("replay"),
        BarColumn(),
        TextColumn("{task.completed:,} lines"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet or total < _PROGRESS_MIN_BYTES,
    )
    try:
        with progress:
            task = progress.add_task("replay", total=None)
            result = replay_files(
                files,
                engine=engine,
                on_decision=on_decision,
                on_reject=on_reject,
                strict=strict,
                on_progress=lambda lines: progress.update(task, completed=lines),
            )
    except StrictReplayError as exc:
        err.print(f"[red]error:[/] {escape(str(exc.rejection))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    finally:
        sink.flush()
        if out:
            sink.close()

    if not quiet:
        err.print(summary_table(result))
        rejected = sum(result.rejected.values())
        by_reason = ", ".join(f"{k}={v}" for k, v in sorted(result.rejected.items()))
        actions = ", ".join(f"{k}={v}" for k, v in sorted(result.decisions.items()))
        err.print(
            f"{result.lines:,} lines, {result.events:,} events, "
            f"{rejected:,} skipped{f' ({by_reason})' if rejected else ''}; "
            f"decisions: {actions or 'none'}",
            highlight=False,
        )
        if reported > _MAX_REPORTED:
            err.print(f"({reported - _MAX_REPORTED:,} more skipped lines not listed)")
