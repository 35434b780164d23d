"""Cluster administration: readiness, and idempotent creation of the contract's topics."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from canarystream.contracts.topics import TOPICS, TopicSpec
from canarystream.errors import BrokerError
from canarystream.kafka.connection import Connection

__all__ = ["TopicResult", "broker_ready", "create_topics", "refusal"]


@dataclass(frozen=True)
class TopicResult:
    """What ``create_topics`` did with one topic."""

    name: str
    created: bool
    partitions: int
    replication_factor: int
    note: str = ""


def broker_ready(target: str | Connection, timeout: float = 3.0) -> bool:
    """Whether the cluster (a plain one at a bootstrap address, or a connection with its
    security settings) answers a metadata request."""
    client = {"bootstrap_servers": target} if isinstance(target, str) else target.client_kwargs()

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(**client, request_timeout_ms=2000)
        try:
            await asyncio.wait_for(admin.start(), timeout)
            await asyncio.wait_for(admin.describe_cluster(), timeout)
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            await admin.close()
        return True

    return asyncio.run(probe())


def _config(spec: TopicSpec) -> dict[str, str]:
    return {"cleanup.policy": spec.cleanup_policy, "retention.ms": str(spec.retention_ms)}


async def create_topics(
    connection: Connection, specs: tuple[TopicSpec, ...] = TOPICS
) -> list[TopicResult]:
    """Create the contract's topics that do not exist yet; leave existing ones alone.

    The replication factor is capped at the number of brokers (a one-node development cluster
    gets 1). An existing topic whose partition count differs from its spec is reported, not
    changed: partition counts of keyed topics must never change under a running service.
    """
    admin = AIOKafkaAdminClient(**connection.client_kwargs(), request_timeout_ms=15000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        brokers = len(cluster["brokers"])
        existing = dict(await _describe(admin, connection, specs))
        results: list[TopicResult] = []
        wanted: list[NewTopic] = []
        for spec in specs:
            name = connection.topic(spec.name)
            replication = min(spec.replication_factor, brokers)
            if name in existing:
                partitions = existing[name]
                note = ""
                if partitions != spec.partitions:
                    note = f"has {partitions} partitions, the contract says {spec.partitions}"
                results.append(TopicResult(name, False, partitions, replication, note))
                continue
            wanted.append(NewTopic(name, spec.partitions, replication, topic_configs=_config(spec)))
            results.append(TopicResult(name, True, spec.partitions, replication))
        if wanted:
            # Created concurrently by another process: the outcome we wanted.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted, timeout_ms=15000)
        return results
    except KafkaError as exc:
        reason = await refusal(connection)
        raise BrokerError(
            f"cannot create topics on {connection.bootstrap}: {exc}"
            + (f"\n  {reason}" if reason else "")
        ) from exc
    finally:
        await admin.close()


async def refusal(connection: Connection, timeout: float = 5.0) -> str:
    """Why the first bootstrap server refuses this client, or ``""`` when it does not.

    Clients report only that they could not bootstrap (the cause goes to their log); this
    names it: a failed authentication, an untrusted certificate, or a plaintext client at a
    TLS listener (the broker closes the connection).
    """
    kwargs = connection.client_kwargs()
    kwargs.pop("bootstrap_servers")
    host, _, port = connection.bootstrap.split(",")[0].rpartition(":")
    try:
        conn = await asyncio.wait_for(
            create_conn(host, int(port), request_timeout_ms=int(timeout * 1000), **kwargs),
            timeout,
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        protocol = kwargs["security_protocol"]
        return (
            f"{host}:{port} refused a {protocol} client: {type(exc).__name__}: {exc} "
            "(check kafka_security_protocol, kafka_sasl_mechanism, kafka_sasl_username, "
            "kafka_sasl_password and kafka_ssl_cafile)"
        )
    conn.close()
    return ""


async def _describe(
    admin: AIOKafkaAdminClient, connection: Connection, specs: tuple[TopicSpec, ...]
) -> list[tuple[str, int]]:
    names = set(await admin.list_topics())
    ours = [connection.topic(spec.name) for spec in specs if connection.topic(spec.name) in names]
    if not ours:
        return []
    described = await admin.describe_topics(ours)
    return [(topic["topic"], len(topic["partitions"])) for topic in described]
