"""Lines of several files merged by ``ts``, handed out in blocks rather than one by one.

The order is that of ``heapq.merge`` over each file's ``(ts, file, line, raw)``: by the
``ts`` read from the line's bytes (a line without one takes its file's previous ``ts``), ties
by file, then by line. While every file is in time order, a block is every buffered line
stamped before the earliest of the files' last buffered ``ts`` (no unread line can come
before it), sorted in C; a file found out of order hands the rest over to ``heapq.merge``,
which goes on from the same point in the same order.
"""

from __future__ import annotations

import heapq
import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import chain, islice

__all__ = ["Line", "merged_blocks", "peek_ts"]

Line = tuple[float, int, int, bytes]
"""(sort ts, file index, line number, raw bytes)."""

_BLOCK = 4096  # lines read from a file at a time
_TS = re.compile(rb'"ts":([ 0-9.eE+-]*)')
_ESCAPED_TS = re.compile(rb'\\"ts\\":([ 0-9.eE+-]*)')  # in an envelope's payload text


def peek_ts(raw: bytes) -> float | None:
    """The number after the line's first ``"ts":`` (or an envelope's escaped one), unparsed
    JSON: only the merge needs a line's ``ts`` before it is decoded.

    >>> peek_ts(b'{"type":"request","ts":1790000000.25,"service":"s"}')
    1790000000.25
    >>> peek_ts(b'{"ts":"soon"}') is None
    True
    """
    found = _TS.search(raw) or _ESCAPED_TS.search(raw)
    if found is None:
        return None
    try:
        return float(found.group(1))
    except ValueError:
        return None


class _File:
    """One file's lines read so far and not yet handed out."""

    __slots__ = ("done", "index", "last", "lines", "number", "source", "start")

    def __init__(self, index: int, source: Iterator[bytes]) -> None:
        self.index = index
        self.source = source
        self.number = 0  # lines read
        self.last = -math.inf  # the sort ts of the last line read
        self.lines: list[Line] = []
        self.start = 0  # lines before it were handed out
        self.done = False

    def read(self) -> bool:
        """Buffer the next lines; False if one of them goes back in time."""
        if self.start:
            del self.lines[: self.start]
            self.start = 0
        index, number, last, ordered = self.index, self.number, self.last, True
        append = self.lines.append
        for raw in islice(self.source, _BLOCK):
            number += 1
            ts = peek_ts(raw)
            if ts is not None:
                if ts < last:
                    ordered = False
                last = ts
            append((last, index, number, raw))
        self.done = number - self.number < _BLOCK
        self.number, self.last = number, last
        return ordered

    def rest(self) -> Iterator[Line]:
        """The lines not handed out, buffered and unread, as ``heapq.merge`` wants them."""
        return chain(islice(self.lines, self.start, None), _lines(self))


def _lines(file: _File) -> Iterator[Line]:
    index, number, last = file.index, file.number, file.last
    for raw in file.source:
        number += 1
        ts = peek_ts(raw)
        if ts is not None:
            last = ts
        yield (last, index, number, raw)


def merged_blocks(sources: Iterable[Iterable[bytes]]) -> Iterator[list[Line]]:
    """The lines of ``sources`` (files, in order) merged by ``ts``, a block at a time."""
    files = [_File(index, iter(source)) for index, source in enumerate(sources)]
    pending = list(files)  # files whose buffer must grow before the next block
    while True:
        for file in pending:
            if not file.read():
                yield from _one_by_one(files)
                return
        live = [file for file in files if not file.done]
        if not live:
            block = [line for file in files for line in islice(file.lines, file.start, None)]
            block.sort()
            if block:
                yield block
            return
        bound = min(file.last for file in live)
        block = []
        for file in files:
            end = bisect_left(file.lines, (bound,), file.start)
            block += islice(file.lines, file.start, end)
            file.start = end
        pending = [f for f in live if f.start == len(f.lines) or f.last == bound]
        if block:
            block.sort()
            yield block


def _one_by_one(files: list[_File]) -> Iterator[list[Line]]:
    """The rest as ``heapq.merge`` orders it, in blocks of single lines."""
    for line in heapq.merge(*(file.rest() for file in files)):
        yield [line]
