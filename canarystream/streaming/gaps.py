"""Every offset of every source partition reaches the engine, in order, exactly once per worker.

Faust may skip messages: when it seeks a partition after an assignment, messages it had
already fetched are dropped from its buffers while its read position stays past them, so
they never reach the agent (seen with a backlog at start-up: about 13 % of the messages of a
20-minute backlog were skipped, nothing logged). Under load it may also commit offsets of
messages the agent has not had yet. :class:`GapFiller` notices both: it knows the next offset
each partition must deliver (the last checkpoint's, after an assignment; the start of the log
for a partition never processed), and when a message lies beyond it, reads the messages in
between with a plain consumer and puts them first. Offsets below it (messages delivered again)
pass through; the processor skips those already applied.

A hole at the end of a partition shows no later message to reveal it: when Faust has dropped
or committed past the last messages of a partition and nothing more arrives (the end of a
rollout's telemetry, a quiet service, a command waiting on the deployments topic), the agent
would never see them. :meth:`GapFiller.undelivered` finds such holes from the log's end and
reads them; the worker asks for it when a partition has been silent for a while.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from canarystream.errors import BrokerError
from canarystream.streaming.processor import Inbound

__all__ = ["GapFiller", "KafkaRangeReader", "RangeReader"]

log = logging.getLogger(__name__)

Partition = tuple[str, int]  # (topic, partition)


class RangeReader(Protocol):
    """Reads a source partition outside the consumer group."""

    async def log_start(self, topic: str, partition: int) -> int:
        """The partition's first offset still in the log."""
        ...

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Inbound]:
        """The messages at offsets ``[start, end)``."""
        ...

    async def log_ends(self, partitions: list[Partition]) -> dict[Partition, int]:
        """Each partition's end: the offset its next message will have."""
        ...


class GapFiller:
    """Fills the holes in the offsets Faust hands to the agent.

    Parameters
    ----------
    reader
        Reads what is missing.
    checkpointed
        The last offset of a partition covered by stored state, or None (never processed).
    on_gap
        Called with the number of messages read for each hole filled (metrics).
    """

    def __init__(
        self,
        reader: RangeReader,
        checkpointed: Callable[[str, int], int | None],
        on_gap: Callable[[int], None] | None = None,
    ) -> None:
        self._reader = reader
        self._checkpointed = checkpointed
        self._on_gap = on_gap
        self._next: dict[Partition, int] = {}

    async def complete(self, batch: list[Inbound]) -> list[Inbound]:
        """``batch`` with the messages missing before each of its messages put first."""
        out: list[Inbound] = []
        expected = self._next
        for message in batch:
            tp = (message.topic, message.partition)
            want = expected.get(tp)
            if want is None:
                want = await self._first_offset(tp)
            if message.offset > want:
                missing = await self._reader.read(*tp, want, message.offset)
                log.warning(
                    "%s[%d]: offsets %d..%d were not delivered; read %d messages again",
                    *tp, want, message.offset - 1, len(missing),
                )  # fmt: skip
                if self._on_gap is not None:
                    self._on_gap(len(missing))
                out.extend(missing)
            out.append(message)
            expected[tp] = max(want, message.offset + 1)
        return out

    async def undelivered(self, partitions: list[Partition]) -> list[Inbound]:
        """The messages of ``partitions`` in the log that were neither delivered nor read.

        For partitions Faust has gone silent on: everything from the next offset each must
        deliver to the end of its log, read with the plain consumer, in offset order per
        partition. Afterwards the next offset expected is the end read to.
        """
        if not partitions:
            return []
        ends = await self._reader.log_ends(partitions)
        out: list[Inbound] = []
        read_to: dict[Partition, int] = {}
        for tp in partitions:
            end = ends.get(tp)
            if end is None:
                continue
            want = self._next.get(tp)
            if want is None:
                want = await self._first_offset(tp)
            if want >= end:
                continue
            missing = await self._reader.read(*tp, want, end)
            log.warning(
                "%s[%d]: offsets %d..%d are in the log but were not delivered; read %d messages",
                *tp, want, end - 1, len(missing),
            )  # fmt: skip
            out.extend(missing)
            read_to[tp] = end
        # Only once every read succeeded: a failed one leaves all of them to be read again.
        self._next.update(read_to)
        if self._on_gap is not None:
            for tp in read_to:
                self._on_gap(sum(1 for m in out if (m.topic, m.partition) == tp))
        return out

    def forget(self, partitions: set[int]) -> None:
        """Partitions this worker no longer owns: start afresh if they come back."""
        for tp in [tp for tp in self._next if tp[1] in partitions]:
            del self._next[tp]

    async def _first_offset(self, tp: Partition) -> int:
        checkpoint = self._checkpointed(*tp)
        if checkpoint is not None:
            return checkpoint + 1
        log.info("%s[%d]: no checkpoint; looking up where the log starts", *tp)
        start = await self._reader.log_start(*tp)
        log.info("%s[%d]: the log starts at %d", *tp, start)
        return start


class KafkaRangeReader:
    """:class:`RangeReader` over one plain consumer (no group), started when first needed."""

    def __init__(self, client_kwargs: Callable[[], dict[str, Any]]) -> None:
        self._client_kwargs = client_kwargs
        self._consumer: AIOKafkaConsumer | None = None

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **self._client_kwargs(),
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # a range partly deleted: read what is left
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def log_start(self, topic: str, partition: int) -> int:
        tp = TopicPartition(topic, partition)
        consumer = await self._started()
        start: int = (await consumer.beginning_offsets([tp]))[tp]
        return start

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Inbound]:
        tp = TopicPartition(topic, partition)
        consumer = await self._started()
        consumer.assign([tp])
        consumer.seek(tp, start)
        out: list[Inbound] = []
        empty = 0
        # The position, not the last message, says when the range is read: offsets of
        # transaction markers hold no message.
        while await consumer.position(tp) < end:
            got = await consumer.getmany(tp, timeout_ms=2000, max_records=5000)
            messages = got.get(tp, [])
            empty = 0 if messages else empty + 1
            if empty >= 3:
                raise BrokerError(
                    f"{topic}[{partition}]: offsets {start}..{end - 1} could not be read again"
                )
            out.extend(
                Inbound(m.topic, m.partition, m.offset, m.key, m.value, tuple(m.headers or ()))
                for m in messages
                if m.offset < end
            )
        return out

    async def log_ends(self, partitions: list[Partition]) -> dict[Partition, int]:
        consumer = await self._started()
        tps = [TopicPartition(topic, partition) for topic, partition in partitions]
        ends = await consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    async def close(self) -> None:
        """Stop the consumer if it was started."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
