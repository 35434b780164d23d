"""The run ``replay`` and ``backtest`` share: recorded files through the engine, decisions out.

Inputs and ``--out`` are checked first; decisions go to ``--out`` through a temporary file
put in its place only on success (or to standard output); rejected lines are listed on
stderr, with a progress bar for large inputs. What a command prints afterwards is its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from canarystream.cli.console import escape
from canarystream.cli.replay_cmd import (
    EXIT_NOTHING_JUDGED,
    EXIT_OK,
    EXIT_STRICT,
    EXIT_USAGE,
    STDIN,
    _check_usage,
    _engine,
    _print_nothing_judged,
    _progress,
    _progress_task,
    _Rejections,
)

if TYPE_CHECKING:
    from rich.console import Console

    from canarystream.atomicfile import AtomicFile
    from canarystream.contracts.decision import Decision
    from canarystream.engine import Engine
    from canarystream.replay import Rejection, ReplayResult

__all__ = ["FileRun", "FilesFunction", "run_files"]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class FilesFunction(Protocol[R_co]):
    """What runs the files: :func:`~canarystream.replay.replay_files`'s signature."""

    def __call__(
        self,
        paths: Iterable[str | Path],
        *,
        engine: Engine | None = ...,
        on_decision: Callable[[Decision], None] | None = ...,
        on_reject: Callable[[Rejection], None] | None = ...,
        strict: bool = ...,
        on_progress: Callable[[int, int], None] | None = ...,
    ) -> R_co: ...


@dataclass(frozen=True)
class FileRun(Generic[R]):
    """How a run ended: its result (none if it stopped), exit code and rejected lines."""

    result: R | None
    code: int
    rejected: int


def run_files(
    err: Console,
    files_function: FilesFunction[R],
    files: list[Path],
    *,
    label: str,
    replay_of: Callable[[R], ReplayResult],
    policy: list[Path] | None,
    out: Path | None,
    strict: bool,
    quiet: bool,
    access: Path | None,
) -> FileRun[R]:
    """Run ``files_function`` over ``files`` (its progress task named ``label``) with the
    command's options; ``replay_of`` is the result's replay, for "nothing judged".

    A usage error ends the command (exit code 2) before anything is opened; an interruption
    leaves ``--out`` as it was and goes on up.
    """
    from canarystream.atomicfile import AtomicFile  # noqa: PLC0415
    from canarystream.contracts.codec import encode_decision  # noqa: PLC0415
    from canarystream.replay import ReplayInputError, StrictReplayError  # noqa: PLC0415

    _check_usage(err, files, out)
    engine = _engine(err, policy, access)
    writer = AtomicFile(out) if out is not None and str(out) != STDIN else None
    sink = writer.handle if writer is not None else sys.stdout.buffer
    rejections = _Rejections(err, quiet)

    def on_decision(decision: Any) -> None:
        sink.write(encode_decision(decision) + b"\n")

    progress = _progress(err, files, quiet)
    result: R | None = None
    code = EXIT_OK
    try:
        with progress:
            advance = _progress_task(progress, files, label)
            result = files_function(
                files,
                engine=engine,
                on_decision=on_decision,
                on_reject=rejections,
                strict=strict,
                on_progress=advance,
            )
    except StrictReplayError as exc:
        err.print(f"[red]error:[/] {escape(str(exc.rejection))}", highlight=False, soft_wrap=True)
        code = EXIT_STRICT
    except ReplayInputError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        code = EXIT_USAGE
    except BaseException:
        if writer is not None:
            writer.discard()  # interrupted: the old file stays as it was
        raise
    finally:
        if writer is None:
            sink.flush()

    if result is not None and not replay_of(result).judged:
        code = EXIT_NOTHING_JUDGED
        _print_nothing_judged(err, replay_of(result), out if writer is not None else None)
    _settle(writer, ok=code == EXIT_OK)
    return FileRun(result, code, rejections.count)


def _settle(writer: AtomicFile | None, *, ok: bool) -> None:
    """Put the output in place of ``--out`` if the run succeeded, else leave it as it was."""
    if writer is None:
        return
    if ok:
        writer.commit()
    else:
        writer.discard()
