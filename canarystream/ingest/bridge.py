"""``canarystream bridge otlp``: the Collector's OTLP topics in, canarystream telemetry out.

A consumer group (``canarystream-otlp-bridge`` behind the topic prefix) reads the OTLP topics
the OpenTelemetry Collector's Kafka exporter writes (``otlp_spans`` and ``otlp_metrics`` by
default; their names are the Collector's, so no prefix applies), converts each message with
:func:`canarystream.ingest.otlp.convert`, and produces the events to ``canary.telemetry.v1``
through :class:`~canarystream.kafka.publisher.EventPublisher`: keyed by service and batched
as JSON arrays, as the worker expects (the exporter keys nothing by service). A message that
is no OTLP export request is dead-lettered with its reason.

Delivery is at least once: a polled batch's offsets are committed only after all its events
and dead letters are acknowledged (``acks=all``); a crash or a failed produce in between
leaves them uncommitted, and the batch is converted and produced again by whoever owns the
partitions next. Its events may then reach the worker twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError
from prometheus_client import start_http_server

from canarystream.contracts.actuation import DeadLetter
from canarystream.contracts.topics import DEADLETTER_TOPIC
from canarystream.errors import ContractError
from canarystream.ingest.conversion import IngestOptions
from canarystream.ingest.decode import Encoding, Signal
from canarystream.ingest.metrics import BridgeMetrics
from canarystream.ingest.otlp import convert
from canarystream.kafka.connection import Connection
from canarystream.kafka.publisher import EventPublisher

__all__ = ["BridgeConfig", "Converted", "OtlpBridge", "Record", "bridge_group_id"]

log = logging.getLogger(__name__)


class Record(Protocol):
    """What the bridge reads of a consumed message (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class BridgeConfig:
    """The OTLP topics, their encoding, and how resources name service and version."""

    traces_topic: str = "otlp_spans"
    metrics_topic: str = "otlp_metrics"
    encoding: Encoding = "otlp_proto"
    options: IngestOptions = field(default_factory=IngestOptions)
    batch: int = 500  # events of one service per telemetry message, at most

    def __post_init__(self) -> None:
        if self.traces_topic == self.metrics_topic:
            raise ValueError("the traces and metrics topics must differ")
        if self.batch < 1:
            raise ValueError("batch must be at least 1")

    def signal_of(self, topic: str) -> Signal:
        """Which signal a topic carries."""
        return "traces" if topic == self.traces_topic else "metrics"


@dataclass
class Converted:
    """What a polled batch gives: events to produce and dead letters, in message order."""

    events: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def bridge_group_id(connection: Connection) -> str:
    """The bridge's consumer group.

    >>> from canarystream.settings import load_settings
    >>> bridge_group_id(Connection(load_settings(topic_prefix="dev.")))
    'dev.canarystream-otlp-bridge'
    """
    return f"{connection.settings.topic_prefix}canarystream-otlp-bridge"


class OtlpBridge:
    """Consumes the OTLP topics and republishes them as canarystream telemetry."""

    def __init__(  # noqa: PLR0913 -- keyword-only settings of the consumer
        self,
        connection: Connection,
        config: BridgeConfig,
        *,
        metrics: BridgeMetrics | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        start_from: Literal["latest", "earliest"] = "latest",
        poll_seconds: float = 0.5,
    ) -> None:
        self.connection = connection
        self.config = config
        self.metrics = metrics or BridgeMetrics()
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.start_from = start_from
        self.poll_seconds = poll_seconds
        self.metrics_address: tuple[str, int] | None = None
        self._stopping = False

    def stop(self) -> None:
        """Stop after the batch in hand; safe from a signal handler."""
        self._stopping = True

    def convert_batch(self, records: Iterable[Record]) -> Converted:
        """Convert polled messages (no I/O); count each one, its spans and its points."""
        found = Converted()
        for record in records:
            signal = self.config.signal_of(record.topic)
            try:
                if record.value is None:
                    raise ContractError("a record without a value", reason="no_value")
                conversion = convert(
                    record.value, signal, self.config.encoding, self.config.options
                )
            except ContractError as exc:
                found.dead_letters.append(self._dead_letter(record, exc))
                self.metrics.dead_lettered(signal, exc.reason)
                continue
            except Exception as exc:  # a bug met on this input: set it aside, go on
                log.exception(
                    "internal error converting %s/%d@%d",
                    record.topic,
                    record.partition,
                    record.offset,
                )
                error = ContractError(f"{type(exc).__name__}: {exc}", reason="internal_error")
                found.dead_letters.append(self._dead_letter(record, error))
                self.metrics.dead_lettered(signal, error.reason)
                continue
            self.metrics.converted(signal, conversion)
            found.events.extend(conversion.events)
        return found

    def _dead_letter(self, record: Record, exc: ContractError) -> DeadLetter:
        source = f"{record.topic}/{record.partition}@{record.offset}"
        log.warning("dead-lettered %s (%s): %s", source, exc.reason, exc)
        return DeadLetter.for_message(
            record.value or b"",
            reason=exc.reason,
            detail=f"{self.config.encoding}: {exc}",
            source=source,
            ts=time.time(),
        )

    async def publish(self, publisher: EventPublisher, converted: Converted) -> None:
        """Produce a batch's events and dead letters; return once all are acknowledged."""
        if converted.events:
            await publisher.send(converted.events, batch=self.config.batch)
            for event in converted.events:
                self.metrics.published.labels(event["type"]).inc()
        for letter in converted.dead_letters:
            # Unkeyed, as every dead letter: a flood spreads over the topic's partitions.
            await publisher.send_raw(DEADLETTER_TOPIC, orjson.dumps(letter.model_dump(mode="json")))

    async def run(self) -> None:
        """Consume until :meth:`stop`; commit each batch once its output is acknowledged."""
        consumer = AIOKafkaConsumer(
            **self.connection.client_kwargs(),
            group_id=bridge_group_id(self.connection),
            enable_auto_commit=False,
            auto_offset_reset=self.start_from,
            max_partition_fetch_bytes=8 << 20,
        )
        server = None
        consumer.subscribe([self.config.traces_topic, self.config.metrics_topic])
        async with EventPublisher(self.connection) as publisher:
            try:
                await consumer.start()
                if self.metrics_port is not None:
                    server, _ = start_http_server(
                        self.metrics_port, addr=self.metrics_host, registry=self.metrics.registry
                    )
                    self.metrics_address = cast("tuple[str, int]", server.server_address[:2])
                log.info(
                    "bridge consuming %s", [self.config.traces_topic, self.config.metrics_topic]
                )
                while not self._stopping:
                    batches = await consumer.getmany(
                        timeout_ms=int(self.poll_seconds * 1000), max_records=200
                    )
                    if not batches:
                        continue
                    records = [record for messages in batches.values() for record in messages]
                    await self.publish(publisher, self.convert_batch(records))
                    ends = {tp: messages[-1].offset + 1 for tp, messages in batches.items()}
                    await self._commit(consumer, ends)
            finally:
                if server is not None:
                    server.shutdown()
                    server.server_close()
                await consumer.stop()
                log.info("bridge stopped")

    async def _commit(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in ends.items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # Revoked meanwhile: the next owner converts the batch again (at least once).
            log.warning("commit failed after a rebalance: %s", exc)
