"""What an actuator applied before it started, read back from its own reports.

The fence must survive restarts and rebalances: otherwise a replayed, correctly signed, old
decision is applied again after a restart (traffic back to 25 % after a rollback), and a
rollback's hooks run twice. It is rebuilt from ``canary.actuations.v1`` rather than kept in a
topic of its own, because every fact it needs is already there, written before the decision's
offset is committed: each report names its decision (id, deployment, ``seq``), its status and
the actuator instance that wrote it (``actuator``: ``kind/name``, so two instances of one kind
driving different routers never share a fence), and a hook actuator's ``started`` report is the
intent recorded before its hooks run. One topic is one source of truth for both audit and
fence, with no second write to keep consistent.

:class:`FenceRecovery` reads every partition of the topic from its start to the end offsets of
the moment it is called, and hands this instance's reports to
:meth:`~canarystream.actuators.handler.BaseHandler.remember`; later calls (on each partition
assignment of the decisions consumer, before any decision is consumed) read on from where the
last one stopped. Memory stays bounded: the fence keeps the last ``seq`` and a few recent ids
per deployment, and forgets ended rollouts beyond its ``max_finished``; reports are not kept.

Reports written before the ``actuator`` field existed name no instance: they are read without
failing and ignored (no instance can tell they are its own), counted in ``unattributed`` and
logged once per catch-up. A decision that only such a report records (no later report of the
instance on its rollout) is held off after the upgrade by the maximum decision age alone.

Reports are plain messages: whoever may write to the topic could forge one (a high ``seq``)
and make the actuator refuse genuine decisions after its next restart -- never apply one. An
actuator given a key of its own (``CANARYSTREAM_PRINCIPAL_KEY_FILE``) signs its reports
(Kafka header ``canarystream-signature``), and its fence then takes in signed reports only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from canarystream.contracts.actuation import ActuationReport
from canarystream.contracts.signing import SIGNATURE_HEADER, Verifier
from canarystream.kafka.connection import Connection

__all__ = ["FenceRecovery"]

log = logging.getLogger(__name__)


class FenceRecovery:
    """Reads an actuator instance's reports back into its fence, up to the topic's end.

    Parameters
    ----------
    connection:
        The cluster and the topic prefix.
    topic:
        The actuations topic (with its prefix).
    actuator:
        The instance whose reports count (``kind/name``); all others are skipped.
    remember:
        Takes one of the instance's reports into the fence.
    verifier:
        When given, a report counts only if its signature header verifies (the instance signs
        its reports); others are skipped and counted in ``refused``.
    """

    def __init__(
        self,
        connection: Connection,
        topic: str,
        actuator: str,
        remember: Callable[[ActuationReport], None],
        verifier: Verifier | None = None,
    ) -> None:
        self.connection = connection
        self.topic = topic
        self.actuator = actuator
        self.remember = remember
        self.verifier = verifier
        self.read = 0  # reports of this instance taken in so far
        self.refused = 0  # reports naming this instance without its valid signature
        self.unattributed = 0  # reports naming no instance (written before the field existed)
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned: set[TopicPartition] = set()

    async def start(self) -> None:
        """Connect (no consumer group: nothing is committed, every partition is read)."""
        self._consumer = AIOKafkaConsumer(
            **self.connection.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self._consumer.start()

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def catch_up(self, partitions: int) -> int:
        """Read every partition (``partitions`` of them) to its current end; the number of this
        instance's reports taken in by this call."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        wanted = {TopicPartition(self.topic, p) for p in range(partitions)}
        new = wanted - self._assigned
        if new:
            self._assigned |= wanted
            consumer.assign(sorted(self._assigned))
            await consumer.seek_to_beginning(*new)
        ends = await consumer.end_offsets(sorted(self._assigned))
        before, unattributed = self.read, self.unattributed
        while True:
            behind = [tp for tp in self._assigned if await consumer.position(tp) < ends[tp]]
            if not behind:
                break
            batches = await consumer.getmany(*behind, timeout_ms=500, max_records=1000)
            for records in batches.values():
                for record in records:
                    self._take(record.value, _signature(record.headers))
        taken = self.read - before
        if self.unattributed > unattributed:
            log.info(
                "fence of %s: ignored %d report(s) naming no actuator (written before reports "
                "named their actuator); the decisions they record are held off by their age alone",
                self.actuator,
                self.unattributed - unattributed,
            )
        if taken:
            log.info(
                "fence of %s: %d report(s) read back from %s", self.actuator, taken, self.topic
            )
        return taken

    def _take(self, raw: bytes | None, signature: bytes | None) -> None:
        try:
            report = ActuationReport.model_validate_json(raw or b"")
        except ValidationError:
            return  # not a report: the topic's other readers deal with it
        if report.actuator is None:
            self.unattributed += 1
            return
        if report.actuator != self.actuator:
            return
        if self.verifier is not None and self.verifier.check(raw or b"", signature) is not None:
            self.refused += 1
            log.warning(
                "fence of %s: ignored a report of decision %s that this instance did not sign",
                self.actuator,
                report.decision_id,
            )
            return
        self.remember(report)
        self.read += 1


def _signature(headers: Sequence[tuple[str, bytes]] | None) -> bytes | None:
    for key, value in headers or ():
        if key == SIGNATURE_HEADER:
            return value
    return None
