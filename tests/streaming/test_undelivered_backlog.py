"""On the real broker: a backlog that Faust never hands to the agent is still processed.

Faust may drop messages it has fetched when it seeks after an assignment, or commit offsets
the agent has not had; the worker's stored checkpoint then lies behind what Kafka will
deliver. When more messages follow, the hole is noticed at the first of them. When nothing
follows (the end of a rollout's telemetry, a quiet service, an abort waiting on the
deployments topic), nothing would ever reveal it: the worker must find it on its own.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from canarystream.contracts.topics import TELEMETRY_TOPIC
from tests.support.broker import Stack, announce_then_send, key, replayed, rollout_events

pytestmark = pytest.mark.kafka


def _commit_at_end(stack: Stack, topic: str) -> dict[int, int]:
    """Commit the workers' group at the end of every partition of ``topic``, as if every
    message had been delivered; returns the ends of the partitions that have messages."""

    async def run() -> dict[int, int]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.bootstrap, group_id=stack.app_id, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer._client.add_topic(topic)
            await consumer._client.force_metadata_update()
            found = consumer._client.cluster.partitions_for_topic(topic)
            partitions = [TopicPartition(topic, p) for p in sorted(found)]
            ends = await consumer.end_offsets(partitions)
            consumer.assign(partitions)
            await consumer.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})
            return {tp.partition: end for tp, end in ends.items() if end}
        finally:
            await consumer.stop()

    return asyncio.run(run())


def test_a_backlog_committed_but_never_delivered_is_read_and_judged(stack: Stack) -> None:
    events = rollout_events("errors-x3", rps=40, duration="33m", seed=5)
    expected = replayed(events)
    starts = [e for e in events if e["type"] == "deployment_started"]
    telemetry = [e for e in events if e["type"] != "deployment_started"]
    half = len(telemetry) // 2
    first = stack.start_worker("w1")
    announce_then_send(stack, starts)
    stack.produce(telemetry[:half])
    stack.wait_for(lambda: len(stack.decisions()) >= 3, what="the first half's decisions")
    first.stop()
    published = len(stack.decisions())
    assert published < len(expected)

    # The rest arrives while no worker runs, and the group's offsets say it was delivered.
    stack.produce(telemetry[half:])
    ends = _commit_at_end(stack, stack.topic(TELEMETRY_TOPIC))
    assert ends, "the telemetry topic is empty"

    second = stack.start_worker("w2")
    stack.wait_until_caught_up(expected, timeout=90)
    assert sorted(map(key, stack.decisions())) == sorted(map(key, expected))
    assert "were not delivered" in second.log.read_text()
