"""Reading partitions from their first message to the end they had when the read began."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from canarystream.errors import BrokerError
from canarystream.kafka.connection import Connection

__all__ = ["partition_count", "read_to_end"]


async def partition_count(connection: Connection, topic: str) -> int | None:
    """The partition count of ``topic`` (its name in the cluster); None if it does not exist."""
    consumer = AIOKafkaConsumer(**connection.client_kwargs(), group_id=None)
    try:
        await consumer.start()
        client = consumer._client
        client.add_topic(topic)
        await client.force_metadata_update()
        partitions = client.cluster.partitions_for_topic(topic)
        return None if partitions is None else len(partitions)
    except KafkaError as exc:
        raise BrokerError(f"cannot read the partitions of {topic}: {exc}") from exc
    finally:
        await consumer.stop()


async def read_to_end(
    connection: Connection, topic: str, partitions: Iterable[int] | None = None
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every message of the partitions (default: all) from the first to the end offsets taken
    at the start, in offset order per partition. Messages appended meanwhile are not read."""
    consumer = AIOKafkaConsumer(
        **connection.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    try:
        await consumer.start()
        if partitions is None:
            client = consumer._client
            client.add_topic(topic)
            await client.force_metadata_update()
            partitions = sorted(client.cluster.partitions_for_topic(topic) or ())
        assigned = [TopicPartition(topic, p) for p in partitions]
        if not assigned:
            return
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        remaining = {tp for tp in assigned if await consumer.position(tp) < ends[tp]}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=2000)
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset < ends[tp]:
                        yield message
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    except KafkaError as exc:
        raise BrokerError(f"cannot read {topic}: {exc}") from exc
    finally:
        await consumer.stop()
