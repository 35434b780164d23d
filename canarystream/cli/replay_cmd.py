"""``canarystream replay``: run recorded events through the engine, offline."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from canarystream.cli.app import app
from canarystream.cli.console import deferred_err_console, escape

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from canarystream.engine import Engine
    from canarystream.replay import Rejection, ReplayResult

__all__ = [
    "EXIT_NOTHING_JUDGED",
    "EXIT_OK",
    "EXIT_STRICT",
    "EXIT_USAGE",
    "build_engine",
    "summary_table",
]

STDIN = "-"  # as a file name: standard input (canarystream.replay.STDIN)
_PROGRESS_MIN_BYTES = 20_000_000
_MAX_REPORTED = 50  # rejected lines printed one by one; the rest are counted


def build_engine(policy_paths: list[Path], *, tombstone_ttl: float | None = None) -> Engine:
    """An engine knowing the policies in ``policy_paths`` (files or directories).

    A single policy file also becomes the default for deployments that name no policy;
    ``tombstone_ttl`` defaults to the engine's.
    """
    from canarystream.engine import Engine  # noqa: PLC0415  (numpy: not for --help)
    from canarystream.engine.engine import DEFAULT_TOMBSTONE_TTL  # noqa: PLC0415
    from canarystream.policy.loading import PolicyRegistry, load_policy  # noqa: PLC0415

    registry = PolicyRegistry.from_paths(policy_paths)
    if len(policy_paths) == 1 and policy_paths[0].is_file():
        default = load_policy(policy_paths[0])
        registry = PolicyRegistry([default], default=default)
    ttl = DEFAULT_TOMBSTONE_TTL if tombstone_ttl is None else tombstone_ttl
    return Engine(registry, tombstone_ttl=ttl)


def summary_table(result: ReplayResult) -> Table:
    """One row per rollout: where it ended and how many decisions it took."""
    from rich.table import Table  # noqa: PLC0415

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


EXIT_OK = 0
EXIT_STRICT = 1
EXIT_USAGE = 2
EXIT_NOTHING_JUDGED = 3


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same resolved path, or the same inode."""
    try:
        if a.resolve() == b.resolve():
            return True
        return os.path.samefile(a, b)
    except (OSError, RuntimeError):  # a missing file, a symlink loop
        return False


def _usage_problem(files: list[Path], out: Path | None) -> str | None:
    """What is wrong with the inputs and ``--out``, checked before anything is opened."""
    if sum(str(path) == STDIN for path in files) > 1:
        return "standard input ('-') can be read only once"
    for path in files:
        if str(path) != STDIN and not path.is_file():
            return f"{path}: no such file" if not path.exists() else f"{path}: not a file"
    if out is None or str(out) == STDIN:
        return None
    return _out_problem(files, out)


def _out_problem(files: list[Path], out: Path) -> str | None:
    """What is wrong with the file ``--out`` names."""
    if out.is_dir():
        return f"--out {out}: is a directory"
    if not out.resolve().parent.is_dir():
        return f"--out {out}: no such directory {out.resolve().parent}"
    for path in files:
        if str(path) != STDIN and _same_file(out, path):
            return f"--out {out} is one of the inputs ({path}); it would be overwritten"
    return None


@app.command()
def replay(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="JSON Lines files, each sorted by ts ('-' reads standard input; gzip is read "
            "as the lines it holds)."
        ),
    ],
    *,
    policy: Annotated[
        list[Path] | None,
        typer.Option(
            help="Policy file or directory (repeatable); one file is also the default. "
            "Default: CANARYSTREAM_POLICIES."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write decisions here (JSON Lines; default stdout), through a temporary file "
            "renamed over it only when the replay succeeds. Never one of the inputs.",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            help="Stop with exit code 1 at the first invalid line, or where time goes "
            "backwards within a file."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary on stderr.")] = False,
    access: Annotated[
        Path | None,
        typer.Option(
            help="Access file: judge announcements, commands and heartbeats as the worker "
            "does (signed envelope lines only). Default: CANARYSTREAM_ACCESS_FILE; without "
            "one, envelopes are unwrapped and every event is obeyed.",
        ),
    ] = None,
) -> None:
    """Replay recorded events through the engine and write its decisions.

    Exit codes: 0 decisions written; 1 --strict stopped at a bad line; 2 usage error or
    unreadable input (nothing written); 3 nothing judged: no rollout could be started (every
    line rejected, an unknown policy, no announcement), and --out is left as it was.
    """
    from canarystream.cli.file_run import run_files  # noqa: PLC0415
    from canarystream.replay import replay_files  # noqa: PLC0415  (the engine: numpy)

    err = deferred_err_console()
    run = run_files(
        err,
        replay_files,
        files,
        label="replay",
        replay_of=lambda result: result,
        policy=policy,
        out=out,
        strict=strict,
        quiet=quiet,
        access=access,
    )
    if run.result is not None and not quiet:
        _print_summary(err, run.result, run.rejected)
    raise typer.Exit(run.code)


class _Rejections:
    """Counts rejected lines; lists the first :data:`_MAX_REPORTED` on stderr unless quiet."""

    def __init__(self, err: Console, quiet: bool) -> None:
        self.err = err
        self.quiet = quiet
        self.count = 0

    def __call__(self, rejection: Rejection) -> None:
        self.count += 1
        if self.count <= _MAX_REPORTED and not self.quiet:
            self.err.print(
                f"[yellow]skipped[/] {escape(str(rejection))}", highlight=False, soft_wrap=True
            )


def _check_usage(err: Console, files: list[Path], out: Path | None) -> None:
    """End the command with a usage error if the inputs or ``--out`` are wrong."""
    problem = _usage_problem(files, out)
    if problem is not None:
        err.print(f"[red]error:[/] {escape(problem)}", highlight=False)
        raise typer.Exit(EXIT_USAGE)


def _engine(err: Console, policy: list[Path] | None, access: Path | None) -> Engine:
    """The engine of ``--policy`` and ``--access`` (default: the settings'); a usage error
    ends the command."""
    from canarystream.cli.options import settings_with  # noqa: PLC0415
    from canarystream.errors import ConfigError, PolicyError  # noqa: PLC0415
    from canarystream.governance.access import load_access  # noqa: PLC0415

    try:
        settings = settings_with(access_file=access)
        engine = build_engine(
            policy or settings.policies, tombstone_ttl=settings.deployment_tombstone_ttl
        )
        if settings.access_file is not None:
            engine.access = load_access(settings.access_file)
        return engine
    except (PolicyError, ConfigError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from exc


def _input_bytes(files: list[Path]) -> int:
    """The size of the input files as stored (standard input counts for nothing)."""
    return sum(path.stat().st_size for path in files if str(path) != STDIN)


class _NoProgress:
    """The progress bar when none is drawn: nothing imported, nothing done."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, **fields: Any) -> TaskID:
        return cast("TaskID", 0)

    def update(self, task: TaskID, **fields: Any) -> None:
        return None


def _progress(err: Console, files: list[Path], quiet: bool) -> Progress | _NoProgress:
    """The progress bar on stderr: bytes read of the files' size, as a percentage with the
    time left; shown on a terminal unless quiet or the files are small (then rich is not
    even imported)."""
    if quiet or _input_bytes(files) < _PROGRESS_MIN_BYTES or not err.is_terminal:
        return _NoProgress()
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[lines]:,} lines"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


def _progress_task(
    progress: Progress | _NoProgress, files: list[Path], label: str
) -> Callable[[int, int], None]:
    """A task of ``progress`` over the files' bytes; the callback that moves it along."""
    task = progress.add_task(label, total=_input_bytes(files) or None, lines=0)

    def advance(lines: int, read: int) -> None:
        progress.update(task, completed=read, lines=lines)

    return advance


def _print_nothing_judged(err: Console, result: ReplayResult, kept: Path | None) -> None:
    """Why nothing was judged; ``kept`` is the ``--out`` file left as it was."""
    first = result.first_rejection
    err.print(
        f"[red]error:[/] nothing judged: no rollout was started ({result.lines:,} lines, "
        f"{result.rejected_lines:,} rejected"
        + (f"; first: {escape(str(first))}" if first is not None else "")
        + ")"
        + (f"; {escape(str(kept))} left as it was" if kept is not None else ""),
        highlight=False,
        soft_wrap=True,
    )


def _print_summary(err: Console, result: ReplayResult, reported: int) -> None:
    """The summary on stderr: decisions per rollout, counts, and the rejections not listed."""
    from canarystream.cli.tables import print_table  # noqa: PLC0415

    print_table(err, summary_table(result))
    _print_counts(err, result, reported)


def _print_counts(err: Console, result: ReplayResult, reported: int) -> None:
    """Lines, events, rejections by reason, decisions by action; the rejections not listed."""
    by_reason = ", ".join(f"{k}={v}" for k, v in sorted(result.rejected.items()))
    actions = ", ".join(f"{k}={v}" for k, v in sorted(result.decisions.items()))
    lines = result.rejected_lines
    err.print(
        f"{result.lines:,} lines, {result.events:,} events, "
        f"{lines:,} line{'' if lines == 1 else 's'} rejected"
        f"{f' ({by_reason})' if lines else ''}; decisions: {actions or 'none'}",
        highlight=False,
    )
    if reported > _MAX_REPORTED:
        err.print(f"({reported - _MAX_REPORTED:,} more rejected lines not listed)")
