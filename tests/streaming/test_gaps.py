"""Holes in the offsets Faust delivers are filled, in order, before the message after them."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from canarystream.contracts.topics import DEADLETTER_TOPIC, topic_spec
from canarystream.errors import BrokerError
from canarystream.streaming.gaps import GapFiller, KafkaRangeReader
from canarystream.streaming.processor import Inbound
from tests.support.broker import (
    Stack,
    kafka_bootstrap,  # noqa: F401  (a fixture)
)

T = "telemetry"


def message(offset: int, partition: int = 0) -> Inbound:
    return Inbound(T, partition, offset, b"svc", f"m{offset}".encode())


class FakeReader:
    """A partition log holding offsets ``log_start..`` of every partition."""

    def __init__(self, log_start: int = 0, log_end: int = 0) -> None:
        self.start = log_start
        self.end = log_end
        self.reads: list[tuple[int, int, int]] = []

    async def log_ends(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return dict.fromkeys(partitions, self.end)

    async def log_start(self, topic: str, partition: int) -> int:
        return self.start

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Inbound]:
        self.reads.append((partition, start, end))
        return [message(o, partition) for o in range(max(start, self.start), end)]


def offsets(batch: list[Inbound]) -> list[tuple[int, int]]:
    return [(m.partition, m.offset) for m in batch]


def fill(
    batches: list[list[Inbound]],
    reader: FakeReader,
    checkpoints: dict[int, int] | None = None,
) -> tuple[list[list[Inbound]], list[int]]:
    gaps: list[int] = []
    filler = GapFiller(reader, lambda topic, p: (checkpoints or {}).get(p), on_gap=gaps.append)

    async def run() -> list[list[Inbound]]:
        return [await filler.complete(batch) for batch in batches]

    return asyncio.run(run()), gaps


def test_messages_skipped_at_the_start_and_in_the_middle_are_read_first() -> None:
    reader = FakeReader()
    (first, second), gaps = fill(
        [[message(3), message(4), message(0, partition=1)], [message(5), message(9)]], reader
    )
    assert offsets(first) == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 0)]
    assert offsets(second) == [(0, 5), (0, 6), (0, 7), (0, 8), (0, 9)]
    assert reader.reads == [(0, 0, 3), (0, 6, 9)]
    assert gaps == [3, 3]


def test_a_partition_resumes_after_its_checkpoint_not_at_the_log_start() -> None:
    reader = FakeReader()
    (batch,), gaps = fill([[message(41), message(44)]], reader, checkpoints={0: 40})
    assert gaps == [2]
    assert offsets(batch) == [(0, 41), (0, 42), (0, 43), (0, 44)]
    assert reader.reads == [(0, 42, 44)]
    # a committed offset past the checkpoint: the messages in between are read again
    reader = FakeReader()
    (batch,), _ = fill([[message(50)]], reader, checkpoints={0: 40})
    assert offsets(batch)[0] == (0, 41) and len(batch) == 10


def test_redelivered_messages_pass_through_without_reading() -> None:
    reader = FakeReader()
    (batch,), gaps = fill([[message(0), message(1), message(0), message(1), message(2)]], reader)
    assert offsets(batch) == [(0, 0), (0, 1), (0, 0), (0, 1), (0, 2)]
    assert reader.reads == [] and gaps == []


def test_a_log_whose_start_was_deleted_starts_there() -> None:
    reader = FakeReader(log_start=100)
    (batch,), gaps = fill([[message(100), message(101)]], reader)
    assert offsets(batch) == [(0, 100), (0, 101)] and gaps == []


def test_a_revoked_partition_starts_afresh_from_its_checkpoint() -> None:
    reader = FakeReader()
    checkpoints = {0: 10}
    filler = GapFiller(reader, lambda topic, p: checkpoints.get(p))

    async def run() -> list[Inbound]:
        await filler.complete([message(11), message(12)])
        filler.forget({0})
        checkpoints[0] = 20  # another worker went on meanwhile
        return await filler.complete([message(23)])

    assert offsets(asyncio.run(run())) == [(0, 21), (0, 22), (0, 23)]


def test_the_end_of_a_log_never_delivered_is_read_from_the_checkpoint() -> None:
    # Faust dropped (or committed past) the last messages and nothing follows them.
    reader = FakeReader(log_end=48)
    filler = GapFiller(reader, lambda topic, p: {0: 40}.get(p))

    async def run() -> tuple[list[Inbound], list[Inbound], list[Inbound]]:
        tail = await filler.undelivered([(T, 0), (T, 1)])
        again = await filler.undelivered([(T, 0), (T, 1)])
        reader.end = 50  # two more arrive, and are delivered as usual
        later = await filler.complete([message(48), message(49)])
        return tail, again, later

    tail, again, later = asyncio.run(run())
    assert offsets(tail) == [(0, o) for o in range(41, 48)] + [(1, o) for o in range(48)]
    assert reader.reads == [(0, 41, 48), (1, 0, 48)]
    assert again == []  # read once: the next offset expected moved to the end
    assert offsets(later) == [(0, 48), (0, 49)]


def test_a_partition_delivered_to_its_end_reads_nothing() -> None:
    reader = FakeReader(log_end=3)
    filler = GapFiller(reader, lambda topic, p: None)

    async def run() -> list[Inbound]:
        await filler.complete([message(0), message(1), message(2)])
        return await filler.undelivered([(T, 0)])

    assert asyncio.run(run()) == [] and reader.reads == []


def test_an_empty_log_or_no_partition_reads_nothing() -> None:
    reader = FakeReader(log_end=0)
    filler = GapFiller(reader, lambda topic, p: None)
    assert asyncio.run(filler.undelivered([(T, 0)])) == []
    assert asyncio.run(filler.undelivered([])) == []
    assert reader.reads == []


@pytest.mark.kafka
def test_the_kafka_reader_reads_a_range_of_a_real_partition(
    kafka_bootstrap: str,  # noqa: F811
    tmp_path,
) -> None:
    stack = Stack(kafka_bootstrap, tmp_path)
    stack.produce_raw(DEADLETTER_TOPIC, [f"v{i}".encode() for i in range(30)], key=b"k")
    topic = stack.topic(DEADLETTER_TOPIC)
    ends = end_offsets(stack, topic)
    partition = next(p for p, end in ends.items() if end)
    assert ends[partition] == 30  # one key: one partition
    reader = KafkaRangeReader(stack.connection.client_kwargs)

    async def run() -> tuple[int, list[Inbound], list[Inbound]]:
        try:
            other = (partition + 1) % topic_spec(DEADLETTER_TOPIC).partitions
            log_ends = await reader.log_ends([(topic, partition), (topic, other)])
            assert log_ends == {(topic, partition): 30, (topic, other): 0}
            start = await reader.log_start(topic, partition)
            middle = await reader.read(topic, partition, 5, 12)
            again = await reader.read(topic, partition, 0, 2)
            with pytest.raises(BrokerError, match="could not be read"):
                await reader.read(topic, partition, 25, 40)  # past the end of the log
            return start, middle, again
        finally:
            await reader.close()

    start, middle, again = asyncio.run(run())
    assert start == 0
    assert [(m.offset, m.value) for m in middle] == [(o, f"v{o}".encode()) for o in range(5, 12)]
    assert [m.offset for m in again] == [0, 1] and again[0].key == b"k"


def end_offsets(stack: Stack, topic: str) -> dict[int, int]:
    async def run() -> dict[int, int]:
        consumer = AIOKafkaConsumer(**stack.connection.client_kwargs(), group_id=None)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(topic_spec(DEADLETTER_TOPIC).partitions)]
            return {tp.partition: end for tp, end in (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()

    return asyncio.run(run())


@given(
    start=st.integers(0, 50),
    steps=st.lists(st.integers(-3, 6), min_size=1, max_size=60),
    cuts=st.lists(st.integers(1, 10), max_size=8),
)
def test_every_offset_reaches_the_engine_in_order_whatever_faust_delivers(
    start: int, steps: list[int], cuts: list[int]
) -> None:
    # Faust's deliveries: forward jumps (skipped messages) and steps back (redeliveries).
    delivered, offset = [], start
    for step in steps:
        offset = max(start, offset + step)
        delivered.append(message(offset))
    batches, at = [], 0
    for cut in [*cuts, len(delivered)]:
        batches.append(delivered[at : at + cut])
        at += cut
    reader = FakeReader(log_start=start)
    out, _ = fill([b for b in batches if b], reader)
    seen = [m.offset for batch in out for m in batch]
    firsts = list(dict.fromkeys(seen))
    assert firsts == list(range(start, max(seen) + 1))  # nothing missing, first seen in order
    read_again = [o for _, begin, end in reader.reads for o in range(begin, end)]
    assert len(read_again) == len(set(read_again))  # no offset is read twice
