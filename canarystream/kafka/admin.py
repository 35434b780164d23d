"""Cluster administration: readiness, and idempotent creation of the contract's topics."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from canarystream.contracts.topics import TOPICS, TopicSpec
from canarystream.errors import BrokerError
from canarystream.kafka.connection import Connection

__all__ = ["TopicResult", "broker_ready", "create_topics"]


@dataclass(frozen=True)
class TopicResult:
    """What ``create_topics`` did with one topic."""

    name: str
    created: bool
    partitions: int
    replication_factor: int
    note: str = ""


def broker_ready(bootstrap: str, timeout: float = 3.0) -> bool:
    """Whether the cluster at ``bootstrap`` answers a metadata request."""

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
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
        raise BrokerError(f"cannot create topics on {connection.bootstrap}: {exc}") from exc
    finally:
        await admin.close()


async def _describe(
    admin: AIOKafkaAdminClient, connection: Connection, specs: tuple[TopicSpec, ...]
) -> list[tuple[str, int]]:
    names = set(await admin.list_topics())
    ours = [connection.topic(spec.name) for spec in specs if connection.topic(spec.name) in names]
    if not ours:
        return []
    described = await admin.describe_topics(ours)
    return [(topic["topic"], len(topic["partitions"])) for topic in described]
