"""Offline replay: JSON Lines files → the engine → decisions, exactly as the live worker.

Each file must be sorted by ``ts``; several files are merged into one stream in ``ts`` order
(ties keep file order). ``-`` names standard input. An input compressed with gzip (known by
its first bytes, whatever its name) is read as the lines it holds. A line holds one event or
a JSON array of events.

A line with rejected events is reported once, as ``file:line``: its reason (``mixed`` when its
events' reasons differ), how many of its events were rejected, and the first few of them; a
line holding a huge array costs one report, never one per element. The rest of the line and
of the input is applied. With ``strict`` the replay stops at the first rejected event instead,
and also where time goes backwards within a file (``ts_backwards``). An input that cannot be
read (a truncated gzip stream, an I/O error) stops the replay with :class:`ReplayInputError`.

A line may be a signed envelope (:mod:`canarystream.governance.envelope`): the exact bytes of a
message with the principal and signature it was produced with. With an access file
(``engine.access``) the envelope is authenticated here, as the worker authenticates a message's
headers, and the engine authorizes its events as live: announcements, commands and heartbeats
outside an envelope are then refused (``unauthorized``). Without one, an envelope is unwrapped
and its events are obeyed like any other: offline analysis steers nothing.
"""

from __future__ import annotations

import gzip
import io
import math
import sys
import zlib
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import count, islice
from pathlib import Path
from typing import Any, BinaryIO, overload

from canarystream.contracts.codec import decode_events, decode_objects
from canarystream.contracts.decision import Decision
from canarystream.contracts.wire import WireRequest
from canarystream.engine import Engine
from canarystream.errors import CanarystreamError, ContractError
from canarystream.governance.access import Access
from canarystream.governance.envelope import is_envelope, open_envelope
from canarystream.governance.identity import Origin, authenticate
from canarystream.merging import Line, merged_blocks

__all__ = [
    "LISTED",
    "STDIN",
    "Rejection",
    "ReplayInputError",
    "ReplayResult",
    "StrictReplayError",
    "open_input",
    "replay_files",
    "replay_lines",
]

STDIN = "-"
"""The input name that reads standard input."""
LISTED = 5
"""Rejected events of one line that its report describes; the others are counted."""
_MAX_MESSAGE = 2_000  # characters of one rejected event's message kept in a report
_MAX_LISTED_MESSAGE = 150  # and of each one listed in a report on a JSON array
_GZIP_MAGIC = b"\x1f\x8b"
_REPLAYS = count()  # replay calls in this process: an engine may be given to several


@dataclass(frozen=True)
class Rejection:
    """One input line with rejected events, and why (one per line, never one per event)."""

    source: str
    line: int
    reason: str
    message: str
    events: int = 1  # events on the line (a JSON array's length)
    rejected: int = 1  # of them rejected

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}: {self.message}"


class StrictReplayError(ContractError):
    """Raised in strict mode at the first rejected event, or time going backwards."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(str(rejection), reason=rejection.reason)
        self.rejection = rejection


class ReplayInputError(CanarystreamError):
    """An input could not be read to its end (a corrupt gzip stream, an I/O error)."""


@dataclass
class ReplayResult:
    """What a replay did: counts, rejections by reason, and the decisions' engine."""

    engine: Engine
    lines: int = 0
    events: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # rejected events, by reason
    rejected_lines: int = 0  # lines reported (each with one or more rejected events)
    first_rejection: Rejection | None = None

    @property
    def judged(self) -> bool:
        """Whether any rollout was judged: one was started (so not every line was rejected)."""
        return bool(self.engine.rollouts)


Where = tuple[int, int, int, bool]
"""Where an event was: (line number, position on the line, events on it, line is an array)."""


def _time_of(value: Any) -> float | None:
    """An event's ``ts`` when it is a finite number (else the engine judges the event)."""
    if type(value) is WireRequest:
        return value.ts
    ts: Any = value.get("ts") if type(value) is dict else None
    return ts if type(ts) in (int, float) and math.isfinite(ts) else None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class _LineReport:
    """The rejected events of one line: counted by reason, the first :data:`LISTED` kept."""

    __slots__ = ("batched", "count", "events", "index", "listed", "number", "reasons")

    def __init__(self, index: int, number: int, events: int, batched: bool) -> None:
        self.index = index
        self.number = number
        self.events = events
        self.batched = batched
        self.count = 0
        self.reasons: Counter[str] = Counter()
        self.listed: list[tuple[int, str, str]] = []

    def add(self, position: int, exc: ContractError) -> None:
        self.count += 1
        self.reasons[exc.reason] += 1
        if len(self.listed) < LISTED:
            self.listed.append((position, exc.reason, _clip(str(exc), _MAX_MESSAGE)))

    def rejection(self, source: str) -> Rejection:
        reasons = list(self.reasons)
        reason = reasons[0] if len(reasons) == 1 else "mixed"
        if self.batched:
            counts = ", ".join(f"{r} {n}" for r, n in sorted(self.reasons.items()))
            named = "; ".join(
                f"[{i}] {r}: {_clip(m, _MAX_LISTED_MESSAGE)}" for i, r, m in self.listed
            )
            more = f"; {self.count - len(self.listed)} more" if self.count > LISTED else ""
            message = f"{self.count} of {self.events} events rejected ({counts}): {named}{more}"
        else:
            message = self.listed[0][2]
        return Rejection(source, self.number, reason, message, self.events, self.count)


class _Reporter:
    """Turns rejected events into one :class:`Rejection` per line (or raises, if strict)."""

    def __init__(
        self,
        names: list[str],
        result: ReplayResult,
        strict: bool,
        on_reject: Callable[[Rejection], None] | None,
    ) -> None:
        self.names = names
        self.result = result
        self.strict = strict
        self.on_reject = on_reject
        self.pending: _LineReport | None = None
        # Prefix of this replay's message names: an engine may be given to several replays,
        # and no message of one may pass for a message of another (engine/admission.py).
        self.scope = f"{next(_REPLAYS)}/"
        # Per input: the latest ts seen and its line, for strict's time order.
        self.latest: list[tuple[float, int]] = [(float("-inf"), 0) for _ in names]

    def event(self, index: int, where: Where, exc: Exception) -> None:
        """An event of input ``index`` was rejected; ``where`` it was (see :data:`Where`)."""
        number, position, events, batched = where
        if not isinstance(exc, ContractError):  # the engine contains its own failures
            exc = ContractError(f"{type(exc).__name__}: {exc}", reason="internal_error")
        self.result.rejected[exc.reason] += 1
        if self.strict:
            rejection = Rejection(
                self.names[index], number, exc.reason, _clip(str(exc), _MAX_MESSAGE), events
            )
            raise StrictReplayError(rejection) from exc
        pending = self.pending
        if pending is None or pending.number != number or pending.index != index:
            self.flush()
            pending = self.pending = _LineReport(index, number, events, batched)
        pending.add(position, exc)

    def flush(self) -> None:
        """Report the line whose rejections were being collected."""
        pending = self.pending
        if pending is None:
            return
        self.pending = None
        rejection = pending.rejection(self.names[pending.index])
        self.result.rejected_lines += 1
        if self.result.first_rejection is None:
            self.result.first_rejection = rejection
        if self.on_reject is not None:
            self.on_reject(rejection)

    def first_backwards(
        self, index: int, values: list[Any], where: Callable[[int], Where]
    ) -> int | None:
        """The first of ``values`` stamped before an earlier event of input ``index``."""
        latest, line = self.latest[index]
        for i, value in enumerate(values):
            ts = _time_of(value)
            if ts is None:
                continue
            if ts < latest:
                self.latest[index] = (latest, line)
                return i
            latest, line = ts, where(i)[0]
        self.latest[index] = (latest, line)
        return None

    def backwards(self, index: int, number: int, value: Any) -> bool:
        """Strict only: raise if ``value`` is stamped before an earlier event of its input."""
        ts = _time_of(value)
        if ts is None:
            return False
        latest, line = self.latest[index]
        if ts >= latest:
            self.latest[index] = (ts, number)
            return False
        exc = ContractError(
            f"ts {ts:.3f} is before {latest:.3f} of line {line}: time went backwards",
            reason="ts_backwards",
        )
        self.event(index, (number, 0, 1, False), exc)
        return True


_CHUNK = 4096  # lines decoded and applied together on the single-file path


def _has_envelopes(chunk: list[bytes]) -> bool:
    """Whether a chunk of lines may hold a signed envelope (then decoded line by line)."""
    return b'"signed"' in b"".join(chunk)


Decoded = tuple[list[Any], bool, Origin | None]
"""A line's events, whether it was a JSON array, and who signed it (an envelope's, with an
access file)."""


def _decode(raw: bytes, access: Access | None) -> Decoded | ContractError | None:
    """A line's events (an envelope's, unwrapped); an error; None for a blank line."""
    try:
        values, batched = decode_events(raw)
        if batched or len(values) != 1 or not is_envelope(values[0]):
            return values, batched, None
        payload, principal, signature = open_envelope(values[0])
        values, batched = decode_events(payload)
    except ContractError as exc:
        return exc if raw.strip() else None
    origin = authenticate(access, principal, signature, payload) if access is not None else None
    return values, batched, origin


class _Lines:
    """Lines decoded one by one: their values, and where and from whom each value came."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.starts: list[int] = []  # the index of each line's first value
        self.owners: list[tuple[int, int, bool]] = []  # each line's (number, events, array)
        self.messages: list[str] = []  # the line of each value
        self.origins: list[Origin | None] = []  # who signed the line of each value


def _decode_lines(
    chunk: list[bytes], first: int, report: _Reporter, access: Access | None
) -> _Lines:
    """Decode lines one by one (line ``first`` first), reporting those that fail."""
    out = _Lines()
    for offset, raw in enumerate(chunk):
        decoded = _decode(raw, access)
        if decoded is None:
            continue
        if isinstance(decoded, ContractError):
            report.event(0, (first + offset, 0, 1, False), decoded)
            continue
        line_values, batched, origin = decoded
        if line_values:
            out.starts.append(len(out.values))
            out.owners.append((first + offset, len(line_values), batched))
            out.values.extend(line_values)
            out.messages.extend([f"{report.scope}{first + offset}"] * len(line_values))
            out.origins.extend([origin] * len(line_values))
    return out


def _replay_single(
    handle: Iterable[bytes],
    engine: Engine,
    emit: Callable[[list[Decision]], None],
    report: _Reporter,
    on_progress: Callable[[int], None] | None,
) -> tuple[int, int]:
    """One file: decode a chunk of lines at once, then apply it as one batch."""
    lines = events = 0
    chunk = list(islice(handle, _CHUNK))
    while chunk:
        first = lines + 1
        # Where each value came from on the general path: the lines' first value indexes
        # (searched only on an error) and each line's (number, events, is an array).
        starts: list[int] | None = None
        owners: list[tuple[int, int, bool]] = []
        messages: list[str] | None = None  # the line of each value (None: one line each)
        origins: list[Origin | None] | None = None  # who signed each value's line
        values = None if _has_envelopes(chunk) else decode_objects(chunk)
        if values is None:  # a malformed or blank line, an array (batch), a scalar, envelopes
            decoded = _decode_lines(chunk, first, report, engine.access)
            values, starts, owners = decoded.values, decoded.starts, decoded.owners
            messages, origins = decoded.messages, decoded.origins
        lines += len(chunk)
        events += len(values)

        def where(
            i: int,
            first: int = first,
            starts: list[int] | None = starts,
            owners: list[tuple[int, int, bool]] = owners,
        ) -> Where:
            """Where value ``i`` of the chunk came from."""
            if starts is None:
                return first + i, 0, 1, False
            line = bisect_right(starts, i) - 1
            number, size, batched = owners[line]
            return number, i - starts[line], size, batched

        def on_error(i: int, exc: ContractError, where: Callable[[int], Where] = where) -> None:
            report.event(0, where(i), exc)

        # Strict: apply up to the first event stamped before an earlier one, then stop there.
        stop = report.first_backwards(0, values, where) if report.strict else None
        applied = values if stop is None else values[:stop]
        out = engine.process_batch(applied, on_error, messages, origins)
        if out:
            emit(out)
        if stop is not None:
            report.backwards(0, where(stop)[0], values[stop])  # raises
        report.flush()
        if on_progress is not None:
            on_progress(lines)
        chunk = list(islice(handle, _CHUNK))
    return lines, events


def replay_lines(  # noqa: PLR0913 -- keyword-only callbacks and options
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
    report = _Reporter(names, result, strict, on_reject)
    decisions = result.decisions

    def emit(out: list[Decision]) -> None:
        for decision in out:
            decisions[decision.action.value] += 1
            if on_decision is not None:
                on_decision(decision)

    if len(named) == 1:
        result.lines, result.events = _replay_single(
            iter(named[0][1]), engine, emit, report, on_progress
        )
    else:
        _replay_merged(named, engine, emit, report, on_progress)
    return result


def _replay_merged(
    named: list[tuple[str, Iterable[bytes]]],
    engine: Engine,
    emit: Callable[[list[Decision]], None],
    report: _Reporter,
    on_progress: Callable[[int], None] | None,
) -> None:
    """Several files: merge their lines by ``ts`` and apply them a block at a time.

    The lines and events read are counted in the report's result, even when it stops early.
    """
    lines = events = 0
    try:
        for block in merged_blocks(source for _, source in named):
            before = lines
            values = _block_values(block, report)
            if values is None:  # strict, envelopes, or a line that is not one JSON object
                for line in block:
                    lines += 1
                    events += _apply_line(line, engine, emit, report)
            else:
                lines += len(block)
                events += len(values)
                _apply_values(block, values, engine, emit, report)
            if on_progress is not None and lines >> 14 != before >> 14:
                on_progress(lines)
    finally:
        report.result.lines, report.result.events = lines, events


class _Names(Sequence[str]):
    """The message name of each line of a block, ``scope`` then ``file:line``, made when
    asked for."""

    __slots__ = ("block", "scope")

    def __init__(self, block: list[Line], scope: str) -> None:
        self.block = block
        self.scope = scope

    def __len__(self) -> int:
        return len(self.block)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            scope = self.scope
            return [f"{scope}{index}:{number}" for _, index, number, _ in self.block[i]]
        _, index, number, _ = self.block[i]
        return f"{self.scope}{index}:{number}"


def _block_values(block: list[Line], report: _Reporter) -> list[Any] | None:
    """The events of a block of lines, decoded at once when each line is one plain JSON
    object (nearly always) and the replay is not strict; else None."""
    if report.strict:
        return None
    raws = [raw for _, _, _, raw in block]
    return None if _has_envelopes(raws) else decode_objects(raws)


def _apply_values(
    block: list[Line],
    values: list[Any],
    engine: Engine,
    emit: Callable[[list[Decision]], None],
    report: _Reporter,
) -> None:
    """Apply the events of a block, one a line, as one batch."""

    def on_error(i: int, exc: ContractError) -> None:
        _, index, number, _ = block[i]
        report.event(index, (number, 0, 1, False), exc)

    out = engine.process_batch(values, on_error, _Names(block, report.scope))
    report.flush()
    if out:
        emit(out)


def _apply_line(
    line: Line, engine: Engine, emit: Callable[[list[Decision]], None], report: _Reporter
) -> int:
    """Apply one merged line event by event; the events it held."""
    _, index, number, raw = line
    decoded = _decode(raw, engine.access)
    if decoded is None:
        return 0
    if isinstance(decoded, ContractError):
        report.event(index, (number, 0, 1, False), decoded)
        report.flush()
        return 0
    line_events, batched, origin = decoded
    message = f"{report.scope}{index}:{number}"
    for position, event in enumerate(line_events):
        if report.strict and report.backwards(index, number, event):
            continue
        try:
            out = engine.process(event, message, origin)
        except ContractError as exc:
            report.event(index, (number, position, len(line_events), batched), exc)
            continue
        if out:
            emit(out)
    report.flush()
    return len(line_events)


def open_input(
    path: str | Path, stack: ExitStack, opened: list[BinaryIO] | None = None
) -> tuple[str, Iterable[bytes]]:
    """``(name, lines)`` of one input: a file, or standard input for ``-``; gzip unpacked.

    A file's handle is added to ``opened`` (its position is the bytes read so far).
    Errors while reading raise :class:`ReplayInputError` naming the input.
    """
    if str(path) == STDIN:
        name, raw = "<stdin>", sys.stdin.buffer
    else:
        name, raw = str(path), stack.enter_context(open(path, "rb"))  # noqa: SIM115
        if opened is not None:
            opened.append(raw)
    reader: Any = raw if hasattr(raw, "peek") else io.BufferedReader(raw)
    if reader.peek(2)[:2] == _GZIP_MAGIC:
        reader = io.BufferedReader(gzip.GzipFile(fileobj=reader, mode="rb"))
    return name, _guarded(name, reader)


def _guarded(name: str, handle: BinaryIO) -> Iterator[bytes]:
    try:
        yield from handle
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ReplayInputError(f"{name}: cannot read: {exc}") from exc


def replay_files(  # noqa: PLR0913 -- keyword-only callbacks and options
    paths: Iterable[str | Path],
    *,
    engine: Engine | None = None,
    on_decision: Callable[[Decision], None] | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    strict: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Replay JSON Lines files (``-`` for standard input), merged by ``ts``, through ``engine``.

    ``on_progress(lines, read)`` is called now and then with the lines and the bytes of the
    files (as stored: gzip compressed) read so far.
    """
    with ExitStack() as stack:
        opened: list[BinaryIO] = []
        sources = [open_input(path, stack, opened) for path in paths]

        def progress(lines: int) -> None:
            if on_progress is not None:
                on_progress(lines, sum(_position(handle) for handle in opened))

        return replay_lines(
            sources,
            engine=engine,
            on_decision=on_decision,
            on_reject=on_reject,
            strict=strict,
            on_progress=progress if on_progress is not None else None,
        )


def _position(handle: BinaryIO) -> int:
    """Bytes of ``handle`` read so far; 0 when it cannot tell."""
    try:
        return handle.tell()
    except (OSError, ValueError):
        return 0
