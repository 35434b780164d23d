"""``canarystream backtest``: recorded rollouts judged under a policy, beside what happened."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from canarystream.cli.app import app
from canarystream.cli.console import deferred_err_console

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from canarystream.backtest import BacktestResult, Comparison, Course

__all__ = ["backtest", "comparison_table"]

_NONE = "-"
_MAX_STAGES = 8  # stage shares listed in full; more are cut in the middle


@app.command()
def backtest(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Recordings: JSON Lines files, each sorted by ts, as replay reads them ('-' "
            "reads standard input; gzip is read as the lines it holds). Routing comes from "
            "their traffic_shifted events; decision lines are what happened at the time."
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
            help="Write the policy's decisions here (JSON Lines, as replay writes them; "
            "default stdout), through a temporary file renamed over it only on success. "
            "Never one of the inputs.",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            help="Stop with exit code 1 at the first invalid line, or where time goes "
            "backwards within a file."
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(help="No progress bar, rejected lines or counts on stderr; the table stays."),
    ] = False,
    access: Annotated[
        Path | None,
        typer.Option(
            help="Access file: judge announcements, commands and heartbeats as the worker "
            "does (as replay --access). Default: CANARYSTREAM_ACCESS_FILE."
        ),
    ] = None,
) -> None:
    """Judge recorded rollouts under a policy and compare with what the recording says.

    The recording's routing is what it is: the canary's share is the one its traffic_shifted
    events state, whatever the policy decides, and no rollout is held for a decision not
    applied. The policy's decisions are written as replay writes them; a table on stderr
    compares, per rollout, where the policy would have taken it and when with the
    recording's own decisions (if it holds any). Exit codes as replay's: 0 judged; 1
    --strict stopped at a bad line; 2 usage error or unreadable input; 3 nothing judged (no
    rollout started), --out left as it was.
    """
    from canarystream.backtest import backtest_files  # noqa: PLC0415  (the engine)
    from canarystream.cli.file_run import run_files  # noqa: PLC0415
    from canarystream.cli.replay_cmd import EXIT_OK, _print_counts  # noqa: PLC0415

    err = deferred_err_console()
    run = run_files(
        err,
        backtest_files,
        files,
        label="backtest",
        replay_of=lambda result: result.replay,
        policy=policy,
        out=out,
        strict=strict,
        quiet=quiet,
        access=access,
    )
    if run.result is not None and run.code == EXIT_OK:
        _print_comparison(err, run.result)
        if not quiet:
            _print_counts(err, run.result.replay, run.rejected)
    raise typer.Exit(run.code)


def comparison_table(result: BacktestResult) -> Table:
    """Two rows per rollout: the policy's course, then the recording's."""
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="Backtest", title_justify="left")
    for column in (
        "deployment",
        "judge",
        "outcome",
        "since",
        "stages %",
        "first hold",
        "rollback/promote",
        "decisions",
    ):
        table.add_column(column)
    for rollout in result.rollouts:
        table.add_row(rollout.deployment, *_policy_row(rollout))
        table.add_row("", *_recorded_row(rollout))
    return table


def _policy_row(rollout: Comparison) -> list[str]:
    if rollout.policy_name is None:
        return [
            "policy",
            "not judged (no announcement)",
            *[_NONE] * 4,
            "0",
        ]
    return [f"policy {rollout.policy_name}", *_course_cells(rollout.policy)]


def _recorded_row(rollout: Comparison) -> list[str]:
    if rollout.recorded.decisions:
        return ["recorded", *_course_cells(rollout.recorded)]
    routed = f"routed {_shares(rollout.routed)}" if rollout.routed else _NONE
    return ["recorded", "no decisions recorded", _NONE, routed, _NONE, _NONE, "0"]


def _course_cells(course: Course) -> list[str]:
    ended = _NONE
    if course.ended is not None:
        action, at = course.ended
        ended = f"{action.value} {_at(at)}"
    return [
        course.outcome,
        _at(course.phase_since),
        _shares(course.stages),
        _at(course.first_hold),
        ended,
        str(course.decisions),
    ]


def _at(seconds: float | None) -> str:
    """Event time from the rollout's start."""
    from canarystream.readable import duration  # noqa: PLC0415

    return _NONE if seconds is None else f"+{duration(seconds)}"


def _shares(shares: list[float]) -> str:
    """Traffic shares in order: ``1→5→10``; a long list cut in the middle."""
    if not shares:
        return _NONE
    if len(shares) > _MAX_STAGES:
        half = _MAX_STAGES // 2
        cut = len(shares) - 2 * half
        return "→".join(
            [
                *(f"{s:g}" for s in shares[:half]),
                f"({cut} more)",
                *(f"{s:g}" for s in shares[-half:]),
            ]
        )
    return "→".join(f"{s:g}" for s in shares)


def _print_comparison(err: Console, result: BacktestResult) -> None:
    """The table, then one line: the policy's outcomes and how they compare."""
    from collections import Counter  # noqa: PLC0415

    from canarystream.cli.tables import print_table  # noqa: PLC0415

    print_table(err, comparison_table(result))
    judged = [r for r in result.rollouts if r.policy_name is not None]
    outcomes = Counter(r.policy.phase.value if r.policy.phase else "none" for r in judged)
    tally = ", ".join(f"{n} {phase}" for phase, n in sorted(outcomes.items()))
    line = f"{len(judged)} rollout{'' if len(judged) == 1 else 's'} judged: {tally}"
    if result.recorded_decisions:
        both = [r for r in judged if r.recorded.decisions]
        same = sum(r.policy.phase == r.recorded.phase for r in both)
        line += (
            f"; {result.recorded_decisions:,} recorded decisions: the policy ends "
            f"{same} of {len(both)} rollouts as recorded"
        )
    else:
        line += "; the recording holds no decisions to compare with"
    err.print(line, highlight=False)
