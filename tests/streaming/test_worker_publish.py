"""A batch whose decisions the broker did not acknowledge is neither acknowledged nor stored.

The worker's agent runs here on a fake stream, with the decisions producer replaced by one
that fails: no broker is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from canarystream.contracts.codec import decode_decision
from canarystream.contracts.topics import DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC
from canarystream.errors import BrokerError
from canarystream.settings import load_settings
from canarystream.streaming.gaps import GapFiller
from canarystream.streaming.processor import Inbound
from canarystream.streaming.worker import EXIT_UNPUBLISHED, StreamWorker
from tests.support.access import grant, principal, write_access

START = 1_790_000_000.0


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    refcount: int = 0

    def incref(self) -> None:
        self.refcount += 1


@dataclass
class FakeEvent:
    message: FakeMessage


@dataclass
class FakeStream:
    batches: list[list[FakeEvent]]
    acked: list[FakeEvent] = field(default_factory=list)

    async def take_events(self, n: int, within: float) -> AsyncIterator[list[FakeEvent]]:
        for batch in self.batches:
            yield batch

    async def ack(self, event: FakeEvent) -> None:
        self.acked.append(event)


class LogStart:
    async def log_start(self, topic: str, partition: int) -> int:
        return 0

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Inbound]:
        raise AssertionError("no holes here")


class FailingProducer:
    """Fails the first ``fail`` acknowledgements, then delivers."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.calls = 0
        self.topic: list[bytes] = []

    async def send(self, *, key: bytes, value: bytes, headers: Any = None) -> Any:
        self.calls += 1
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.calls <= self.fail:
            ack.set_exception(BrokerError("KafkaConnectionError: broker unreachable"))
        else:
            self.topic.append(value)
            ack.set_result(None)
        return ack


async def _acknowledged(**_: Any) -> Any:
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ack.set_result(None)
    return ack


DEPLOYER, WORKER = principal("deployer"), principal("worker")


def worker_with(producer: FailingProducer, tmp_path: Path) -> tuple[StreamWorker, list[Any]]:
    access = write_access(
        tmp_path / "access.yaml",
        [DEPLOYER, WORKER],
        [grant([DEPLOYER], ["start"]), grant([WORKER], ["heartbeat"])],
    )
    settings = load_settings(
        data_dir=tmp_path,
        publish_deadline_seconds=1.0,
        signing_key=WORKER.private_pem.decode(),
        access_file=access,
    )
    worker = StreamWorker(settings)
    worker.outbox.first_backoff = 0.01
    worker.index.ready.set()
    worker.gaps = GapFiller(LogStart(), worker._checkpointed)
    worker.decisions.send = producer.send  # type: ignore[method-assign]
    worker.verdicts.send = _acknowledged  # type: ignore[method-assign]
    worker.dead_letters.send_soon = lambda **_: None  # type: ignore[method-assign]
    worker._record_lag = lambda batch: None  # type: ignore[method-assign]
    changelog: list[Any] = []
    worker.table.send_changelog = lambda *args, **_: changelog.append(args)  # type: ignore

    def exit_(code: int) -> None:
        raise SystemExit(code)

    worker._exit = exit_
    return worker, changelog


def announcement(offset: int, service: str) -> FakeEvent:
    event = {
        "type": "deployment_started",
        "ts": START + offset,
        "deployment": f"{service}-d",
        "service": service,
        "baseline_version": "v1",
        "canary_version": "v2",
    }
    value = orjson.dumps(event)
    headers = DEPLOYER.headers(value)
    return FakeEvent(FakeMessage(DEPLOYMENTS_TOPIC, 0, offset, service.encode(), value, headers))


def test_decisions_are_retried_until_acknowledged_then_the_batch_is_stored(tmp_path) -> None:
    producer = FailingProducer(fail=3)
    worker, changelog = worker_with(producer, tmp_path)
    batch = [announcement(0, "alpha"), announcement(1, "beta")]
    stream = FakeStream([batch])
    asyncio.run(worker._consume(stream))  # type: ignore[arg-type]
    assert sorted(decode_decision(v).deployment for v in producer.topic) == ["alpha-d", "beta-d"]
    assert stream.acked == batch
    assert {args[1] for args in changelog} >= {b"alpha", b"beta"}
    assert worker.metrics.publish_failures._value.get() >= 1


def test_a_batch_whose_decisions_never_reach_the_broker_is_never_acked_or_stored(
    tmp_path,
) -> None:
    producer = FailingProducer(fail=10**9)
    worker, changelog = worker_with(producer, tmp_path)
    first, second = [announcement(0, "alpha")], [announcement(1, "beta")]
    stream = FakeStream([first, second])
    with pytest.raises(SystemExit) as exited:
        asyncio.run(worker._consume(stream))  # type: ignore[arg-type]
    assert exited.value.code == EXIT_UNPUBLISHED
    assert producer.calls >= 2, "publishing was retried"
    # The engine has the rollout in memory, but nothing of it may become durable: neither a
    # checkpoint on time nor one forced later stores it or acknowledges its message.
    assert "alpha-d" in worker.engine.rollouts
    asyncio.run(worker._checkpoint_when_idle())
    asyncio.run(worker._checkpoint())
    assert stream.acked == []
    assert changelog == []
    assert b"alpha" not in worker.table.data
    assert "beta-d" not in worker.engine.rollouts, "no later batch was applied"


def test_a_failure_elsewhere_in_a_batch_also_stops_before_anything_is_stored(tmp_path) -> None:
    producer = FailingProducer(fail=0)
    worker, changelog = worker_with(producer, tmp_path)

    def explode(batch: list[Inbound]) -> Any:
        raise RuntimeError("processor bug")

    worker.processor.process = explode  # type: ignore[method-assign]
    stream = FakeStream([[announcement(0, "alpha")]])
    with pytest.raises(SystemExit):
        asyncio.run(worker._consume(stream))  # type: ignore[arg-type]
    asyncio.run(worker._checkpoint())
    assert stream.acked == [] and changelog == []


def test_idle_rollouts_get_heartbeats_whose_time_moves_at_wall_speed(tmp_path) -> None:
    producer = FailingProducer(fail=0)
    worker, _ = worker_with(producer, tmp_path)
    worker.settings = load_settings(data_dir=tmp_path, idle_after_seconds=30)
    asyncio.run(worker._consume(FakeStream([[announcement(0, "alpha")]])))  # type: ignore
    rollout = worker.engine.active_by_service["alpha"]
    worker._telemetry_at["alpha"] = 1000.0
    worker._clock_at[rollout.deployment] = (rollout.clock, 1000.0)
    assert worker.heartbeats_due(1029.0) == []
    assert worker.heartbeats_due(1030.0) == [("alpha", round(rollout.clock + 30.0, 3))]
    telemetry = Inbound(TELEMETRY_TOPIC, 0, 5, b"alpha", b"[]")
    worker._note_activity([telemetry], [], 1031.0)  # telemetry: no longer idle
    assert worker.heartbeats_due(1031.0) == []
