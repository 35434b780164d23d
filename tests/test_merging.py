"""Merging files by ts a block at a time gives heapq.merge's order, line for line, whether
the files are in time order or not."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator

import pytest

from canarystream import merging
from canarystream.merging import Line, merged_blocks, peek_ts


def _one_at_a_time(index: int, lines: list[bytes]) -> Iterator[Line]:
    """The reference: each line with its ts (or its file's previous one), as replay had it."""
    last = float("-inf")
    for number, raw in enumerate(lines, start=1):
        ts = peek_ts(raw)
        if ts is not None:
            last = ts
        yield (last, index, number, raw)


def _file(rng: random.Random, length: int, ordered: bool) -> list[bytes]:
    lines, ts = [], 100.0
    for _ in range(length):
        roll = rng.random()
        if roll < 0.1:
            lines.append(b'{"type":"request","ts":"late"}')  # no usable ts: the previous one
        elif roll < 0.15:
            lines.append(b"not json")
        else:
            ts += rng.choice((0.0, 0.0, 0.5, 1.0, 3.0))  # ties within and across files
            if not ordered and rng.random() < 0.05:
                ts -= 7.0
            lines.append(b'{"type":"request","ts":%r,"service":"s"}' % ts)
    return lines


@pytest.mark.parametrize("block", [1, 3, 64])
@pytest.mark.parametrize("seed", range(6))
def test_blocks_follow_heapq_merge(monkeypatch: pytest.MonkeyPatch, block: int, seed: int) -> None:
    monkeypatch.setattr(merging, "_BLOCK", block)
    rng = random.Random(seed)
    # Seeds 0-3 in time order; 4 and 5 each have a file that goes back in time.
    files = [_file(rng, rng.randrange(0, 120), ordered=seed < 4 or i) for i in range(4)]
    expected = list(heapq.merge(*(_one_at_a_time(i, f) for i, f in enumerate(files))))

    blocks = list(merged_blocks(files))

    assert [line for chunk in blocks for line in chunk] == expected
    if seed < 4 and block == 64:
        assert len(blocks) < len(expected) / 4  # in blocks, not one line at a time


def test_a_file_without_lines_or_timestamps() -> None:
    untimed = [b"{}", b"[1, 2]", b""]
    files = [[], untimed, [b'{"ts":5}', b'{"ts":6}']]
    got = [line for block in merged_blocks(files) for line in block]
    assert [(ts, index, number) for ts, index, number, _ in got] == [
        (float("-inf"), 1, 1),
        (float("-inf"), 1, 2),
        (float("-inf"), 1, 3),
        (5.0, 2, 1),
        (6.0, 2, 2),
    ]


def test_peek_reads_the_first_ts_and_an_envelopes_escaped_one() -> None:
    assert peek_ts(b'{"ts": 12.5e1, "x": {"ts": 1}}') == 125.0
    assert peek_ts(b'{"payload":"{\\"ts\\":7.5}"}') == 7.5
    assert peek_ts(b'{"ts":"7"}') is None
    assert peek_ts(b'{"t":7}') is None
