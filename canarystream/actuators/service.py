"""The actuator service: a Kafka consumer loop that feeds decisions to one handler.

The handler is any :class:`~canarystream.actuators.base.Handler`: the traffic
:class:`~canarystream.actuators.executor.Actuator` around a backend of the registry, or the
:class:`~canarystream.actuators.hooks.HookActuator`; the loop knows nothing of which.

Each backend instance reads ``canary.decisions.v1`` in a consumer group of its own
(``canarystream-actuator-<backend>-<name>``, behind the topic prefix), so every router or
flag service sees every decision; instances that share a backend kind and a name share the
work instead (for high availability of one backend).

Per message, in partition order:

1. decode it with :func:`~canarystream.contracts.codec.decode_decision`;
2. hand the decision, its signature header and the **exact message bytes** (what the worker
   signed) to the handler, which verifies it, refuses it when its service is out of the
   handler's scope or it is too old, fences it and carries it out;
3. publish the :class:`~canarystream.contracts.actuation.ActuationReport` on
   ``canary.actuations.v1`` keyed by deployment, wait for the broker's ack, and only then
   commit the message's offset.

Every report names this instance (``actuator``: ``kind/name``). At start, and whenever
partitions of the decisions topic are assigned, before any decision is consumed, the
handler's fence is rebuilt from this instance's reports on ``canary.actuations.v1``
(:class:`~canarystream.actuators.recovery.FenceRecovery`): after a restart or a rebalance an
old decision replayed is still refused as stale or duplicate, and hooks whose intent was
recorded are never run again.

Delivery is at least once: a crash between applying and publishing the report redelivers the
decision, which sets the same share again (apply is idempotent; hooks are protected by their
intent, published before they run). A failure to publish a report stops the service (the
supervisor restarts it) rather than commit a decision nobody heard about.

A message that is not a decision gets no report (it has no deployment or seq to report on).
If it is unsigned or forged it is only counted (``unsigned``, ``bad_signature``): nobody
trusted wrote it, and dead-lettering a flood once per actuator group would amplify it. If it
is correctly signed (or signing is off) it is a contract mismatch between worker and
actuator that needs a person: counted as ``invalid_decision`` and dead-lettered.

A group that has never committed starts at the end of the topic (``start_from="latest"``): a
new actuator acts on decisions made from then on, never on 30 days of history, which would
replay old rollouts' weights onto today's servers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Collection, Sequence
from typing import Any, Literal, cast

import orjson
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import CollectorRegistry, start_http_server

from canarystream.actuators.base import Handler
from canarystream.actuators.metrics import ActuationMetrics
from canarystream.actuators.recovery import FenceRecovery
from canarystream.actuators.routing import encode_shift, observed_shift
from canarystream.contracts.actuation import ActuationReport, DeadLetter
from canarystream.contracts.authn import signed_headers
from canarystream.contracts.codec import decode_decision
from canarystream.contracts.decision import Decision
from canarystream.contracts.signing import SIGNATURE_HEADER, Signer
from canarystream.contracts.topics import (
    ACTUATIONS_TOPIC,
    DEADLETTER_TOPIC,
    DECISIONS_TOPIC,
    DEPLOYMENTS_TOPIC,
)
from canarystream.errors import ConfigError, ContractError
from canarystream.kafka.connection import Connection

__all__ = ["ActuatorService", "group_id_for"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def group_id_for(connection: Connection, backend: str, name: str) -> str:
    """The consumer group of one actuator instance.

    >>> from canarystream.settings import load_settings
    >>> group_id_for(Connection(load_settings(topic_prefix="dev.")), "haproxy", "edge-1")
    'dev.canarystream-actuator-haproxy-edge-1'
    """
    if not _NAME.match(name):
        raise ConfigError(f"name: {name!r} must be lower-case letters, digits, '.', '_', '-'")
    return f"{connection.settings.topic_prefix}canarystream-actuator-{backend}-{name}"


class ActuatorService:
    """Consumes decisions, carries them out with ``handler`` and publishes the reports.

    Parameters
    ----------
    handler:
        Carries out each decision; given an :class:`ActuationMetrics` on a fresh registry
        when it has none.
    connection:
        The cluster and the topic prefix.
    name:
        Names this instance's consumer group together with the backend kind.
    metrics_port, metrics_host:
        Serve ``/metrics`` of the actuator's registry there (0: any free port); None: no
        server.
    start_from:
        Where a group without committed offsets starts (``latest``: decisions from now on).
    poll_seconds:
        Longest wait for messages, hence for noticing :meth:`stop`.
    report_signer:
        This instance's own key: it signs each report (header ``canarystream-signature``) and
        the fence is rebuilt from signed reports only. None: reports are unsigned, and any
        report naming this instance counts.
    principal:
        The principal whose key ``report_signer`` holds: it signs the ``traffic_shifted``
        published after each applied change (headers ``canarystream-principal`` and
        ``canarystream-signature``), which the worker's access file must grant ``route``.
        None: shifts are published unsigned (a worker without an access file obeys them).
    """

    def __init__(  # noqa: PLR0913 -- keyword-only settings of the consumer
        self,
        handler: Handler,
        connection: Connection,
        *,
        name: str = "default",
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",  # this host only, unless configured otherwise
        start_from: Literal["latest", "earliest"] = "latest",
        poll_seconds: float = 0.5,
        report_signer: Signer | None = None,
        principal: str | None = None,
    ) -> None:
        if handler.metrics is None:
            handler.metrics = ActuationMetrics(CollectorRegistry())
        self.handler = handler
        self.metrics: ActuationMetrics = handler.metrics
        self.connection = connection
        self.name = name
        self.group_id = group_id_for(connection, handler.kind, name)
        self.actuator = f"{handler.kind}/{name}"  # names this instance in its reports
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.start_from = start_from
        self.poll_seconds = poll_seconds
        self.report_signer = report_signer
        self.principal = principal
        self.deployments_topic = connection.topic(DEPLOYMENTS_TOPIC)
        self.decisions_topic = connection.topic(DECISIONS_TOPIC)
        self.actuations_topic = connection.topic(ACTUATIONS_TOPIC)
        self.deadletter_topic = connection.topic(DEADLETTER_TOPIC)
        # Set once partitions are assigned and positioned: from then on, a decision
        # produced is seen. A threading.Event, so supervisors and tests in other threads
        # can wait on it.
        self.ready = threading.Event()
        self.metrics_address: tuple[str, int] | None = None
        #: The decision partitions this instance owns, set once its fence has caught up with
        #: the reports on them.
        self.assignment: frozenset[int] = frozenset()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None

    def stop(self) -> None:
        """Stop after the decision in hand (a gradual rollback in progress finishes at once).

        Safe from a signal handler and from any thread.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            self._stopping = True
            return
        if _running_loop() is loop:
            self._request_stop()
        else:
            loop.call_soon_threadsafe(self._request_stop)

    def _request_stop(self) -> None:
        self._stopping = True
        self.handler.hurry()
        if self._wakeup is not None:
            self._wakeup.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`; commit each message after its report is acked."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        kwargs = self.connection.client_kwargs()
        consumer = AIOKafkaConsumer(
            **kwargs,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.start_from,
            isolation_level="read_committed",
            # A gradual rollback may hold one message for minutes: the group must not
            # think this consumer stuck and hand its partitions to another meanwhile.
            max_poll_interval_ms=int(1000 * max(300.0, self.handler.longest_seconds + 60.0)),
        )
        producer = AIOKafkaProducer(**kwargs, acks="all", enable_idempotence=True)
        signer = self.report_signer
        recovery = FenceRecovery(
            self.connection,
            self.actuations_topic,
            self.actuator,
            self.handler.remember,
            verifier=None if signer is None else signer.verifier(),
        )
        server = None
        try:
            await producer.start()
            await recovery.start()
            partitions = len(await producer.partitions_for(self.actuations_topic))
            await recovery.catch_up(partitions)
            consumer.subscribe(
                [self.decisions_topic], listener=_CatchUp(self, recovery, partitions)
            )
            self.handler.recorder = lambda report: self._publish(producer, report)
            await consumer.start()
            if self.metrics_port is not None:
                server, _ = start_http_server(
                    self.metrics_port, addr=self.metrics_host, registry=self.metrics.registry
                )
                # A TCP server's address: (host, port), the host a str.
                self.metrics_address = cast("tuple[str, int]", server.server_address[:2])
            log.info(
                "actuator %s (%s: %s) consuming %s as group %s",
                self.name,
                self.handler.kind,
                self.handler.describe(),
                self.decisions_topic,
                self.group_id,
            )
            while not self._stopping:
                batches = await self._poll(consumer)
                if not self.ready.is_set():
                    await self._position(consumer)
                for tp, messages in batches.items():
                    for message in messages:
                        if self._stopping or tp not in consumer.assignment():
                            break  # uncommitted: the partition's next owner takes it
                        await self.handle(message, producer)
                        await self._commit(consumer, tp, message.offset + 1)
        finally:
            self._stopping = True
            if server is not None:
                server.shutdown()
                server.server_close()
            try:
                await consumer.stop()  # leaves the group: partitions move on at once
            finally:
                try:
                    await recovery.stop()
                    await producer.stop()
                finally:
                    await self.handler.close()
                    log.info("actuator %s stopped", self.name)

    async def handle(
        self, message: ConsumerRecord[bytes, bytes], producer: AIOKafkaProducer
    ) -> ActuationReport | None:
        """Carry out one message and publish its report (or dead letter); None if no report."""
        raw: bytes = message.value or b""
        signature = _header(message.headers, SIGNATURE_HEADER)
        try:
            decision = decode_decision(raw)
        except ContractError as exc:
            await self._undecodable(raw, signature, exc, producer)
            return None
        report = await self.handler.actuate(decision, signature, raw)
        await self._publish_shift(producer, decision, report)
        report = await self._publish(producer, report)
        log.info(
            "%s seq %d %s: %s: %s",
            decision.deployment,
            decision.seq,
            decision.action.value,
            report.status.value,
            report.detail,
        )
        return report

    async def _publish(
        self, producer: AIOKafkaProducer, report: ActuationReport
    ) -> ActuationReport:
        """Publish ``report`` under this instance's name (signed with its key, if it has one),
        keyed by deployment; return once the broker acknowledged it."""
        report = report.model_copy(update={"actuator": self.actuator})
        value = orjson.dumps(report.model_dump(mode="json"))
        signer = self.report_signer
        headers = [] if signer is None else [(SIGNATURE_HEADER, signer.sign(value).encode())]
        await producer.send_and_wait(
            self.actuations_topic, value, key=report.deployment.encode("utf-8"), headers=headers
        )
        return report

    async def _publish_shift(
        self, producer: AIOKafkaProducer, decision: Decision, report: ActuationReport
    ) -> None:
        """Publish the routing ``report`` observed (a change applied and read back) to the
        deployments topic, keyed by service, signed as :attr:`principal`; wait for the ack.

        Before the report: should the report not reach the broker, the decision is delivered
        again, applied again and its shift published again (a later one: harmless).
        """
        shift = observed_shift(decision, report, self.actuator)
        if shift is None:
            return
        value = encode_shift(shift)
        signer, principal = self.report_signer, self.principal
        headers = (
            [] if signer is None or principal is None else signed_headers(signer, principal, value)
        )
        await producer.send_and_wait(
            self.deployments_topic, value, key=shift.service.encode("utf-8"), headers=headers
        )

    async def _undecodable(
        self,
        raw: bytes,
        signature: bytes | None,
        exc: ContractError,
        producer: AIOKafkaProducer,
    ) -> None:
        verifier = self.handler.verifier
        reason = None if verifier is None else verifier.check(raw, signature)
        if reason is not None:
            self.metrics.reject(reason)
            log.warning("ignored an undecodable message that is %s: %s", reason, exc)
            return
        self.metrics.reject(exc.reason)
        letter = DeadLetter.for_message(
            raw, reason=exc.reason, detail=str(exc), source=self.decisions_topic, ts=time.time()
        )
        await producer.send_and_wait(
            self.deadletter_topic, orjson.dumps(letter.model_dump(mode="json"))
        )
        log.error("dead-lettered a signed message that is not a decision: %s", exc)

    async def _poll(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        assert self._wakeup is not None
        poll = asyncio.ensure_future(
            consumer.getmany(timeout_ms=int(self.poll_seconds * 1000), max_records=50)
        )
        wakeup = asyncio.ensure_future(self._wakeup.wait())
        try:
            await asyncio.wait({poll, wakeup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wakeup.cancel()
        if not poll.done():
            # Stopping: fetched records stay uncommitted and are delivered again.
            poll.cancel()
            return {}
        records: dict[Any, list[Any]] = poll.result()
        return records

    async def _position(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        if not assigned:
            return
        try:
            for tp in assigned:
                await consumer.position(tp)  # resolves the start offset now, not lazily
        except IllegalStateError:
            return  # revoked meanwhile: try again after the next poll
        self.ready.set()

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({tp: offset})
        except CommitFailedError as exc:
            # The group rebalanced: the partition's new owner gets this message again, and
            # the fence or the idempotent apply makes that harmless.
            log.warning("commit of %s@%d failed after a rebalance: %s", tp, offset, exc)


class _CatchUp(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka: no type information
    """On each assignment of decision partitions, before any is consumed: read the reports
    published since the last catch-up (by this instance's other processes, say) into the fence,
    then note the partitions now owned."""

    def __init__(self, service: ActuatorService, recovery: FenceRecovery, partitions: int) -> None:
        self.service = service
        self.recovery = recovery
        self.partitions = partitions

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self.service.assignment = frozenset()

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self.recovery.catch_up(self.partitions)
        self.service.assignment = frozenset(tp.partition for tp in assigned)


def _header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return value
    return None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
