"""The audit recorder: the one writer of ``canary.audit.v1``.

It reads ``canary.verdicts.v1``, ``canary.decisions.v1`` and ``canary.actuations.v1`` in a
consumer group of its own (``canarystream-audit``, behind the topic prefix) and appends one
:class:`~canarystream.contracts.audit.AuditRecord` per message to the deployment's chain.

Only what its writer signed is chained (:mod:`canarystream.audit.trust`): verdicts and
decisions with the worker's key, actuation reports with the key of the actuator instance they
name. Any other message is left out of the trail: counted
(``canarystream_audit_unverified_total``), logged, and dead-lettered to ``canary.deadletter.v1``
(reason ``unsigned``, ``bad_signature``, ``unknown_actuator`` or ``key_mismatch``: a genuine
message copied under another deployment's key; id ``topic/partition@offset``)
before its offset is committed, so a crash may dead-letter it twice under the same id, never
lose it.

Partitions. The three inputs and the audit topic have the same partition count and key, and
the record of a message read from partition p goes to partition p of the audit topic (named
explicitly, whatever partitioner the message's producer used). The group uses the range
assignor, which gives partition p of every topic a consumer subscribes to to the same member
(aiokafka's default, round robin, does not: with three members, partition 0 of the second
topic would go to another member than partition 0 of the first). So however many recorders
run, one owns partition p of all four topics, hence the chains stored there; the others
stand by. The recorder refuses to start when the four partition counts differ.

Crash safety. Each record is produced (acks=all, idempotent) and acknowledged before the
next is built, and a batch's input offsets are committed only after its records are
acknowledged. When given a partition (at start and after every rebalance) the recorder reads
its audit partition to the end (:class:`~canarystream.audit.heads.PartitionHeads`): the head
of every chain there and, per input, the offset after the last message recorded. It resumes
each input there (or at its committed offset, if later), and skips any message below it: a
crash between the acknowledgement and the commit neither loses nor doubles a record. A
failure to produce stops the recorder (its supervisor restarts it) rather than leave a hole
it would have to remember. On revocation it first finishes the batch in hand, so the next
owner reads a partition nobody is still writing.

Order. A consumer hands out each topic's messages in order, the topics in no order: the
messages of one partition are merged by their producer's time (:mod:`canarystream.audit.merge`),
so a recorder catching up on a backlog still appends a verdict before the decisions it let
happen and a decision before its actuation report.

Memory: one head per deployment of the partitions owned, plus one offset per input
partition. Starting costs a read of the owned audit partitions from their beginning.

What this cannot stop: a process that lost its partitions without noticing (stalled past the
session timeout) and still appends forks a chain, and ``audit verify`` reports the fork.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import cast

import orjson
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import start_http_server

from canarystream.audit.chain import Head, append, chain_name
from canarystream.audit.heads import PartitionHeads
from canarystream.audit.merge import PartitionMerge
from canarystream.audit.metrics import AuditMetrics
from canarystream.audit.reading import partition_count, read_to_end
from canarystream.audit.subject import read_subject
from canarystream.audit.trust import Refusal, TrailTrust
from canarystream.contracts.actuation import DeadLetter
from canarystream.contracts.audit import AuditKind
from canarystream.contracts.authn import message_credentials
from canarystream.contracts.topics import (
    ACTUATIONS_TOPIC,
    AUDIT_TOPIC,
    DEADLETTER_TOPIC,
    DECISIONS_TOPIC,
    VERDICTS_TOPIC,
)
from canarystream.errors import ConfigError
from canarystream.kafka.connection import Connection

__all__ = ["AUDITED", "AuditRecorder", "audit_group_id"]

log = logging.getLogger(__name__)

AUDITED: dict[str, AuditKind] = {
    VERDICTS_TOPIC: AuditKind.VERDICT,
    DECISIONS_TOPIC: AuditKind.DECISION,
    ACTUATIONS_TOPIC: AuditKind.ACTUATION,
}
"""The topics recorded (contract names) and the kind of record each carries."""

_TIES = {VERDICTS_TOPIC: 0, DECISIONS_TOPIC: 1, ACTUATIONS_TOPIC: 2}
"""Among messages of one millisecond: the verdict, then the decision, then the report."""


def audit_group_id(connection: Connection) -> str:
    """The recorders' consumer group.

    >>> from canarystream.settings import load_settings
    >>> audit_group_id(Connection(load_settings(topic_prefix="dev.")))
    'dev.canarystream-audit'
    """
    return f"{connection.settings.topic_prefix}canarystream-audit"


class AuditRecorder:
    """Appends every message of the audited topics to its deployment's chain.

    Parameters
    ----------
    connection:
        The cluster and the topic prefix.
    trust:
        The writers' keys: a message is chained only when its writer's signature verifies
        (:meth:`TrailTrust.unverified` takes every message unchecked).
    metrics:
        Where to count; a fresh registry when None.
    metrics_port, metrics_host:
        Serve ``/metrics`` there (0: any free port); None: no server.
    poll_seconds:
        Longest wait for messages, hence for noticing :meth:`stop`.
    """

    def __init__(  # noqa: PLR0913 -- keyword-only settings of the recorder
        self,
        connection: Connection,
        trust: TrailTrust,
        *,
        metrics: AuditMetrics | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        poll_seconds: float = 0.5,
    ) -> None:
        self.connection = connection
        self.trust = trust
        self.metrics = metrics or AuditMetrics()
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.poll_seconds = poll_seconds
        # Longest wait for another input's older messages (canarystream.audit.merge).
        self.hold_seconds = 2.0
        self.group_id = audit_group_id(connection)
        self.audit_topic = connection.topic(AUDIT_TOPIC)
        self.dead_letter_topic = connection.topic(DEADLETTER_TOPIC)
        self.kinds = {connection.topic(name): kind for name, kind in AUDITED.items()}
        # Set once the first assignment is rebuilt and positioned: from then on a message
        # produced to an input is recorded. A threading.Event, for supervisors in other threads.
        self.ready = threading.Event()
        self.metrics_address: tuple[str, int] | None = None
        self._partitions: dict[int, PartitionHeads] = {}  # owned and rebuilt
        self._pending: dict[int, PartitionMerge[ConsumerRecord[bytes, bytes]]] = {}
        self._lock = asyncio.Lock()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        """Stop after the batch in hand; safe from a signal handler and from any thread."""
        self._stopping = True

    async def run(self) -> None:
        """Record until :meth:`stop`."""
        await self._check_partitions()
        kwargs = self.connection.client_kwargs()
        consumer = AIOKafkaConsumer(
            **kwargs,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a trail starts with the oldest message kept
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        producer = AIOKafkaProducer(**kwargs, acks="all", enable_idempotence=True)
        server = None
        try:
            await producer.start()
            await consumer.start()
            consumer.subscribe(sorted(self.kinds), listener=_Listener(self))
            if self.metrics_port is not None:
                server, _ = start_http_server(
                    self.metrics_port, addr=self.metrics_host, registry=self.metrics.registry
                )
                # A TCP server's address: (host, port), the host a str.
                self.metrics_address = cast("tuple[str, int]", server.server_address[:2])
            log.info(
                "audit recorder consuming %s as group %s, appending to %s",
                ", ".join(sorted(self.kinds)),
                self.group_id,
                self.audit_topic,
            )
            while not self._stopping:
                batches = await consumer.getmany(
                    timeout_ms=int(self.poll_seconds * 1000), max_records=200
                )
                async with self._lock:
                    await self._rebuild_new(consumer)
                    done = await self._record(consumer, producer, batches)
                await self._commit(consumer, done)
        finally:
            self._stopping = True
            if server is not None:
                server.shutdown()
                server.server_close()
            try:
                await consumer.stop()
            finally:
                await producer.stop()
                log.info("audit recorder stopped")

    async def _check_partitions(self, patience: float = 15.0) -> None:
        topics = [*sorted(self.kinds), self.audit_topic]
        deadline = time.monotonic() + patience
        while True:
            counts = {topic: await partition_count(self.connection, topic) for topic in topics}
            # A topic created a moment ago may not be in the metadata yet.
            if None not in counts.values() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        if None in counts.values() or len(set(counts.values())) != 1:
            found = ", ".join(f"{topic}: {n}" for topic, n in counts.items())
            raise ConfigError(
                "the audited topics and the audit topic must exist with one partition count "
                f"(partition p of each is recorded to partition p of the trail); found {found}"
            )

    async def _rebuild_new(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        owned = {tp.partition for tp in assigned if tp.topic in self.kinds}
        new: dict[int, list[TopicPartition]] = {}
        for partition in sorted(owned - self._partitions.keys()):
            tps = [TopicPartition(topic, partition) for topic in sorted(self.kinds)]
            if all(tp in assigned for tp in tps):
                new[partition] = tps
            else:  # only with unequal partition counts, refused at start; never write half
                log.error("partition %d of the inputs is split between recorders", partition)
        if new:
            ends = await consumer.end_offsets([tp for tps in new.values() for tp in tps])
            rebuilt = {
                partition: PartitionHeads(partition, {tp.topic: ends[tp] for tp in tps})
                for partition, tps in new.items()
            }
            async for message in read_to_end(self.connection, self.audit_topic, sorted(new)):
                if (reason := rebuilt[message.partition].learn(message.value)) is not None:
                    self.metrics.ignored.labels(reason).inc()
                    log.warning(
                        "%s/%d@%d is left out of the chains' heads: %s",
                        self.audit_topic,
                        message.partition,
                        message.offset,
                        reason,
                    )
            ranks = {self.connection.topic(name): rank for name, rank in _TIES.items()}
            for partition, heads in rebuilt.items():
                await self._resume(consumer, heads, new[partition])
                self._partitions[partition] = heads
                self._pending[partition] = PartitionMerge(ranks, self.hold_seconds)
        self._count_chains()
        if self._partitions and not self.ready.is_set():
            try:
                for tp in assigned:
                    await consumer.position(tp)
            except IllegalStateError:
                return  # revoked meanwhile: try again after the next poll
            self.ready.set()

    async def _resume(
        self, consumer: AIOKafkaConsumer, heads: PartitionHeads, tps: list[TopicPartition]
    ) -> None:
        """Position each input after its last message recorded (or its commit, if later)."""
        for tp in tps:
            committed = await consumer.committed(tp)
            if tp.topic in heads.next_offsets or committed is not None:
                start = max(heads.next_offsets.get(tp.topic, 0), committed or 0)
                heads.next_offsets[tp.topic] = start
                consumer.seek(tp, start)
            else:
                await consumer.seek_to_beginning(tp)
        log.info(
            "audit partition %d: %d chains, resuming at %s",
            heads.partition,
            len(heads.heads),
            ", ".join(f"{t}@{o}" for t, o in sorted(heads.next_offsets.items())) or "the start",
        )

    async def _record(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> dict[TopicPartition, int]:
        """Queue the batches, then append what each partition's merge releases."""
        done: dict[TopicPartition, int] = {}
        assigned = consumer.assignment()
        for tp, messages in batches.items():
            heads = self._partitions.get(tp.partition)
            if heads is None or tp not in assigned:
                continue  # not rebuilt yet (its seek will fetch these again) or revoked
            start = heads.next_offsets.get(tp.topic, 0)
            self.metrics.skipped.inc(self._pending[tp.partition].add(tp.topic, messages, start))
        for partition, merge in self._pending.items():
            if not merge:
                continue
            heads = self._partitions[partition]
            caught_up = {
                topic: await self._caught_up(consumer, TopicPartition(topic, partition))
                for topic in self.kinds
            }
            for topic, message in merge.release(caught_up.__getitem__, time.monotonic()):
                await self._append(producer, heads, message)
                heads.next_offsets[topic] = message.offset + 1
                done[TopicPartition(topic, partition)] = message.offset + 1
        return done

    @staticmethod
    async def _caught_up(consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
        """Whether the consumer has read all the broker held of ``tp`` at its last fetch."""
        end = consumer.last_stable_offset(tp)
        if end is None or end < 0:
            end = consumer.highwater(tp)
        try:
            return end is not None and await consumer.position(tp) >= end
        except IllegalStateError:  # revoked meanwhile: its messages are not appended here
            return False

    async def _append(
        self,
        producer: AIOKafkaProducer,
        heads: PartitionHeads,
        message: ConsumerRecord[bytes, bytes],
    ) -> None:
        raw = message.value or b""
        kind = self.kinds[message.topic]
        refusal = self.trust.check(
            kind, raw, message_credentials(message.headers)[1]
        ) or self.trust.filed(kind, raw, message.key)
        if refusal is not None:
            await self._set_aside(producer, message, refusal)
            return
        subject = read_subject(kind, raw)
        deployment = chain_name(message.key)
        record = append(
            heads.heads.get(deployment),
            deployment=deployment,
            source=f"{message.topic}/{message.partition}@{message.offset}",
            ts=message.timestamp / 1000 if message.timestamp is not None else None,
            subject=subject,
        )
        value = orjson.dumps(record)
        await producer.send_and_wait(
            self.audit_topic, value, key=message.key, partition=message.partition
        )
        heads.heads[deployment] = Head.of(record)
        self.metrics.records.labels(subject.kind.value).inc()
        if subject.kind is AuditKind.UNREADABLE:
            self.metrics.unreadable.labels(message.topic).inc()
            log.warning(
                "recorded %s/%d@%d as unreadable: %s",
                message.topic,
                message.partition,
                message.offset,
                subject.detail,
            )

    async def _set_aside(
        self,
        producer: AIOKafkaProducer,
        message: ConsumerRecord[bytes, bytes],
        refusal: Refusal,
    ) -> None:
        """Count, log and dead-letter a message its writer did not sign; it is not chained."""
        source = f"{message.topic}/{message.partition}@{message.offset}"
        letter = DeadLetter.for_message(
            message.value or b"",
            reason=refusal.reason,
            detail=f"left out of the audit trail: {refusal.detail}",
            source=source,
            ts=time.time(),
        )
        # Unkeyed, as every dead letter: a flood spreads over the topic's partitions.
        await producer.send_and_wait(
            self.dead_letter_topic, orjson.dumps(letter.model_dump(mode="json"))
        )
        self.metrics.unverified.labels(message.topic, refusal.reason).inc()
        log.warning("left %s out of the trail (%s): %s", source, refusal.reason, refusal.detail)

    async def _commit(self, consumer: AIOKafkaConsumer, done: dict[TopicPartition, int]) -> None:
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in done.items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # The next owner reads the trail and skips what it already holds.
            log.warning("commit failed after a rebalance: %s", exc)

    def _count_chains(self) -> None:
        self.metrics.chains.set(sum(len(p.heads) for p in self._partitions.values()))

    async def _revoked(self, revoked: Sequence[TopicPartition]) -> None:
        async with self._lock:  # the batch in hand is acknowledged before anyone else writes
            for partition in {tp.partition for tp in revoked}:
                self._partitions.pop(partition, None)
                self._pending.pop(partition, None)  # not committed: the next owner reads them
            self._count_chains()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka: no type information
    def __init__(self, recorder: AuditRecorder) -> None:
        self.recorder = recorder

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self.recorder._revoked(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Rebuilt by the loop before it records anything of them."""
