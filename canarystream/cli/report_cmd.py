"""``canarystream report``: recorded events → the engine → one self-contained HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from canarystream.cli.app import app

__all__ = ["report"]


@app.command()
def report(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="JSON Lines files, each sorted by ts, as replay reads them ('-' reads "
            "standard input; gzip is read as the lines it holds)."
        ),
    ],
    *,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="The HTML file to write ('-': stdout), through a temporary file renamed over "
            "it once the report is complete. Never one of the inputs.",
        ),
    ],
    policy: Annotated[
        list[Path] | None,
        typer.Option(
            help="Policy file or directory (repeatable); one file is also the default. "
            "Default: CANARYSTREAM_POLICIES."
        ),
    ] = None,
    access: Annotated[
        Path | None,
        typer.Option(
            help="Access file: judge announcements, commands and heartbeats as the worker "
            "does (as replay --access). Default: CANARYSTREAM_ACCESS_FILE."
        ),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Page title (default: the inputs).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary on stderr.")] = False,
) -> None:
    """Replay recorded events through the engine and write a rollout report (HTML).

    The decisions are exactly replay's; the page shows, per rollout, each check's estimate
    and confidence bounds against its tolerance over event time, the traffic share and
    stages, and the decisions with their reasons, with a summary on top. It needs no network
    to be read. Exit codes as replay's: 0 written; 2 usage error or unreadable input; 3
    nothing judged (no rollout started), --out left as it was.
    """
    import sys  # noqa: PLC0415 -- keep `canarystream --help` light

    from rich.console import Console  # noqa: PLC0415
    from rich.markup import escape  # noqa: PLC0415

    from canarystream.atomicfile import AtomicFile  # noqa: PLC0415
    from canarystream.cli.replay_cmd import (  # noqa: PLC0415
        EXIT_NOTHING_JUDGED,
        EXIT_OK,
        EXIT_USAGE,
        _check_usage,
        _engine,
        _print_nothing_judged,
        _print_summary,
        _progress,
        _progress_task,
        _Rejections,
    )
    from canarystream.replay import STDIN, ReplayInputError  # noqa: PLC0415
    from canarystream.report import record_files, render_report  # noqa: PLC0415

    err = Console(stderr=True, soft_wrap=True)
    to_stdout = str(out) == STDIN
    _check_usage(err, files, None if to_stdout else out)
    engine = _engine(err, policy, access)
    rejections = _Rejections(err, quiet)
    progress = _progress(err, files, quiet)
    try:
        with progress:
            advance = _progress_task(progress, files, "report")
            result, recorder = record_files(
                files,
                engine,
                on_reject=rejections,
                on_progress=advance,
            )
    except ReplayInputError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from exc
    if not result.judged:
        _print_nothing_judged(err, result, None if to_stdout else out)
        raise typer.Exit(EXIT_NOTHING_JUDGED)
    names = ", ".join("standard input" if str(f) == STDIN else f.name for f in files)
    rejected = f", {result.rejected_lines:,} lines rejected" if result.rejected_lines else ""
    page = render_report(
        recorder.rollouts(),
        title=title or f"Rollout report: {names}",
        note=f"Replayed {result.events:,} events from {len(files)} file"
        f"{'' if len(files) == 1 else 's'}{rejected}.",
    ).encode()
    if to_stdout:
        sys.stdout.buffer.write(page)
        sys.stdout.buffer.flush()
    else:
        with AtomicFile(out) as writer:
            writer.write(page)
            writer.commit()
    if not quiet:
        _print_summary(err, result, rejections.count)
        if not to_stdout:
            err.print(f"report written to {escape(str(out))}", highlight=False)
    raise typer.Exit(EXIT_OK)
