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

from canarystream.contracts.topics import DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC
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


def test_an_announcement_the_group_is_past_with_nothing_after_it_is_taken(stack: Stack) -> None:
    """The end state of a rebalance that lands as rollouts are announced.

    Faust can take messages that arrive as it resumes after a rebalance from the consumer
    without handing them to the agent, and its seek back to the committed offsets skips
    partitions with no committed offset above 0: on such a partition, the consumer's position
    stays past an announcement the agent never had. With no telemetry
    after it (a deployment system waits for the rollout to be taken), nothing reveals the
    hole. Here the group's offsets put the position past the announcements before the worker
    starts, which leaves the worker in the same state without waiting for the race.
    """
    events = rollout_events("healthy", "errors-x3", rps=40, duration="20m", seed=11)
    starts = [e for e in events if e["type"] == "deployment_started"]
    stack.produce(starts)
    ends = _commit_at_end(stack, stack.topic(DEPLOYMENTS_TOPIC))
    assert sum(ends.values()) == len(starts)

    worker = stack.start_worker("w1")
    names = {e["deployment"] for e in starts}

    def held() -> set[str]:
        return {r["deployment"] for r in worker.get_json("/rollouts/")["rollouts"]}

    stack.wait_for(lambda: names <= held(), timeout=60, what="the announcements to be taken")
    assert "are in the log but were not delivered" in worker.log.read_text()
