"""A test's stack leaves no topic behind on the broker once it is done."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.broker import Stack, announce_then_send, rollout_events

pytestmark = pytest.mark.kafka


def _topics(stack: Stack) -> set[str]:
    async def run() -> set[str]:
        admin = AIOKafkaAdminClient(**stack.connection.client_kwargs())
        await admin.start()
        try:
            return {
                t
                for t in await admin.list_topics()
                if t.startswith((stack.prefix, f"{stack.app_id}-"))
            }
        finally:
            await admin.close()

    return asyncio.run(run())


def test_a_stack_deletes_its_topics_and_its_workers_internal_ones(stack: Stack) -> None:
    events = rollout_events("healthy", rps=20, duration="2m", seed=1)
    stack.start_worker("w1")
    announce_then_send(stack, events)
    stack.stop()
    before = _topics(stack)
    assert stack.topic("canary.decisions.v1") in before
    assert any(t.endswith("-changelog") for t in before), before  # the worker's state
    deleted = stack.delete_topics()
    assert set(deleted) == before
    deadline = 30
    while _topics(stack) and deadline:
        asyncio.run(asyncio.sleep(1))
        deadline -= 1
    assert _topics(stack) == set()
