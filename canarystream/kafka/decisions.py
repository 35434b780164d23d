"""Reading the decisions topic outside any consumer group: every rollout, as its worker decided.

``canarystream status`` and ``get`` read the last ``lookback`` messages of each partition of
the decisions topic (to the ends they saw at start), and ``status --watch`` keeps following.
The reader is the one the control commands use (:func:`~canarystream.kafka.control.open_reader`).

When decisions are signed, only a message whose signature verifies with the worker's key is
believed, as the actuators and :mod:`canarystream.streaming.published` do: anyone who can
write to the topic could otherwise show a rollout promoted that is rolling back. Such
messages are counted in :attr:`DecisionFeed.forged` (and shown), never folded; a verified
message that is not a decision is counted in :attr:`DecisionFeed.invalid`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from aiokafka import TopicPartition

from canarystream.contracts.codec import decode_decision
from canarystream.contracts.decision import Decision
from canarystream.contracts.signing import SIGNATURE_HEADER, Verifier
from canarystream.contracts.topics import DECISIONS_TOPIC
from canarystream.errors import ContractError
from canarystream.kafka.connection import Connection
from canarystream.kafka.control import open_reader, topic_partitions

__all__ = ["DecisionFeed", "read_decisions"]


@dataclass
class DecisionFeed:
    """Turns messages of the decisions topic into decisions, counting what it refuses.

    ``verifier``: the worker's key(s); None (insecure mode) believes every decision.
    ``on_ignored``: called with the reason (``unsigned``, ``bad_signature``,
    ``invalid_decision``) of each message it refuses.
    """

    verifier: Verifier | None = None
    on_ignored: Callable[[str], object] | None = None
    forged: int = 0  # unsigned, or not signed by a trusted key
    invalid: int = 0  # signed (or signing off) but not a decision
    read: int = 0  # messages seen

    def decode(
        self, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None = ()
    ) -> Decision | None:
        """The decision in one message, or None (counted) when it is forged or invalid."""
        self.read += 1
        raw = value or b""
        if self.verifier is not None:
            signature = next((v for k, v in headers or () if k == SIGNATURE_HEADER), None)
            if (why := self.verifier.check(raw, signature)) is not None:
                self.forged += 1
                self._ignored(why)
                return None
        try:
            return decode_decision(raw)
        except ContractError as exc:
            self.invalid += 1
            self._ignored(exc.reason)
            return None

    def _ignored(self, reason: str) -> None:
        if self.on_ignored is not None:
            self.on_ignored(reason)


async def read_decisions(  # noqa: PLR0913 -- keyword-only options of the reader
    connection: Connection,
    feed: DecisionFeed,
    *,
    lookback: int | None = None,
    follow: bool = False,
    poll_seconds: float = 0.5,
    partition: int | None = None,
) -> AsyncIterator[list[Decision]]:
    """Batches of decisions, in each partition's order, from the last ``lookback`` messages of
    each partition (None: from the beginning).

    Without ``follow``, ends once every partition is read to the end it had at start; with
    it, keeps following and yields an empty batch after a quiet poll (so a live view can
    refresh its clocks). ``partition``: read that partition alone.
    """
    topic = connection.topic(DECISIONS_TOPIC)
    async with open_reader(connection) as consumer:
        partitions = await topic_partitions(consumer, topic)
        if partition is not None:
            partitions = [tp for tp in partitions if tp.partition == partition]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        firsts: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
        consumer.assign(partitions)
        for tp in partitions:
            start = firsts[tp] if lookback is None else max(firsts[tp], ends[tp] - lookback)
            consumer.seek(tp, start)
        remaining = {tp for tp in partitions if ends[tp] > firsts[tp]}
        while remaining or follow:
            batches = await consumer.getmany(timeout_ms=int(poll_seconds * 1000))
            out = [
                decision
                for messages in batches.values()
                for message in messages
                if (decision := feed.decode(message.value, message.headers)) is not None
            ]
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if out or follow:
                yield out
