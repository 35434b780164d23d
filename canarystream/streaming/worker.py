"""The streaming worker: Faust agent, table, web views; the engine does the analysis.

One agent consumes the telemetry and deployments topics (co-partitioned by service) in
batches and hands them to :class:`~canarystream.streaming.processor.BatchProcessor`. Per batch:

1. decisions are published and their acknowledgement awaited
   (:class:`~canarystream.streaming.outbox.DecisionOutbox`: in ``seq`` order per deployment,
   retried with backoff);
2. dead letters go out with Faust's producer, which Faust flushes before committing offsets;
3. about once a second (a checkpoint), each service changed since the last checkpoint has its
   snapshot (its rollouts and the offsets applied) written to the ``service-state`` table,
   whose changelog partition is the service's source partition, and only then are the
   messages since the last checkpoint acknowledged, so Faust may commit their offsets.

**Nothing is stored past an unpublished decision.** A batch's messages join the
acknowledgement queue, and its snapshots the next checkpoint, only once the broker has
acknowledged every decision of the batch. While publishing is retried the agent holds the
worker's lock, so no later batch is applied and no checkpoint runs. If the decisions are still
not acknowledged after ``publish_deadline_seconds`` (or anything else fails half-way through a
batch), the engine has moved on in memory past what the topic shows: the worker then stores
and acknowledges nothing more and exits with :data:`EXIT_UNPUBLISHED` (75), and the next
worker derives the same decisions again from the last checkpoint.

**Who steers.** The access file (``access_file``; only insecure mode runs without one, and
then obeys anyone) says who may send what: each announcement, command and
heartbeat must be signed by a principal allowed to send it (see
:mod:`canarystream.governance`); the verdict on each announcement and command read from the
deployments topic (accepted, or refused and why) is published to ``canary.verdicts.v1``,
signed with the worker's key as its decisions are (header ``canarystream-signature``), before
the batch may be stored: a verdict is never lost, and after a crash it may be published again
with the same id.

**Heartbeats.** Every ``heartbeat_seconds`` the worker produces, to the deployments topic and
keyed by the service, ``{"type": "heartbeat", "ts": ..., "service": ...}`` for each active
rollout it owns that has had no telemetry for ``idle_after_seconds`` (wall time), signed as
``worker_principal`` with its Ed25519 ``signing_key`` when signing is configured. ``ts`` is the
rollout's clock plus the wall time since that clock last moved: event time passes at wall
speed while a service is silent, so its no-data deadline is reached. Being recorded like any
other input, heartbeats make a replay of the topics decide exactly as the live worker did.

Faust runs at least once. Offsets are committed only after the producer is flushed, so the
stored state never lags behind a committed offset. Faust may still skip messages or commit
offsets of messages the agent has not had; :class:`~canarystream.streaming.gaps.GapFiller`
checks every offset against the last checkpoint and reads what is missing again. After a
crash, messages the broker delivers
again are skipped by the offsets in the snapshot, and a decision the decisions topic already
holds is not published again (:class:`~canarystream.streaming.published.PublishedIndex`).
Faust's own exactly-once mode is not used: in faust-streaming it is known to crash on start and
to duplicate output on rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import faust
import orjson
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from canarystream.contracts.authn import signed_headers
from canarystream.contracts.codec import encode_decision
from canarystream.contracts.decision import Decision
from canarystream.contracts.signing import SIGNATURE_HEADER
from canarystream.contracts.topics import (
    DEADLETTER_TOPIC,
    DECISIONS_TOPIC,
    DEPLOYMENTS_TOPIC,
    TELEMETRY_TOPIC,
    VERDICTS_TOPIC,
    topic_spec,
)
from canarystream.contracts.verdict import InputVerdict
from canarystream.engine import Engine
from canarystream.errors import BrokerError
from canarystream.governance.access import Access, Action, load_access
from canarystream.kafka.connection import Connection
from canarystream.policy.loading import PolicyRegistry
from canarystream.report import RolloutSeries, SeriesRecorder, render_report
from canarystream.security import (
    insecure_gauge,
    warn_if_insecure,
    worker_access_file,
    worker_signer,
)
from canarystream.settings import Settings
from canarystream.streaming.app import create_app
from canarystream.streaming.gaps import GapFiller, KafkaRangeReader
from canarystream.streaming.metrics import WorkerMetrics
from canarystream.streaming.outbox import DecisionOutbox
from canarystream.streaming.processor import BatchProcessor, Inbound, ServiceSnapshot
from canarystream.streaming.published import PublishedIndex
from canarystream.streaming.sensors import serve_metrics

__all__ = ["EXIT_UNPUBLISHED", "StreamWorker"]

EXIT_UNPUBLISHED = 75  # EX_TEMPFAIL: decisions could not be published; restart to derive them

_RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
STATE_TABLE = "service-state"
REPORT_POINTS = 720  # points per rollout and check on a live report (every other one beyond)
REPORT_ROLLOUTS = 32  # rollouts whose series a worker keeps for their report (newest first)
log = logging.getLogger(__name__)


def _headers(headers: Any) -> tuple[tuple[str, bytes | None], ...]:
    """A Faust message's headers (a list of pairs or a mapping) as pairs."""
    if not headers:
        return ()
    return tuple(headers.items() if hasattr(headers, "items") else headers)


def _check_heartbeats(access: Access, settings: Settings) -> None:
    """Warn when the worker's own heartbeats would be refused under ``access``."""
    principal = settings.worker_principal
    why = None
    if settings.signing_scheme != "ed25519":
        why = f"they are signed only with an Ed25519 signing_key ({settings.signing_scheme})"
    elif access.verifier(principal) is None:
        why = f"the access file lists no principal {principal!r} (worker_principal)"
    elif not any(
        Action.HEARTBEAT in grant.actions and principal in grant.principals
        for grant in access.grants
    ):
        why = f"the access file grants {principal!r} no heartbeat"
    if why is not None:
        log.warning(
            "heartbeats will be refused (%s): rollouts whose telemetry stops reach their "
            "no-data deadline only when telemetry or a command moves their clock",
            why,
        )


def _checkpoint_key(topic: str, partition: int) -> bytes:
    """Table key of a source partition's checkpoint (no service name starts with NUL)."""
    return f"\x00checkpoint:{topic}:{partition}".encode()


@dataclass(frozen=True)
class Batching:
    """How many messages the agent takes at once, and how long it waits to fill a batch."""

    max_messages: int
    within_seconds: float
    checkpoint_seconds: float  # how often state is stored and offsets acknowledged
    # how long a partition may deliver nothing while its log holds unprocessed messages
    undelivered_after_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Batching:
        """``batch_max_messages``, ``batch_within_seconds``, ``checkpoint_seconds`` and
        ``undelivered_after_seconds``."""
        return cls(
            settings.batch_max_messages,
            settings.batch_within_seconds,
            settings.checkpoint_seconds,
            settings.undelivered_after_seconds,
        )


class StreamWorker:
    """The Faust app of ``canarystream worker`` with everything it needs wired in."""

    def __init__(
        self,
        settings: Settings,
        *,
        policies: PolicyRegistry | None = None,
        replication_factor: int = 1,
        batching: Batching | None = None,
    ) -> None:
        self.settings = settings
        self.connection = Connection(settings)
        self.batching = batching or Batching.from_settings(settings)
        self.app = app = create_app(settings, replication_factor=replication_factor)
        topic = self.connection.topic
        self.source = app.topic(topic(TELEMETRY_TOPIC), topic(DEPLOYMENTS_TOPIC), **_RAW)
        self.decisions = app.topic(topic(DECISIONS_TOPIC), **_RAW)
        self.deployments = app.topic(topic(DEPLOYMENTS_TOPIC), **_RAW)
        self.dead_letters = app.topic(topic(DEADLETTER_TOPIC), **_RAW)
        self.verdicts = app.topic(topic(VERDICTS_TOPIC), **_RAW)
        self.table = app.Table(
            STATE_TABLE,
            partitions=topic_spec(TELEMETRY_TOPIC).partitions,
            key_type=bytes,  # bytes keys and values: Faust stores them raw, not as JSON
            value_type=bytes,
        )
        self.signer = worker_signer(settings)  # no key: refused unless insecure
        access_file = worker_access_file(settings)  # none: refused unless insecure
        access = load_access(access_file) if access_file is not None else None
        if access is not None:
            _check_heartbeats(access, settings)
        self.engine = Engine(
            policies, tombstone_ttl=settings.deployment_tombstone_ttl, access=access
        )
        self.processor = BatchProcessor(
            self.engine, self._load, time.time, telemetry_topic=topic(TELEMETRY_TOPIC)
        )
        # What the engine weighed at each tick, for /rollouts/<deployment>/report.
        self.series = SeriesRecorder(max_points=REPORT_POINTS, max_rollouts=REPORT_ROLLOUTS)
        self.series.attach(self.engine)
        self._lock = asyncio.Lock()
        self._stream: faust.StreamT[bytes] | None = None
        self._unacked: list[faust.EventT[bytes]] = []
        self._dirty: dict[str, ServiceSnapshot] = {}
        self._processed: dict[tuple[str, int], int] = {}  # last offset per source partition
        self._reader = KafkaRangeReader(self.connection.client_kwargs)
        self.gaps = GapFiller(self._reader, self._checkpointed, self._on_gap)
        self._next_checkpoint = 0.0
        self.metrics = WorkerMetrics()
        self.last_decision: dict[str, Decision] = {}
        signed, authenticated = self.signer is not None, access is not None
        warn_if_insecure(settings, "worker", log, signed=signed, authenticated=authenticated)
        insecure_gauge(self.metrics.registry, settings.insecure)
        self.index = PublishedIndex(
            self.signer.verifier() if self.signer else None, self.metrics.forged_decisions.inc
        )
        self.outbox = DecisionOutbox(
            self._send_decision, self.index, deadline=settings.publish_deadline_seconds
        )
        self._delivered_at: dict[tuple[str, int], float] = {}  # source partition -> wall time
        self._halted: str | None = None  # why nothing may be stored or acknowledged any more
        self._exit: Callable[[int], Any] = os._exit
        self._telemetry_at: dict[str, float] = {}  # service -> wall time of its last telemetry
        self._clock_at: dict[str, tuple[float, float]] = {}  # deployment -> (clock, since when)
        self._partition_of = DefaultPartitioner()  # the Java client's murmur2, as producers use
        serve_metrics(app, self.metrics.registry)
        app.agent(self.source, name="rollouts", concurrency=1)(self._consume)
        app.task(self._follow_decisions)
        app.timer(self.batching.checkpoint_seconds)(self._checkpoint_when_idle)
        app.timer(self.batching.undelivered_after_seconds / 2)(self._read_undelivered)
        app.timer(settings.heartbeat_seconds)(self._send_heartbeats)
        # Faust types a receiver as taking any positional arguments and ``signal``; it calls
        # these with the app (and the revoked partitions), which is all they take.
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self._on_shutdown)  # type: ignore[arg-type]
        self._add_views()

    # ------------------------------------------------------------------ state
    def _load(self, service: str) -> bytes | None:
        if service.startswith("\x00"):
            return None  # checkpoint records, not services
        return self.table.data.get(service.encode())

    def _checkpointed(self, topic: str, partition: int) -> int | None:
        marker = self.table.data.get(_checkpoint_key(topic, partition))
        return int(marker) if marker is not None else None

    async def _on_shutdown(self, app: Any, **_: Any) -> None:
        await self._reader.close()

    def _on_gap(self, read: int) -> None:
        self.metrics.gaps.inc()
        self.metrics.gap_messages.inc(read)

    async def _on_revoked(self, app: Any, revoked: set[TP], **_: Any) -> None:
        sources = {self.connection.topic(TELEMETRY_TOPIC), self.connection.topic(DEPLOYMENTS_TOPIC)}
        partitions = {tp.partition for tp in revoked if tp.topic in sources}
        if partitions:
            async with self._lock:
                self._dirty = {
                    service: snapshot
                    for service, snapshot in self._dirty.items()
                    if snapshot.partition not in partitions
                }
                held = set(self.engine.rollouts)
                self.processor.revoke(partitions)
                self.metrics.forget(held - set(self.engine.rollouts))
                self.metrics.active.set(len(self.engine.active_by_service))
                self.gaps.forget(partitions)
                for tp in [tp for tp in self._processed if tp[1] in partitions]:
                    del self._processed[tp]
                for tp in [tp for tp in self._delivered_at if tp[1] in partitions]:
                    del self._delivered_at[tp]

    async def _follow_decisions(self) -> None:
        await self.index.follow(
            self.connection.topic(DECISIONS_TOPIC), self.connection.client_kwargs()
        )

    # ------------------------------------------------------------------ the agent
    async def _consume(self, stream: faust.StreamT[bytes]) -> None:
        await self.index.ready.wait()
        if self._halted is not None:  # Faust restarts an agent that stopped mid-batch
            if self.app.should_stop:
                return
            self._halt(self._halted)
        self._stream = stream
        batching = self.batching
        # The agent's stream is a faust.Stream, which alone declares take_events.
        taken = cast("faust.Stream[bytes]", stream).take_events
        async for events in taken(batching.max_messages, batching.within_seconds):
            async with self._lock:
                for event in events:
                    event.message.incref()  # held until the checkpoint that covers it
                try:
                    await self._apply(events)
                except asyncio.CancelledError:
                    self._halted = "a batch was interrupted before its decisions were published"
                    raise
                except Exception as exc:
                    self._halt(f"a batch failed half-way: {exc!r}", exc)

    async def _apply(self, events: Sequence[faust.EventT[bytes]]) -> None:
        """One batch: process, publish its decisions, and only then queue it for the checkpoint."""
        batch = await self.gaps.complete(
            [
                Inbound(
                    m.topic,
                    m.partition,
                    m.offset,
                    m.key,
                    m.value,
                    _headers(getattr(m, "headers", None)),
                )
                for m in (event.message for event in events)
            ]
        )
        await self._apply_inbound(batch, events)

    async def _apply_inbound(
        self, batch: list[Inbound], events: Sequence[faust.EventT[bytes]]
    ) -> None:
        """Process ``batch``, publish its decisions, then queue ``events`` (the Faust events it
        came from, if any) and its offsets for the checkpoint."""
        result = self.processor.process(batch)
        for decision in result.decisions:
            self.series.decided(decision)
        self.metrics.record_batch(result, Counter(m.topic for m in batch))
        rollouts_of = self.engine.rollouts_of
        self.metrics.record_consumed(r for s in result.snapshots for r in rollouts_of(s))
        for letter in result.dead_letters:
            self.dead_letters.send_soon(value=orjson.dumps(letter.model_dump(mode="json")))
        if result.verdicts:
            await self._publish_verdicts(result.verdicts)
        if result.decisions:
            await self._publish(result.decisions)
        # The broker has every decision of the batch: from here on it may be stored and acked.
        self._unacked.extend(events)
        self._dirty.update(result.snapshots)
        processed, delivered, now = self._processed, self._delivered_at, time.monotonic()
        for message in batch:
            tp = (message.topic, message.partition)
            delivered[tp] = now
            if message.offset > processed.get(tp, -1):  # messages delivered again lie below
                processed[tp] = message.offset
        self._note_activity(batch, result.snapshots, now)
        self._record_lag(batch)
        if time.monotonic() >= self._next_checkpoint:
            await self._checkpoint()

    def _halt(self, why: str, exc: BaseException | None = None) -> NoReturn:
        """Store and acknowledge nothing more, and exit: a restart decides again from the last
        checkpoint. A hard exit, as a crash would be: Faust's orderly shutdown may wait long
        for an absent broker, and nothing it would do is needed."""
        self._halted = why
        log.critical(
            "stopping without storing or acknowledging anything more: %s; the next worker "
            "derives the decisions again from the last checkpoint",
            why,
            exc_info=exc,
        )
        logging.shutdown()
        self._exit(EXIT_UNPUBLISHED)
        raise SystemExit(EXIT_UNPUBLISHED)  # only reached when _exit is replaced (tests)

    async def _checkpoint(self) -> None:
        """Store the snapshots of services changed since the last checkpoint, then ack.

        Faust commits only acknowledged offsets, and flushes the changelog before it commits:
        a committed offset is therefore always covered by stored state.
        """
        if self._halted is not None:
            return
        self._next_checkpoint = time.monotonic() + self.batching.checkpoint_seconds
        for service, snapshot in self._dirty.items():
            key, blob = service.encode(), snapshot.dumps()
            self.table.data[key] = blob
            self.table.send_changelog(snapshot.partition, key, blob)
        self._dirty.clear()
        # After the snapshots, in the same changelog partition (so never recovered without
        # them): every message of the partition up to this offset is in the stored state.
        for (topic, partition), offset in self._processed.items():
            key, value = _checkpoint_key(topic, partition), str(offset).encode()
            self.table.data[key] = value
            self.table.send_changelog(partition, key, value)
        self._processed.clear()
        events, self._unacked = self._unacked, []
        stream = self._stream
        if stream is not None:
            for event in events:
                await stream.ack(event)

    async def _read_undelivered(self) -> None:
        """Read what Faust holds back: messages in the log of a source partition that has
        delivered nothing for ``undelivered_after_seconds`` (see :mod:`.gaps`)."""
        if self._stream is None or self._halted is not None:
            return  # not consuming yet, or stopping
        now = time.monotonic()
        silent = self._silent_partitions(now)
        if not silent:
            return
        async with self._lock:
            try:
                batch = await self.gaps.undelivered(silent)
                self._delivered_at.update(dict.fromkeys(silent, now))
                if batch:
                    await self._apply_inbound(batch, ())
            except asyncio.CancelledError:
                self._halted = "reading undelivered messages was interrupted"
                raise
            except (BrokerError, KafkaError) as exc:
                log.warning("reading undelivered messages failed (%r); trying again later", exc)
            except Exception as exc:
                self._halt(f"undelivered messages failed half-way: {exc!r}", exc)

    def _silent_partitions(self, now: float) -> list[tuple[str, int]]:
        """This worker's source partitions that have delivered nothing for a while; a
        partition's silence is counted from its first delivery or from when it was first seen
        assigned."""
        sources = {self.connection.topic(TELEMETRY_TOPIC), self.connection.topic(DEPLOYMENTS_TOPIC)}
        after = self.batching.undelivered_after_seconds
        silent: list[tuple[str, int]] = []
        for tp in self.app.consumer.assignment():
            if tp.topic in sources:
                key = (tp.topic, tp.partition)
                if now - self._delivered_at.setdefault(key, now) >= after:
                    silent.append(key)
        return sorted(silent)

    async def _checkpoint_when_idle(self) -> None:
        """Checkpoint on time even when no batch arrives to trigger it."""
        async with self._lock:
            pending = self._unacked or self._dirty or self._processed
            if pending and time.monotonic() >= self._next_checkpoint:
                await self._checkpoint()

    def _signature(self, value: bytes) -> list[tuple[str, bytes]] | None:
        """The signature header of a message the worker writes (None when unsigned)."""
        if self.signer is None:
            return None
        return [(SIGNATURE_HEADER, self.signer.sign(value).encode("ascii"))]

    async def _send_decision(self, decision: Decision) -> Any:
        value = encode_decision(decision)
        return await self.decisions.send(
            key=decision.deployment.encode(), value=value, headers=self._signature(value)
        )

    async def _publish_verdicts(self, verdicts: list[InputVerdict]) -> None:
        """Send the batch's verdicts, signed as decisions are, and wait until the broker has
        them all (a failure or the publish deadline stops the worker before anything of the
        batch is stored)."""
        acks = []
        for verdict in verdicts:
            value = verdict.model_dump_json().encode()
            acks.append(
                await self.verdicts.send(
                    key=(verdict.deployment or verdict.service or "").encode(),
                    value=value,
                    headers=self._signature(value),
                )
            )
        await asyncio.wait_for(asyncio.gather(*acks), self.settings.publish_deadline_seconds)
        self.metrics.verdicts.inc(len(verdicts))

    async def _publish(self, decisions: list[Decision]) -> None:
        """Send decisions not yet on the topic and wait until the broker has them all.

        Raises :class:`~canarystream.streaming.outbox.PublishTimeoutError` past the deadline.
        """
        outcome = await self.outbox.publish(decisions)
        self.metrics.suppressed.inc(outcome.suppressed)
        self.metrics.publish_failures.inc(outcome.failures)
        for decision in outcome.published:
            self.last_decision[decision.deployment] = decision
        self.metrics.record_decisions(outcome.published)
        finished = [
            self.engine.rollouts[d.deployment] for d in outcome.published if d.phase.is_terminal
        ]
        self.metrics.record_rollouts(self.engine.active_by_service.values(), finished)

    # ------------------------------------------------------------------ heartbeats
    def _note_activity(self, batch: list[Inbound], touched: Iterable[str], now: float) -> None:
        """Remember when each service last had telemetry and each rollout's clock last moved."""
        active = self.engine.active_by_service
        telemetry = self.connection.topic(TELEMETRY_TOPIC)
        for message in batch:
            if message.topic == telemetry and message.key:
                service = message.key.decode("utf-8", "replace")
                if service in active:
                    self._telemetry_at[service] = now
        for service in touched:
            rollout = active.get(service)
            if rollout is not None:
                self._clock_since(rollout.deployment, rollout.clock, now)

    def _clock_since(self, deployment: str, clock: float, now: float) -> float:
        """Wall time since when a rollout's clock has had this value."""
        seen = self._clock_at.get(deployment)
        if seen is None or seen[0] != clock:
            seen = self._clock_at[deployment] = (clock, now)
        return seen[1]

    def _load_owned_services(self) -> None:
        """Restore the stored services of owned partitions that no message has named yet.

        Services load when a message first names them; one whose telemetry stopped before a
        restart would never load, and so never get heartbeats.
        """
        app = self.app
        if app.rebalancing or app.in_recovery:
            return  # the table is being filled: a snapshot read now could be stale
        source = self.connection.topic(TELEMETRY_TOPIC)
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == source}
        if not owned:
            return
        partitions = list(range(topic_spec(TELEMETRY_TOPIC).partitions))
        known = self.processor.services
        for key in list(self.table.data.keys()):
            if key.startswith(b"\x00"):
                continue  # checkpoint records
            service = key.decode("utf-8", "replace")
            if service in known:
                continue
            partition = self._partition_of(key, partitions, partitions)
            if partition in owned:
                self.processor._service(service, partition)  # loads it as a message would

    def heartbeats_due(self, now: float) -> list[tuple[str, float]]:
        """``(service, ts)`` of every owned active rollout silent for ``idle_after_seconds``."""
        idle_after = self.settings.idle_after_seconds
        active = self.engine.active_by_service
        for gone in [s for s in self._telemetry_at if s not in active]:
            del self._telemetry_at[gone]
        live = {rollout.deployment for rollout in active.values()}
        for gone in [d for d in self._clock_at if d not in live]:
            del self._clock_at[gone]
        due = []
        for service, rollout in sorted(active.items()):
            since = self._clock_since(rollout.deployment, rollout.clock, now)
            if now - self._telemetry_at.setdefault(service, now) >= idle_after:
                due.append((service, round(rollout.clock + (now - since), 3)))
        return due

    async def _send_heartbeats(self) -> None:
        async with self._lock:
            if self._halted is not None:
                return
            self._load_owned_services()
            due = self.heartbeats_due(time.monotonic())
        for service, ts in due:
            value = orjson.dumps({"type": "heartbeat", "ts": ts, "service": service})
            headers = None
            if self.signer is not None:
                headers = signed_headers(self.signer, self.settings.worker_principal, value)
            await self.deployments.send(key=service.encode(), value=value, headers=headers)
        if due:
            self.metrics.heartbeats.inc(len(due))
            log.debug("heartbeats for %d idle rollouts", len(due))

    def _record_lag(self, batch: list[Inbound]) -> None:
        last: dict[tuple[str, int], int] = {}
        for message in batch:
            last[(message.topic, message.partition)] = message.offset
        consumer = self.app.consumer
        for (topic, partition), offset in last.items():
            highwater = consumer.highwater(TP(topic, partition))
            if highwater is not None:
                lag = max(highwater - offset - 1, 0)
                self.metrics.lag.labels(topic, str(partition)).set(lag)

    # ------------------------------------------------------------------ web
    def status(self, deployment: str) -> dict[str, Any] | None:
        """The JSON status of one rollout this worker holds."""
        rollout = self.engine.rollouts.get(deployment)
        if rollout is None:
            return None
        last = self.last_decision.get(deployment)
        return {
            "deployment": rollout.deployment,
            "service": rollout.service,
            "baseline_version": rollout.baseline_version,
            "canary_version": rollout.canary_version,
            "policy": rollout.policy.name,
            "phase": rollout.phase.value,
            "stage": rollout.stage,
            "traffic_percent": rollout.traffic_percent,
            "seq": rollout.seq,
            "event_time": rollout.clock,
            "last_decision": last.model_dump(mode="json") if last is not None else None,
        }

    def report(self, deployment: str) -> str | None:
        """The HTML report of one rollout this worker holds, as far as it has seen it."""
        rollout = self.engine.rollouts.get(deployment)
        series = self.series.get(deployment)
        if series is None:
            if rollout is None:
                return None
            series = RolloutSeries(
                rollout.deployment,
                rollout.service,
                rollout.baseline_version,
                rollout.canary_version,
                rollout.policy.name,
                rollout.started_at,
            )
            if rollout.last_decision is not None:
                series.decisions.append(rollout.last_decision)
        if rollout is not None:
            self.series.learn(rollout)
        return render_report(
            [series],
            title=f"Rollout {deployment}",
            note="Live, as this worker has seen it since it took the rollout (a restart "
            "shows what was decided from then on); reload for the latest.",
        )

    def _add_views(self) -> None:
        # Faust binds page handlers to its View: plain functions, not methods of ours.
        status = self.status
        report = self.report
        engine = self.engine
        source = self.connection.topic(TELEMETRY_TOPIC)
        consumer = self.app.consumer

        @self.app.page("/rollouts/")
        async def rollouts(view: Any, request: Any) -> Any:
            owned = sorted(tp.partition for tp in consumer.assignment() if tp.topic == source)
            return view.json(
                {
                    "partitions": owned,
                    "rollouts": [status(d) for d in sorted(engine.rollouts)],
                }
            )

        @self.app.page("/rollouts/{deployment}/")
        async def rollout(view: Any, request: Any, deployment: str) -> Any:
            found = status(deployment)
            if found is None:
                return view.json({"error": f"no rollout {deployment!r} on this worker"}, status=404)
            return view.json(found)

        @self.app.page("/rollouts/{deployment}/report")
        async def rollout_report(view: Any, request: Any, deployment: str) -> Any:
            page = report(deployment)
            if page is None:
                return view.json({"error": f"no rollout {deployment!r} on this worker"}, status=404)
            return view.html(page)

    def run(self, loglevel: str = "info") -> None:
        """Run until SIGTERM or SIGINT (blocks)."""
        worker = faust.Worker(self.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
        worker.execute_from_commandline()
