"""The real broker for tests: fixtures, and a stack of isolated topics, workers and clients.

Every stack gets its own topic prefix and application id, so tests share one broker without
seeing each other's messages or consumer groups. Workers are the product's
:class:`~canarystream.demo.stack.WorkerProcess`, started signed and governed as in production:
each stack makes its principals' keys and an access file (:mod:`tests.support.keys`), and its
announcements and control events are signed as ``deployer`` unless a test says otherwise.
A test module or conftest that needs the fixtures imports them from here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from canarystream.contracts.authn import signed_headers
from canarystream.contracts.codec import decode_decision, decode_events
from canarystream.contracts.decision import Decision
from canarystream.contracts.topics import (
    DEADLETTER_TOPIC,
    DECISIONS_TOPIC,
    DEPLOYMENTS_TOPIC,
    TELEMETRY_TOPIC,
)
from canarystream.demo.stack import WorkerProcess, free_port
from canarystream.errors import ContractError
from canarystream.kafka.admin import broker_ready, create_topics
from canarystream.kafka.connection import LOCAL_BOOTSTRAP, Connection
from canarystream.kafka.local import LocalKafka, default_home
from canarystream.kafka.publisher import EventPublisher
from canarystream.replay import replay_lines
from canarystream.settings import load_settings
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset
from tests.support.keys import generate_test_keys
from tests.support.services import require_service

__all__ = [
    "Stack",
    "announce_then_send",
    "kafka_bootstrap",
    "key",
    "private_broker",
    "replayed",
    "rollout_events",
    "stack",
]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The broker at ``KAFKA_BOOTSTRAP`` (default: the local one); skipped, or failed in CI,
    when it does not answer."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", LOCAL_BOOTSTRAP)
    # With the security settings of the environment, as the stacks' clients and workers.
    if not broker_ready(Connection(load_settings(kafka_bootstrap=bootstrap))):
        require_service(f"a Kafka broker at {bootstrap}", "run `canarystream kafka up`")
    return bootstrap


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    """A :class:`Stack` of this test alone; its workers are stopped and its topics deleted at
    the end."""
    stack = Stack(kafka_bootstrap, tmp_path)
    try:
        yield stack
    finally:
        stack.stop()
        stack.delete_topics()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker of this test alone (its own ports and storage), which it may stop and start."""
    broker = LocalKafka(
        default_home(), port=free_port(), controller_port=free_port(), data_dir=tmp_path / "kafka"
    )
    broker.start(timeout=120)
    try:
        yield broker
    finally:
        broker.wipe()


def rollout_events(*presets: str, rps: float = 40, duration: str = "20m", seed: int = 3) -> list:
    """Closed-loop simulated events of the presets, side by side, in ts order."""
    return list(
        simulate([build_preset(name, rps=rps, duration=duration) for name in presets], seed=seed)
    )


@dataclass
class Stack:
    """Topics of one test, the workers reading them, and clients for both ends."""

    bootstrap: str
    workdir: Path
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}.")
    workers: list[WorkerProcess] = field(default_factory=list)
    security: dict[str, str] = field(default_factory=dict)  # the stack's own clients' settings
    worker_env: dict[str, str] = field(default_factory=dict)  # the workers' security settings

    def __post_init__(self) -> None:
        self.app_id = self.prefix.rstrip(".")
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "CANARYSTREAM_TOPIC_PREFIX": self.prefix,
            "CANARYSTREAM_APP_ID": self.app_id,
            # Tests compare the worker with a replay of the input they generated, which has no
            # heartbeats: a rollout gets none unless a test asks (test_heartbeats.py).
            "CANARYSTREAM_IDLE_AFTER_SECONDS": "3600",
            **self.worker_env,
        }
        # Signed and governed, as in production: the worker's key, the actuators' trust in
        # it, and an access file granting the stack's principals their parts (a worker
        # started with its own --access uses that one instead).
        self.keys = generate_test_keys(self.workdir / "keys")
        self.access_file = self.keys.write_access(self.workdir / "access.yaml")
        self.env.update(self.keys.worker_env(), CANARYSTREAM_ACCESS_FILE=str(self.access_file))
        self.connection = Connection(
            load_settings(
                **{"kafka_bootstrap": self.bootstrap, **self.security},
                topic_prefix=self.prefix,
            )
        )
        asyncio.run(create_topics(self.connection))

    def topic(self, name: str) -> str:
        return self.connection.topic(name)

    def actuator_env(self) -> dict[str, str]:
        """The environment of an actuator on this stack: the workers' without the signing
        key, and the worker's public key to verify decisions with."""
        env = {k: v for k, v in self.env.items() if k != "CANARYSTREAM_SIGNING_KEY"}
        return {**env, **self.keys.actuator_env()}

    # -------------------------------------------------------------- workers
    def start_worker(self, name: str = "w1", *extra: str) -> WorkerProcess:
        env = {**self.env, "CANARYSTREAM_DATA_DIR": str(self.workdir / name)}
        log = self.workdir / f"{name}.log"
        worker = WorkerProcess.start(env, log, *extra, name=name, append=True)
        self.workers.append(worker)
        try:
            worker.wait_ready(90)
        except RuntimeError as exc:
            raise AssertionError(f"worker {name}: {exc}") from None
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.kill(signal.SIGTERM if worker.alive() else signal.SIGKILL)

    # -------------------------------------------------------------- clients
    def produce(
        self, events: list[dict[str, Any]], *, batch: int = 20, signed_by: str | None = "deployer"
    ) -> int:
        """Publish ``events`` (telemetry batched by ``batch``); each deployments-topic message
        is signed as ``signed_by``, a principal of :attr:`keys` (None: unsigned)."""
        signed_as = self.keys.signed_as(signed_by) if signed_by else None

        async def run() -> int:
            async with EventPublisher(self.connection, signed_as=signed_as) as publisher:
                return await publisher.send(events, batch=batch)

        return asyncio.run(run())

    def produce_raw(
        self, topic: str, values: list[bytes], key: bytes | None, *, signed_by: str | None = None
    ) -> None:
        """Produce ``values`` as they are; ``signed_by``: each signed as that principal of
        :attr:`keys`."""
        signer = self.keys.signer(signed_by) if signed_by else None

        async def run() -> None:
            producer = AIOKafkaProducer(**self.connection.client_kwargs())
            await producer.start()
            try:
                for value in values:
                    headers = signed_headers(signer, signed_by, value) if signer else None
                    await producer.send(self.topic(topic), value, key=key, headers=headers)
                await producer.flush()
            finally:
                await producer.stop()

        asyncio.run(run())

    def delete_topics(self) -> list[str]:
        """Delete the stack's topics and its workers' internal ones (changelogs, Faust's
        assignor), once its workers are stopped: a broker holds a few files open per
        partition, and a test run of hundreds of stacks would otherwise exhaust them."""

        async def run() -> list[str]:
            admin = AIOKafkaAdminClient(**self.connection.client_kwargs())
            await admin.start()
            try:
                ours = sorted(
                    name
                    for name in await admin.list_topics()
                    if name.startswith((self.prefix, f"{self.app_id}-"))
                )
                if ours:
                    await admin.delete_topics(ours)
                return ours
            finally:
                await admin.close()

        return asyncio.run(run())

    def set_topic_config(self, topic: str, configs: dict[str, str]) -> None:
        """Set configuration entries of one of the stack's topics, keeping its other overrides."""

        async def run() -> None:
            admin = AIOKafkaAdminClient(**self.connection.client_kwargs())
            await admin.start()
            try:
                name = self.topic(topic)
                (described,) = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, name)]
                )
                entries = described.resources[0][4]
                # (name, value, read_only, source, ...): source 1 is a topic's own override
                merged = {entry[0]: entry[1] for entry in entries if entry[3] == 1}
                merged.update(configs)
                resource = ConfigResource(ConfigResourceType.TOPIC, name, merged)
                for response in await admin.alter_configs([resource]):
                    for error, message, *_ in response.resources:
                        assert error == 0, f"altering {topic} failed: {message}"
            finally:
                await admin.close()

        asyncio.run(run())

    def read(self, topic: str) -> list[bytes]:
        """Every message value of a topic from the beginning, as committed."""
        return [message.value for message in self.read_messages(topic)]

    def read_messages(self, topic: str) -> list[Any]:
        """Every message (aiokafka records: value, headers...) of a topic, as committed."""

        async def run() -> list[Any]:
            consumer = AIOKafkaConsumer(
                **self.connection.client_kwargs(),
                group_id=None,
                isolation_level="read_committed",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            try:
                name = self.topic(topic)
                client = consumer._client
                client.add_topic(name)
                found = None
                for _ in range(50):  # a topic just created may take a moment to show up
                    await client.force_metadata_update()
                    if found := client.cluster.partitions_for_topic(name):
                        break
                    await asyncio.sleep(0.1)
                assert found, f"topic {name} is not in the cluster's metadata"
                partitions = [TopicPartition(name, p) for p in sorted(found)]
                consumer.assign(partitions)
                ends = await consumer.end_offsets(partitions)
                out: list[Any] = []
                remaining = {tp for tp in partitions if ends[tp] > 0}
                while remaining:
                    got = await consumer.getmany(timeout_ms=500)
                    for messages in got.values():
                        out.extend(messages)
                    for tp in list(remaining):
                        if await consumer.position(tp) >= ends[tp]:
                            remaining.discard(tp)
                return out
            finally:
                await consumer.stop()

        return asyncio.run(run())

    def recorded_events(self) -> list[Any]:
        """Every event of the telemetry and deployments topics (arrays flattened), in ts order.

        What a replay of the recorded topics reads: heartbeats included, undecodable messages
        left out (the worker dead-letters them).
        """
        events: list[Any] = []
        for topic in (TELEMETRY_TOPIC, DEPLOYMENTS_TOPIC):
            for raw in self.read(topic):
                try:
                    values, _ = decode_events(raw)
                except ContractError:
                    continue
                events.extend(values)
        ordered = [e for e in events if isinstance(e, dict) and type(e.get("ts")) in (int, float)]
        return sorted(ordered, key=lambda e: e["ts"])

    def decisions(self) -> list[Decision]:
        return [decode_decision(raw) for raw in self.read(DECISIONS_TOPIC)]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for raw in self.read(DEADLETTER_TOPIC)]

    def wait_for(self, predicate, timeout: float = 120.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.5)
        logs = "\n\n".join(f"--- {w.name}\n{w.tail(40)}" for w in self.workers)
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def wait_until_caught_up(self, expected: list[Decision], timeout: float = 120.0) -> None:
        """Until the decisions topic holds at least as many decisions as ``expected``."""
        self.wait_for(
            lambda: len(self.decisions()) >= len(expected), timeout, "decisions to be published"
        )


def key(decision: Decision) -> tuple[str, int, str, float, float]:
    """What must agree between live and replay."""
    return (decision.deployment, decision.seq, decision.action.value, decision.ts,
            decision.traffic_percent)  # fmt: skip


def replayed(events: list[dict]) -> list:
    """The decisions of an offline replay of ``events`` (one line each)."""
    out: list = []
    replay_lines([("events", [orjson.dumps(e) for e in events])], on_decision=out.append)
    return out


def announce_then_send(stack: Stack, events: list[dict], *, batch: int = 20) -> None:
    """Announce the rollouts, wait until a worker holds them, then send the telemetry.

    Deployment systems announce a rollout before any canary traffic exists; the wait keeps
    baseline telemetry of the first milliseconds from racing the announcement.
    """
    starts = [e for e in events if e["type"] == "deployment_started"]
    stack.produce(starts)
    names = {e["deployment"] for e in starts}
    stack.wait_for(
        lambda: (
            names
            <= {
                r["deployment"]
                for w in stack.workers
                if w.alive()
                for r in w.get_json("/rollouts/")["rollouts"]
            }
        ),
        what="rollouts to be announced",
    )
    stack.produce([e for e in events if e["type"] != "deployment_started"], batch=batch)
