"""Offline replay: JSON Lines files → the engine → decisions, exactly as the live worker.

Each file must be sorted by ``ts``; several files are merged into one stream in ``ts`` order
(ties keep file order). A line holds one event or a JSON array of events. A line that breaks
the contract is reported with ``file:line`` and its reason, counted and skipped; with
``strict`` the replay stops at the first one instead.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.errors import ContractError

__all__ = ["Rejection", "ReplayResult", "replay_files", "replay_lines"]


@dataclass(frozen=True)
class Rejection:
    """One input line (or event in it) that was skipped, and why."""

    source: str
    line: int
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}: {self.message}"


class StrictReplayError(ContractError):
    """Raised in strict mode at the first rejected line."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(str(rejection), reason=rejection.reason)
        self.rejection = rejection


@dataclass
class ReplayResult:
    """What a replay did: counts, rejections by reason, and the decisions' engine."""

    engine: Engine
    lines: int = 0
    events: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)


Line = tuple[float, int, int, bytes]  # (sort ts, file index, line number, raw) when merging


def _lines(index: int, handle: BinaryIO) -> Iterator[Line]:
    last_ts = float("-inf")
    for number, raw in enumerate(handle, start=1):
        # Only the merge needs the ts before decoding; a cheap scan avoids parsing twice.
        ts = _peek_ts(raw)
        if ts is not None:
            last_ts = ts
        yield (last_ts, index, number, raw)


def _peek_ts(raw: bytes) -> float | None:
    start = raw.find(b'"ts":')
    if start < 0:
        return None
    start += 5
    end = start
    length = len(raw)
    while end < length and raw[end] in b" 0123456789.eE+-":
        end += 1
    try:
        return float(raw[start:end])
    except ValueError:
        return None


_CHUNK = 4096  # lines decoded and applied together on the single-file path


def _decode(raw: bytes, index: int, number: int, reject: Any) -> list[Any]:
    """The events of one line (none for a blank or rejected line)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if raw.strip():
            reject(index, number, ContractError(f"malformed JSON: {exc}", reason="malformed_json"))
        return []
    return value if type(value) is list else [value]


def _replay_single(
    handle: Iterable[bytes],
    engine: Engine,
    emit: Callable[[list[Decision]], None],
    reject: Callable[[int, int, ContractError], None],
    on_progress: Callable[[int], None] | None,
) -> tuple[int, int]:
    """One file: decode a chunk of lines at once, then apply it as one batch."""
    loads = orjson.loads
    lines = events = 0
    chunk = list(islice(handle, _CHUNK))
    while chunk:
        first = lines + 1
        try:
            values = [loads(raw) for raw in chunk]
            numbers: list[int] | None = None
            if any(type(value) is not dict for value in values):
                raise ValueError  # arrays (batches) or scalars: take the general path
        except (orjson.JSONDecodeError, ValueError):
            values, numbers = [], []
            for offset, raw in enumerate(chunk):
                for event in _decode(raw, 0, first + offset, reject):
                    values.append(event)
                    numbers.append(first + offset)
        lines += len(chunk)
        events += len(values)

        def on_error(i: int, exc: ContractError, first: int = first, numbers=numbers) -> None:
            reject(0, numbers[i] if numbers is not None else first + i, exc)

        out = engine.process_batch(values, on_error)
        if out:
            emit(out)
        if on_progress is not None:
            on_progress(lines)
        chunk = list(islice(handle, _CHUNK))
    return lines, events


def replay_lines(
    sources: Iterable[tuple[str, Iterable[bytes]]],
    *,
    engine: Engine | None = None,
    on_decision: Callable[[Decision], None] | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    strict: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay named line sources (already open) through ``engine``; see the module doc."""
    engine = engine or Engine()
    result = ReplayResult(engine=engine)
    named = list(sources)
    names = [name for name, _ in named]
    process = engine.process
    decisions = result.decisions
    events = 0
    lines = 0

    def emit(out: list[Decision]) -> None:
        for decision in out:
            decisions[decision.action.value] += 1
            if on_decision is not None:
                on_decision(decision)

    def reject(index: int, number: int, exc: ContractError) -> None:
        rejection = Rejection(names[index], number, exc.reason, str(exc))
        result.rejected[exc.reason] += 1
        if strict:
            raise StrictReplayError(rejection) from exc
        if on_reject is not None:
            on_reject(rejection)

    if len(named) == 1:
        lines, events = _replay_single(iter(named[0][1]), engine, emit, reject, on_progress)
    else:
        merged = heapq.merge(*(_lines(i, iter(src)) for i, (_, src) in enumerate(named)))
        for _, index, number, raw in merged:
            lines += 1
            if on_progress is not None and not lines & 0x3FFF:
                on_progress(lines)
            for event in _decode(raw, index, number, reject):
                events += 1
                try:
                    out = process(event)
                except ContractError as exc:
                    reject(index, number, exc)
                    continue
                if out:
                    emit(out)
    result.lines = lines
    result.events = events
    return result


def replay_files(
    paths: Iterable[str | Path],
    *,
    engine: Engine | None = None,
    on_decision: Callable[[Decision], None] | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    strict: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay JSON Lines files, merged by ``ts``, through ``engine``."""
    paths = list(paths)
    handles = [open(path, "rb") for path in paths]  # noqa: SIM115  (closed below)
    try:
        return replay_lines(
            [(str(path), handle) for path, handle in zip(paths, handles, strict=True)],
            engine=engine,
            on_decision=on_decision,
            on_reject=on_reject,
            strict=strict,
            on_progress=on_progress,
        )
    finally:
        for handle in handles:
            handle.close()
