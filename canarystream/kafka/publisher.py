"""Producing contract events to Kafka the way services and deployment systems should.

Telemetry goes to the telemetry topic and deployment events to the deployments topic, both
keyed by service so they are co-partitioned; several telemetry events of one service may share
one message as a JSON array (a batch), which is far cheaper to produce and consume.
A publisher given a principal's key (``signed_as``) signs each deployments-topic message as
that principal (:func:`~canarystream.contracts.authn.signed_headers`), as the worker's access
file requires of announcements and control events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from canarystream.contracts.authn import signed_headers
from canarystream.contracts.codec import TELEMETRY_TYPES
from canarystream.contracts.signing import Signer
from canarystream.contracts.topics import DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC
from canarystream.kafka.connection import Connection

__all__ = ["EventPublisher"]


class EventPublisher:
    """An aiokafka producer that routes, keys and batches contract events.

    Use as ``async with EventPublisher(connection) as publisher: await publisher.send(...)``.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        linger_ms: int = 5,
        signed_as: tuple[str, Signer] | None = None,
    ) -> None:
        self.connection = connection
        self.signed_as = signed_as  # (principal, its signer) for deployments-topic messages
        self.telemetry_topic = connection.topic(TELEMETRY_TOPIC)
        self.deployments_topic = connection.topic(DEPLOYMENTS_TOPIC)
        self.producer = AIOKafkaProducer(
            **connection.client_kwargs(), acks="all", linger_ms=linger_ms, max_batch_size=1 << 20
        )

    async def __aenter__(self) -> EventPublisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, events: Iterable[dict[str, Any]], *, batch: int = 1) -> int:
        """Produce events in order (per service); return the number of messages sent.

        ``batch`` > 1 packs up to that many consecutive telemetry events of one service into
        one message. A deployment event flushes its service's pending batch first, so each
        service's events keep their order. Returns once every message is acknowledged;
        raises the first delivery error if one was not (the producer's flush does not).
        """
        deliveries: list[asyncio.Future[Any]] = []
        pending: dict[str, list[dict[str, Any]]] = {}
        messages = 0
        for event in events:
            service = event.get("service") or ""
            if event.get("type") in TELEMETRY_TYPES:
                group = pending.setdefault(service, [])
                group.append(event)
                if len(group) >= batch:
                    messages += await self._flush(service, pending.pop(service), deliveries)
                continue
            if service in pending:
                messages += await self._flush(service, pending.pop(service), deliveries)
            value = orjson.dumps(event)
            delivery = await self.producer.send(
                self.deployments_topic, value, key=service.encode(), headers=self._sign(value)
            )
            deliveries.append(delivery)
            messages += 1
        for service, group in pending.items():
            messages += await self._flush(service, group, deliveries)
        await self.producer.flush()
        for delivery in deliveries:
            delivery.result()  # raises the delivery's error, if any
        return messages

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Produce bytes as they are (tests and drills of bad input)."""
        await self.producer.send_and_wait(self.connection.topic(topic), value, key=key)

    def _sign(self, value: bytes) -> list[tuple[str, bytes]] | None:
        if self.signed_as is None:
            return None
        principal, signer = self.signed_as
        return signed_headers(signer, principal, value)

    async def _flush(
        self, service: str, group: list[dict[str, Any]], deliveries: list[asyncio.Future[Any]]
    ) -> int:
        value = orjson.dumps(group[0] if len(group) == 1 else group)
        delivery = await self.producer.send(self.telemetry_topic, value, key=service.encode())
        deliveries.append(delivery)
        return 1
