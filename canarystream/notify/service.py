"""``canarystream notify``: a consumer group of its own on the decisions topic, sending webhooks.

The notifier reads ``canary.decisions.v1`` in the group ``canarystream-notify-<name>`` (behind
the topic prefix), so it sees every decision without taking any from the actuators. Per
message, in partition order: verify it with the worker's key (a forged or unsigned decision is
counted and never notifies anyone: it could otherwise page a person, or mark a genuine
decision's id as sent), hand it to the :class:`~canarystream.notify.notifier.Notifier`, and
only then commit its offset.

Deduplication survives restarts: when a partition is assigned, before its first message is
handled, the ids of the genuine decisions among the last ``dedup_window`` messages before its
committed offset are read back into the window -- those were handled. A decision a recovered worker
publishes again after them is then recognised. Delivery is at least once: a crash between a
send and its commit sends that one notification again, with the same ``Idempotency-Key``
(and, for PagerDuty, the same ``dedup_key``).

A group that has never committed starts at the end of the topic: a new notifier tells people
about what happens from now on, not about last month.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Collection
from typing import Any, Literal, cast

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import CollectorRegistry, start_http_server

from canarystream.contracts.signing import Verifier
from canarystream.contracts.topics import DECISIONS_TOPIC
from canarystream.errors import ConfigError
from canarystream.kafka.connection import Connection
from canarystream.kafka.control import open_reader
from canarystream.kafka.decisions import DecisionFeed
from canarystream.notify.config import NotifyConfig
from canarystream.notify.metrics import NotifyMetrics
from canarystream.notify.notifier import Notifier
from canarystream.notify.sender import WebhookSender

__all__ = ["NotifyService", "notify_group_id"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def notify_group_id(connection: Connection, name: str) -> str:
    """The consumer group of the notifiers called ``name``.

    >>> from canarystream.settings import load_settings
    >>> notify_group_id(Connection(load_settings(topic_prefix="dev.")), "default")
    'dev.canarystream-notify-default'
    """
    if not _NAME.match(name):
        raise ConfigError(f"name: {name!r} must be lower-case letters, digits, '.', '_', '-'")
    return f"{connection.settings.topic_prefix}canarystream-notify-{name}"


class NotifyService:
    """Consumes decisions as the group ``canarystream-notify-<name>`` and notifies.

    ``verifier``: the worker's key(s); None only in insecure mode (every decision believed).
    ``metrics_port``: serve ``/metrics`` there (0: any free port); None: no server.
    """

    def __init__(  # noqa: PLR0913 -- keyword-only settings of the consumer
        self,
        config: NotifyConfig,
        connection: Connection,
        verifier: Verifier | None,
        *,
        name: str = "default",
        metrics: NotifyMetrics | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        start_from: Literal["latest", "earliest"] = "latest",
        poll_seconds: float = 0.5,
    ) -> None:
        self.config = config
        self.connection = connection
        self.verifier = verifier
        self.group_id = notify_group_id(connection, name)
        self.metrics = metrics or NotifyMetrics(CollectorRegistry())
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.start_from = start_from
        self.poll_seconds = poll_seconds
        self.topic = connection.topic(DECISIONS_TOPIC)
        self.feed = DecisionFeed(verifier, on_ignored=self._ignored)
        self.ready = threading.Event()  # partitions assigned, positioned, window rebuilt
        self.metrics_address: tuple[str, int] | None = None
        self.notifier: Notifier | None = None
        self._stopping = False
        # Partitions whose dedup window was rebuilt since they were assigned.
        self._rebuilt: set[TopicPartition] = set()

    def _longest_seconds(self) -> float:
        """The longest one decision's notifications can take, every route retried."""
        deadline = self.config.retry.deadline
        return sum(deadline + route.timeout_seconds for route in self.config.routes)

    def _ignored(self, reason: str) -> None:
        self.metrics.ignored.labels(reason=reason).inc()
        log.warning("decisions topic: ignored a message (%s): it notifies nobody", reason)

    def stop(self) -> None:
        """Stop after the message in hand; safe from any thread or a signal handler."""
        self._stopping = True

    async def run(self) -> None:
        """Consume until :meth:`stop`; commit each message once its notifications are out."""
        consumer = AIOKafkaConsumer(
            **self.connection.client_kwargs(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.start_from,
            isolation_level="read_committed",
            # Each route's webhook may be retried up to the deadline (plus one try's timeout)
            # while one message is in hand: the group must not think this consumer stuck.
            max_poll_interval_ms=int(1000 * max(300.0, self._longest_seconds() + 60.0)),
        )
        server = None
        async with WebhookSender(self.config.retry.policy()) as sender:
            notifier = Notifier(self.config, sender, self.metrics)
            self.notifier = notifier
            consumer.subscribe([self.topic], listener=_Revoked(self._rebuilt))
            try:
                await consumer.start()
                if self.metrics_port is not None:
                    server, _ = start_http_server(
                        self.metrics_port, addr=self.metrics_host, registry=self.metrics.registry
                    )
                    self.metrics_address = cast("tuple[str, int]", server.server_address[:2])
                log.info("notifier consuming %s as group %s", self.topic, self.group_id)
                while not self._stopping:
                    batches = await consumer.getmany(
                        timeout_ms=int(self.poll_seconds * 1000), max_records=50
                    )
                    if not self.ready.is_set():
                        await self._position(consumer, batches)
                    if fresh := [tp for tp in batches if tp not in self._rebuilt]:
                        await self.rebuild(consumer, notifier, fresh)
                        self._rebuilt.update(fresh)
                    for tp, messages in batches.items():
                        for message in messages:
                            if self._stopping or tp not in consumer.assignment():
                                break  # uncommitted: delivered again to the next owner
                            decision = self.feed.decode(message.value, message.headers)
                            if decision is not None:
                                await notifier.handle(decision, str(tp.partition))
                            await self._commit(consumer, tp, message.offset + 1)
            finally:
                if server is not None:
                    server.shutdown()
                    server.server_close()
                await consumer.stop()
                log.info("notifier stopped")

    async def _position(self, consumer: AIOKafkaConsumer, batches: Collection[Any]) -> None:
        """Resolve the start of every assigned partition and commit it where the group had
        no offset: "latest" then means the group's first start, not every start until a
        partition's first decision (one published while no notifier ran would be lost)."""
        assigned = consumer.assignment()
        if not assigned:
            return
        starts: dict[TopicPartition, int] = {}
        try:
            for tp in assigned:
                position = await consumer.position(tp)
                if tp not in batches and await consumer.committed(tp) is None:
                    starts[tp] = position
        except IllegalStateError:
            return
        if starts:
            await self._commit_all(consumer, starts)
        self.ready.set()
        log.info("notifier ready: %d partitions of %s assigned", len(assigned), self.topic)

    async def _commit_all(
        self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
    ) -> None:
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            log.warning("commit of the start offsets failed after a rebalance: %s", exc)

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({tp: offset})
        except CommitFailedError as exc:
            log.warning("commit of %s@%d failed after a rebalance: %s", tp, offset, exc)

    async def rebuild(
        self, consumer: AIOKafkaConsumer, notifier: Notifier, assigned: Collection[TopicPartition]
    ) -> int:
        """Remember the ids of the genuine decisions of the last ``dedup_window`` messages
        before each assigned partition's committed offset; how many were read."""
        ends: dict[TopicPartition, int] = {}
        for tp in assigned:
            if committed := await consumer.committed(tp):
                ends[tp] = committed
        if not ends:
            return 0
        feed = DecisionFeed(self.verifier)  # history: not counted again in the metrics
        async with open_reader(self.connection) as reader:
            firsts = await reader.beginning_offsets(list(ends))
            reader.assign(list(ends))
            for tp, end in ends.items():
                reader.seek(tp, max(firsts[tp], end - self.config.dedup_window))
            remaining = {tp: end for tp, end in ends.items() if firsts[tp] < end}
            read = 0
            while remaining:
                batches: dict[Any, list[Any]] = await reader.getmany(timeout_ms=500)
                # Messages after the committed offset are not handled yet.
                handled = [m for tp, ms in batches.items() for m in ms if m.offset < ends[tp]]
                for message in handled:
                    if (decision := feed.decode(message.value, message.headers)) is not None:
                        notifier.remember(decision.decision_id, str(message.partition))
                read += len(handled)
                for tp in list(remaining):
                    if await reader.position(tp) >= remaining[tp]:
                        del remaining[tp]
        log.info("dedup window rebuilt from %d handled messages", read)
        return read


class _Revoked(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka: no type information
    """Forgets that a revoked partition's window was rebuilt: when it comes back, another
    notifier may have handled its messages meanwhile, so it is read back again."""

    def __init__(self, rebuilt: set[TopicPartition]) -> None:
        self.rebuilt = rebuilt

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self.rebuilt.difference_update(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        return None
