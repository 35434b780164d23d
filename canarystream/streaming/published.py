"""What the decisions topic already holds, so a recovering worker does not publish twice.

A worker publishes a batch's decisions, waits for the broker's acknowledgement, and only then
stores the state that produced them. If it dies in between, the worker that takes over replays
those messages and decides the same things again (decisions are deterministic). This index,
fed by a reader of the whole decisions topic outside any consumer group, remembers the highest
``seq`` published per deployment; the worker skips a decision whose ``seq`` is not above it.
When decisions are signed, only messages whose signature verifies with the worker's key count:
a forged decision on the topic (unsigned, or signed with another key) must not silence the
genuine one with its ``seq``. Such messages are ignored, counted (``on_unverified``, the
worker's ``canarystream_decisions_unverified_total``) and logged (the first
:data:`LOGGED` of them, then one in a thousand).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from canarystream.contracts.signing import SIGNATURE_HEADER, Verifier

__all__ = ["PublishedIndex"]

log = logging.getLogger(__name__)
LOGGED = 10  # forged decisions logged one by one before the log thins out


class PublishedIndex:
    """Highest published ``seq`` per deployment, from the decisions topic and our own sends."""

    def __init__(
        self,
        verifier: Verifier | None = None,
        on_unverified: Callable[[], object] | None = None,
    ) -> None:
        self._seq: dict[str, int] = {}
        self._verifier = verifier
        self._on_unverified = on_unverified
        self.ready = asyncio.Event()
        self.unverified = 0  # messages on the topic that did not verify (not counted)

    def seen(self, deployment: str, seq: int) -> bool:
        """True if a decision with this or a later ``seq`` of the deployment is published."""
        return self._seq.get(deployment, -1) >= seq

    def add(self, deployment: str, seq: int) -> None:
        if seq > self._seq.get(deployment, -1):
            self._seq[deployment] = seq

    def add_message(self, value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """Count one message of the decisions topic, if it is a genuine decision."""
        if not value:
            return
        if self._verifier is not None:
            signature = next((v for k, v in headers if k == SIGNATURE_HEADER), None)
            why = self._verifier.check(value, signature)
            if why is not None:
                self._ignore(why)
                return
        try:
            record = orjson.loads(value)
            deployment, seq = record["deployment"], record["seq"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return  # not ours to judge: the decisions topic is written by workers only
        if type(deployment) is str and type(seq) is int:
            self.add(deployment, seq)

    def _ignore(self, why: str) -> None:
        """A message of the decisions topic that this worker did not sign."""
        self.unverified += 1
        if self._on_unverified is not None:
            self._on_unverified()
        if self.unverified <= LOGGED or not self.unverified % 1000:
            log.warning(
                "decisions topic: ignored a message not signed by this worker's key (%s); "
                "%d so far",
                why,
                self.unverified,
            )

    async def follow(
        self, topic: str, client_kwargs: dict[str, Any], *, lookback: int = 5000
    ) -> None:
        """Read the last ``lookback`` messages of each partition, then keep following.

        Sets :attr:`ready` once the reader has caught up with the ends it saw at start.
        """
        consumer = AIOKafkaConsumer(
            **client_kwargs,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        try:
            await consumer.start()
            partitions = await _partitions(consumer, topic)
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, max(starts[tp], ends[tp] - lookback))
            pending = {tp for tp in partitions if ends[tp] > starts[tp]}
            if not pending:
                self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, messages in batches.items():
                    for message in messages:
                        self.add_message(message.value, message.headers or ())
                    if tp in pending and await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
                if not pending and not self.ready.is_set():
                    self.ready.set()
        except asyncio.CancelledError:
            raise
        except KafkaError:
            log.exception("reading %s failed; recovered workers may publish duplicates", topic)
            self.ready.set()
        finally:
            with contextlib.suppress(KafkaError):
                await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    client = consumer._client
    client.add_topic(topic)
    for _ in range(50):
        await client.force_metadata_update()
        found = client.cluster.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        await asyncio.sleep(0.1)
    raise KafkaError(f"topic {topic} does not exist")
