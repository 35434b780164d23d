"""On the broker: a worker with an access file, and replay --access of what it read, agree.

The deployments topic gets a signed announcement, signed commands, and hostile ones (unsigned,
an unknown key, a principal without the grant, a signed command published again); telemetry in
between. Phases wait for the worker, so it reads the inputs in event-time order as a replay of
the recording does. The recording is read back from the broker with its headers (signed
messages become envelope lines) and replayed with the same access file.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from canarystream.contracts.decision import Decision
from canarystream.contracts.topics import (
    DEPLOYMENTS_TOPIC,
    TELEMETRY_TOPIC,
    VERDICTS_TOPIC,
)
from canarystream.engine import Engine
from canarystream.governance.access import load_access
from canarystream.governance.envelope import recorded_line
from canarystream.replay import replay_lines
from tests.support.access import Principal, grant, principal, write_access
from tests.support.broker import Stack
from tests.support.streams import SERVICE, Stream

pytestmark = pytest.mark.kafka

DEPLOY, ALICE, BOB, WORKER, MALLORY = (
    principal(n) for n in ("deploy-bot", "alice", "bob", "worker", "mallory")
)


def send(stack: Stack, topic: str, events: list[dict[str, Any]], who: Principal | None) -> None:
    """Produce each event as one message keyed by its service, signed by ``who``."""

    async def run() -> None:
        producer = AIOKafkaProducer(**stack.connection.client_kwargs())
        await producer.start()
        try:
            for event in events:
                value = orjson.dumps(event)
                headers = who.headers(value) if who is not None else None
                await producer.send(
                    stack.topic(topic), value, key=SERVICE.encode(), headers=headers
                )
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def _fields(decision: Decision) -> tuple[Any, ...]:
    return (decision.seq, decision.action.value, decision.ts, decision.summary)


def test_the_governed_worker_and_replay_with_access_agree(stack: Stack, tmp_path: Path) -> None:
    access = write_access(
        tmp_path / "access.yaml",
        [DEPLOY, ALICE, BOB, WORKER],
        [
            grant([DEPLOY], ["start"]),
            grant([ALICE], ["abort", "pause", "resume", "approve"], [SERVICE]),
            grant([BOB], ["abort", "pause"], ["search"]),
            grant([WORKER], ["heartbeat"]),
        ],
    )
    stack.env.update(
        CANARYSTREAM_SIGNING_SCHEME="ed25519",
        CANARYSTREAM_SIGNING_KEY=WORKER.private_pem.decode(),
    )
    worker = stack.start_worker("governed", "--access", str(access))
    stream = Stream(5)
    telemetry = 0

    def traffic(start: float, end: float) -> None:
        nonlocal telemetry
        events = stream.requests(start, end, rate=5)
        send(stack, TELEMETRY_TOPIC, events, None)
        telemetry += len(events)
        stack.wait_for(lambda: worker.telemetry_consumed() >= telemetry, 120, "telemetry read")

    def verdicts(count: int) -> None:
        stack.wait_for(lambda: len(stack.read(VERDICTS_TOPIC)) >= count, 120, "verdicts")

    send(stack, DEPLOYMENTS_TOPIC, [stream.started()], DEPLOY)
    verdicts(1)
    traffic(0, 30)
    pause = stream.control("paused", 31)
    send(stack, DEPLOYMENTS_TOPIC, [stream.control("aborted", 30.5, actor="alice")], None)
    send(stack, DEPLOYMENTS_TOPIC, [stream.control("aborted", 30.6)], MALLORY)
    send(stack, DEPLOYMENTS_TOPIC, [stream.control("aborted", 30.7)], BOB)
    send(stack, DEPLOYMENTS_TOPIC, [pause, pause], ALICE)  # the same bytes twice
    verdicts(6)
    traffic(31, 60)
    send(stack, DEPLOYMENTS_TOPIC, [stream.control("resumed", 61)], ALICE)
    verdicts(7)
    traffic(61, 90)
    send(stack, DEPLOYMENTS_TOPIC, [stream.control("aborted", 91, actor="bob")], ALICE)
    stack.wait_for(
        lambda: any(d.summary.startswith("aborted") for d in stack.decisions()), 120, "abort"
    )

    live = stack.decisions()
    judged = [orjson.loads(v) for v in stack.read(VERDICTS_TOPIC)]
    letters = sorted(letter["reason"] for letter in stack.dead_letters())
    recorded = [
        (orjson.loads(m.value)["ts"], recorded_line(m.value, m.headers))
        for topic in (DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC)
        for m in stack.read_messages(topic)
    ]
    lines = [line for _, line in sorted(recorded, key=lambda item: item[0])]
    replayed: list[Decision] = []
    result = replay_lines(
        [("recording", lines)],
        engine=Engine(access=load_access(access)),
        on_decision=replayed.append,
    )

    assert [_fields(d) for d in live] == [_fields(d) for d in replayed]
    assert live[-1].summary.startswith("aborted by alice")
    assert letters == ["duplicate_control", "unauthorized", "unauthorized", "unauthorized"]
    assert result.rejected == {"unauthorized": 3, "duplicate_control": 1}
    assert [(v["verdict"], v["principal"]) for v in judged] == [
        ("accepted", "deploy-bot"),
        ("refused", None),
        ("refused", None),
        ("refused", "bob"),
        ("accepted", "alice"),
        ("refused", "alice"),
        ("accepted", "alice"),
        ("accepted", "alice"),
    ]
