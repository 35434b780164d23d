"""People's commands to a live rollout: approve, abort, pause, resume, signed and delivered.

A command is a control event on the deployments topic, keyed by the rollout's service so it
reaches the partition (and so the worker) that owns the rollout, and signed with the caller's
key (:mod:`canarystream.contracts.authn`). The service is looked up in the decisions topic,
whose messages name it; the worker's verdict on the command is read back from the verdicts
topic by the command's source id (``topic/partition@offset``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from canarystream.contracts.authn import signed_headers
from canarystream.contracts.events import input_event_adapter
from canarystream.contracts.signing import SIGNATURE_HEADER, Signer, Verifier
from canarystream.contracts.topics import (
    DECISIONS_TOPIC,
    DEPLOYMENTS_TOPIC,
    service_partition,
)
from canarystream.contracts.verdict import InputVerdict
from canarystream.errors import ConfigError, ContractError, field_errors
from canarystream.governance.access import Access, Action
from canarystream.kafka.connection import Connection

__all__ = [
    "COMMANDS",
    "Sent",
    "await_verdict",
    "control_event",
    "end_offsets",
    "find_service",
    "grant_problem",
    "open_reader",
    "send_command",
    "topic_partitions",
]

#: Command → the control event it sends, and the grant (access-file action) it needs.
COMMANDS = {
    "approve": "deployment_approved",
    "abort": "deployment_aborted",
    "pause": "deployment_paused",
    "resume": "deployment_resumed",
}


@dataclass(frozen=True)
class Sent:
    """A command as the broker acknowledged it."""

    topic: str
    partition: int
    offset: int
    value: bytes

    @property
    def source(self) -> str:
        """The id the worker gives the message: ``topic/partition@offset``."""
        return f"{self.topic}/{self.partition}@{self.offset}"


def control_event(  # noqa: PLR0913 -- keyword-only fields of the control event
    command: str,
    *,
    deployment: str,
    service: str,
    principal: str,
    reason: str,
    ts: float | None = None,
) -> bytes:
    """The exact bytes of the control event for ``command``, checked against the contract.

    ``actor`` is the principal whose key signs the message; ``ts`` defaults to now (a
    person's command happens when it is given).
    """
    if command not in COMMANDS:
        raise ConfigError(f"unknown command {command!r} ({', '.join(COMMANDS)})")
    event = {
        "type": COMMANDS[command],
        "ts": round(time.time() if ts is None else ts, 3),
        "deployment": deployment,
        "service": service,
        "actor": principal,
        "reason": reason,
    }
    try:
        input_event_adapter.validate_python(event)
    except ValidationError as exc:
        problems = "; ".join(f"{field}: {message}" for field, message in field_errors(exc))
        raise ContractError(f"{COMMANDS[command]}: {problems}", reason="invalid_field") from exc
    return orjson.dumps(event)


@asynccontextmanager
async def open_reader(connection: Connection) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer outside any consumer group, reading committed messages from the earliest."""
    consumer = AIOKafkaConsumer(
        **connection.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    try:
        await consumer.start()  # a refused start still closes the client
        yield consumer
    finally:
        await consumer.stop()


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic`` (a full name); ConfigError when it does not exist."""
    client = consumer._client  # aiokafka has no public call that fetches one topic's metadata
    client.add_topic(topic)
    found = None
    for attempt in range(10):  # a topic just created may take a moment to show up
        await client.force_metadata_update()
        found = client.cluster.partitions_for_topic(topic)
        if found:
            break
        await asyncio.sleep(0.1 * (attempt + 1))
    if not found:
        raise ConfigError(f"topic {topic} does not exist (canarystream topics create)")
    return [TopicPartition(topic, partition) for partition in sorted(found)]


_Found = TypeVar("_Found")


async def _scan(
    consumer: AIOKafkaConsumer,
    starts: dict[TopicPartition, int],
    until: dict[TopicPartition, int] | None,
    match: Callable[[Any], _Found | None],
    deadline: float,
) -> _Found | None:
    """The first ``match(message)`` that is not None, reading each partition from its start
    offset (up to ``until``, or without end); None at the end or the deadline."""
    consumer.assign(list(starts))
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    remaining = set(starts) if until is None else {tp for tp in starts if until[tp] > starts[tp]}
    while remaining and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        for messages in batches.values():
            for message in messages:
                if (found := match(message)) is not None:
                    return found
        if until is not None:
            for tp in list(remaining):
                if await consumer.position(tp) >= until[tp]:
                    remaining.discard(tp)
    return None


async def find_service(
    connection: Connection,
    deployment: str,
    *,
    timeout: float = 10.0,
    verifier: Verifier | None = None,
) -> str | None:
    """The service of ``deployment`` as its decisions name it; None if none does in time.

    Decisions are keyed by deployment, so its partition is read first, then the others.
    With a ``verifier``, only decisions whose signature verifies are believed.
    """
    topic = connection.topic(DECISIONS_TOPIC)
    deadline = time.monotonic() + timeout

    def match(message: Any) -> str | None:
        try:
            data = orjson.loads(message.value)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict) or data.get("deployment") != deployment:
            return None
        service = data.get("service")
        if not isinstance(service, str) or not service:
            return None
        if verifier is not None:
            signature = dict(message.headers or ()).get(SIGNATURE_HEADER)
            if not verifier.verify(message.value, signature):
                return None
        return service

    async with open_reader(connection) as consumer:
        partitions = await topic_partitions(consumer, topic)
        firsts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        keyed = service_partition(deployment, len(partitions))
        ordered = [[tp for tp in partitions if tp.partition == keyed]]
        ordered.append([tp for tp in partitions if tp.partition != keyed])
        for group in ordered:
            starts = {tp: firsts[tp] for tp in group}
            found = await _scan(consumer, starts, ends, match, deadline)
            if found is not None:
                return found
    return None


async def end_offsets(connection: Connection, topic: str) -> dict[TopicPartition, int]:
    """The end offset of each partition of ``topic`` (a contract name) now."""
    async with open_reader(connection) as consumer:
        partitions = await topic_partitions(consumer, connection.topic(topic))
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends


async def send_command(
    connection: Connection, value: bytes, *, service: str, principal: str, signer: Signer
) -> Sent:
    """Produce a control event keyed by ``service``, signed as ``principal``; wait for the
    acknowledgement of every in-sync replica."""
    topic = connection.topic(DEPLOYMENTS_TOPIC)
    producer = AIOKafkaProducer(**connection.client_kwargs(), acks="all", enable_idempotence=True)
    try:
        await producer.start()  # a refused start still closes the client
        metadata = await producer.send_and_wait(
            topic,
            value,
            key=service.encode("utf-8"),
            headers=signed_headers(signer, principal, value),
        )
    finally:
        await producer.stop()
    return Sent(topic, metadata.partition, metadata.offset, value)


async def await_verdict(
    connection: Connection,
    source: str,
    *,
    since: dict[TopicPartition, int],
    timeout: float,
) -> InputVerdict | None:
    """The worker's verdict on the message ``source``, read from the verdicts topic from the
    offsets ``since`` (taken before sending); None if none comes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout

    def match(message: Any) -> InputVerdict | None:
        try:
            verdict = InputVerdict.model_validate_json(message.value)
        except ValidationError:
            return None
        return verdict if verdict.id == source else None

    async with open_reader(connection) as consumer:
        return await _scan(consumer, dict(since), None, match, deadline)


def grant_problem(
    access: Access, source: str, *, caller: tuple[str, Signer], command: str, service: str
) -> str | None:
    """Why the worker, judging by the access file ``source``, would refuse ``command`` on
    ``service`` from ``caller`` (a principal and the signer of its key); None if it would not.

    A courtesy before sending: the worker, with its own copy of the file, stays the authority.
    """
    principal, signer = caller
    verifier = access.verifier(principal)
    if verifier is None:
        return (
            f"{principal} is not a principal of {source}: add it there with the public key "
            "`canarystream keys generate` printed"
        )
    probe = b"canarystream key check"
    if not verifier.verify(probe, signer.sign(probe)):
        return f"your key is not the one {source} lists for {principal}"
    if not access.allows(principal, Action(command), service):
        return (
            f"{principal} has no grant of {command!r} on service {service!r} in {source}; "
            "the worker would refuse the command as unauthorized"
        )
    return None
