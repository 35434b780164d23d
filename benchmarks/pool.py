"""What the rollout benchmarks share: their common options, a pool of forked workers, and
their result files in ``benchmarks/results``."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = ["RESULTS", "Pooled", "arguments", "machine", "pooled", "scaled", "write_results"]

RESULTS = Path(__file__).parent / "results"

R = TypeVar("R")


def arguments(description: str | None, *, scale: str | None = None) -> argparse.ArgumentParser:
    """A parser with ``--workers`` (default 2) and, given its help, ``--scale`` (default 1)."""
    made = argparse.ArgumentParser(description=description)
    made.add_argument("--workers", type=int, default=2)
    if scale is not None:
        made.add_argument("--scale", type=float, default=1.0, help=scale)
    return made


def machine(load_at_start: float) -> dict[str, Any]:
    """What a results file notes of the run's machine: the load average when the run started
    (``os.getloadavg()[0]`` taken then), CPUs, Python, and when it ended (UTC)."""
    return {
        "load_average_at_start": round(load_at_start, 1),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def scaled(count: float, scale: float) -> int:
    """How many rollouts a cell of ``count`` gets at ``scale``: two at the least."""
    return max(2, round(count * scale))


@dataclass(frozen=True)
class Pooled(Generic[R]):
    """The results of a pooled run, the seconds it took and its number of workers."""

    rows: list[R]
    seconds: float
    workers: int

    def meta(self, **extra: Any) -> dict[str, Any]:
        """The results file's ``meta``: rollouts, seconds and workers, then ``extra``."""
        return {
            "rollouts": len(self.rows),
            "seconds": round(self.seconds, 1),
            "workers": self.workers,
            **extra,
        }

    def line(self) -> str:
        """One line: how many rollouts, in how long, with how many workers."""
        return f"{len(self.rows)} rollouts in {self.seconds:.0f}s with {self.workers} workers"


def pooled(
    function: Callable[..., R],
    tasks: Sequence[tuple[Any, ...]],
    workers: int,
    *,
    chunksize: int = 1,
    ordered: bool = False,
    every: int = 0,
) -> Pooled[R]:
    """``function(*task)`` for each of ``tasks`` in ``workers`` forked processes: the results
    as they finish (in the order of ``tasks`` if ``ordered``), with a progress line every
    ``every`` results (0: none). ``function`` is a module's, to be found by name.
    """
    started = time.perf_counter()
    rows: list[R] = []
    jobs = [(function, task) for task in tasks]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        each = pool.imap if ordered else pool.imap_unordered
        for done, row in enumerate(each(_call, jobs, chunksize=chunksize), start=1):
            rows.append(row)
            if every and done % every == 0:
                print(f"{done}/{len(tasks)} rollouts, {time.perf_counter() - started:.0f}s")
    return Pooled(rows, time.perf_counter() - started, workers)


def _call(job: tuple[Callable[..., R], tuple[Any, ...]]) -> R:
    function, args = job
    return function(*args)


def write_results(name: str, table: str, **results: Any) -> None:
    """``results`` to ``RESULTS/<name>.json`` and ``table`` to ``RESULTS/<name>.md``; the table
    printed."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1))
    (RESULTS / f"{name}.md").write_text(table)
    print(table)
