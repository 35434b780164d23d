"""What the live demo runs against: a worker subprocess on its own topics, and Kafka clients.

Every run gets its own topic prefix and application id (``demo-<random>``), so it neither
sees nor disturbs other users of the broker; its topics are deleted at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from canarystream.contracts.codec import decode_decision
from canarystream.contracts.decision import Decision
from canarystream.contracts.signing import SIGNATURE_HEADER, Signer, Verifier
from canarystream.contracts.topics import (
    DECISIONS_TOPIC,
    DEPLOYMENTS_TOPIC,
    TELEMETRY_TOPIC,
    topic_spec,
)
from canarystream.kafka.connection import Connection
from canarystream.principals import generate_key_pair, write_access_file
from canarystream.settings import load_settings

__all__ = ["DemoStack", "WorkerProcess", "free_port", "free_ports"]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listened on a moment ago."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    (port,) = free_ports(1)
    return port


_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class WorkerProcess:
    """``python -m canarystream worker`` as a child process, and its web port."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    name: str = "worker"

    @classmethod
    def start(
        cls,
        env: dict[str, str],
        log: Path,
        *extra: str,
        name: str = "worker",
        append: bool = False,
        new_session: bool = False,
    ) -> WorkerProcess:
        """Start a worker on a free web port with ``env`` and ``extra`` arguments; do not wait.

        Its output goes to ``log`` (appended to, with ``append``); ``new_session`` keeps a
        Ctrl-C in the terminal from reaching it.
        """
        port = free_port()
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab" if append else "wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "canarystream", "worker", "--web-port", str(port), *extra],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=new_session,
            )
        return cls(port, process, log, name)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, timeout: float = 2.0) -> bytes:
        with urllib.request.urlopen(self.url(path), timeout=timeout) as response:
            body: bytes = response.read()
        return body

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        """The JSON document the worker serves at ``path``."""
        return orjson.loads(self.get(path, timeout))

    def rollouts(self) -> list[dict[str, Any]]:
        """The worker's ``/rollouts/`` view: one status dict per rollout it holds."""
        rollouts: list[dict[str, Any]] = self.get_json("/rollouts/", 2.0)["rollouts"]
        return rollouts

    def metrics(self) -> str:
        """The worker's Prometheus exposition text."""
        return self.get("/metrics", 5.0).decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of metric ``name`` whose label values contain ``labels``'."""
        total = 0.0
        for line in self.metrics().splitlines():
            sample, _, value = line.rpartition(" ")
            metric, _, rest = sample.partition("{")
            if metric != name:
                continue
            have = dict(_LABEL.findall(rest))
            if all(part in have.get(label, "") for label, part in labels.items()):
                total += float(value)
        return total

    def telemetry_consumed(self) -> float:
        """Telemetry messages the worker has consumed (a message delivered again, twice)."""
        return self.metric("canarystream_messages_consumed_total", topic=TELEMETRY_TOPIC)

    def telemetry_skipped(self) -> float:
        """Telemetry messages delivered again whose effect was already in the state."""
        return self.metric("canarystream_redelivered_messages_skipped_total", topic=TELEMETRY_TOPIC)

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until the web port answers; RuntimeError if the worker exits or never answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the worker exited ({self.process.returncode}):\n{self.tail()}")
            try:
                self.rollouts()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"the worker did not answer on port {self.port}:\n{self.tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) and wait for the exit."""
        if self.alive():
            self.process.send_signal(sig)
            self.process.wait(timeout=60)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


#: What the demo's principals may do: the deploy system starts rollouts, with any policy;
#: the worker's heartbeats move silent rollouts' event time on.
DEMO_GRANTS = (
    {
        "principals": ["deployer"],
        "actions": ["start", "supersede", "abort", "pause", "resume"],
        "services": ["*"],
        "policies": ["*"],
        "inline_policies": True,
    },
    {"principals": ["worker"], "actions": ["heartbeat"], "services": ["*"]},
)


@dataclass
class DemoStack:
    """One demo run's names on the broker: topic prefix, application id, data directory, and
    its principals' key pairs (in ``data_dir/keys``): the worker's signs its decisions, the
    deployer's the announcements, and the run's access file (``data_dir/access.yaml``)
    grants each its part."""

    bootstrap: str
    data_dir: Path

    def __post_init__(self) -> None:
        tag = f"demo-{uuid.uuid4().hex[:8]}"
        self.app_id = tag
        self.prefix = f"{tag}."
        self.connection = Connection(
            load_settings(kafka_bootstrap=self.bootstrap, topic_prefix=self.prefix)
        )
        # Signed and governed, as in production: the run's own keys, made at start.
        keys = self.data_dir / "keys"
        self.worker_key = generate_key_pair("worker", keys, force=True)
        self.deployer_key = generate_key_pair("deployer", keys, force=True)
        self.access_file = write_access_file(
            self.data_dir / "access.yaml", [self.worker_key, self.deployer_key], DEMO_GRANTS
        )

    def deployer(self) -> tuple[str, Signer]:
        """The principal that announces this run's rollouts, and its signer."""
        key = self.deployer_key
        return key.principal, Signer.ed25519(key.private_file.read_bytes())

    def topic(self, name: str) -> str:
        return self.connection.topic(name)

    def watch_env(self) -> dict[str, str]:
        """The settings with which ``canarystream status`` (or ``get``, ``notify``) reads this
        run's decisions, verified with its worker's public key."""
        return {
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "CANARYSTREAM_TOPIC_PREFIX": self.prefix,
            "CANARYSTREAM_SIGNING_SCHEME": "ed25519",
            "CANARYSTREAM_VERIFY_KEYS": orjson.dumps([self.worker_key.public_pem]).decode(),
        }

    def write_watch_env(self, path: Path) -> Path:
        """:meth:`watch_env` as a shell file of ``export`` lines (``. FILE`` loads it)."""
        lines = [f"export {name}={shlex.quote(value)}" for name, value in self.watch_env().items()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def start_worker(self, log: Path) -> WorkerProcess:
        """Start a worker on this run's topics (it creates them if missing); do not wait."""
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "CANARYSTREAM_TOPIC_PREFIX": self.prefix,
            "CANARYSTREAM_APP_ID": self.app_id,
            "CANARYSTREAM_DATA_DIR": str(self.data_dir),
            "CANARYSTREAM_SIGNING_SCHEME": "ed25519",
            "CANARYSTREAM_SIGNING_KEY": self.worker_key.private_file.read_text(),
            "CANARYSTREAM_ACCESS_FILE": str(self.access_file),
        }
        # In its own session: a Ctrl-C in the terminal reaches only the demo.
        return WorkerProcess.start(env, log, new_session=True)

    # ------------------------------------------------------------------ clients
    def consumer(self, **kwargs: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **self.connection.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **kwargs,
        )

    def partitions(self, topic: str) -> list[TopicPartition]:
        """The partitions of one of this run's topics (created from the contract's spec)."""
        name = self.topic(topic)
        return [TopicPartition(name, p) for p in range(topic_spec(topic).partitions)]

    async def follow_decisions(
        self, on_decision: Callable[[Decision], None], stop: asyncio.Event
    ) -> None:
        """Call ``on_decision`` for every decision on the topic, from the first, until ``stop``."""
        consumer = self.consumer(fetch_max_wait_ms=50)
        await consumer.start()
        try:
            consumer.assign(self.partitions(DECISIONS_TOPIC))
            while not stop.is_set():
                got = await consumer.getmany(timeout_ms=100)
                for messages in got.values():
                    for message in messages:
                        on_decision(decode_decision(message.value))
        finally:
            await consumer.stop()

    async def read_decisions(self) -> list[Decision]:
        """Every decision on the topic, in (deployment, seq) order; RuntimeError if one of
        them does not carry a valid signature of this run's worker key."""
        verifier = Verifier(ed25519_keys=[self.worker_key.public_pem])
        consumer = self.consumer()
        await consumer.start()
        try:
            partitions = self.partitions(DECISIONS_TOPIC)
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            out: list[Decision] = []
            remaining = {tp for tp in partitions if ends[tp] > 0}
            while remaining:
                got = await consumer.getmany(timeout_ms=500)
                for message in (m for messages in got.values() for m in messages):
                    signature = dict(message.headers or ()).get(SIGNATURE_HEADER)
                    if not verifier.verify(message.value, signature):
                        raise RuntimeError(
                            f"a decision on {message.topic} is not signed by the worker: "
                            f"{message.value[:200]!r}"
                        )
                    out.append(decode_decision(message.value))
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()
        return sorted(out, key=lambda d: (d.deployment, d.seq))

    async def backlog(self) -> int:
        """Messages of the source topics the worker has not yet committed (processed)."""
        consumer = self.consumer()
        admin = AIOKafkaAdminClient(**self.connection.client_kwargs())
        await consumer.start()
        await admin.start()
        try:
            partitions = [
                tp
                for topic in (TELEMETRY_TOPIC, DEPLOYMENTS_TOPIC)
                for tp in self.partitions(topic)
            ]
            ends = await consumer.end_offsets(partitions)
            committed = await admin.list_consumer_group_offsets(self.app_id)
            behind = 0
            for tp in partitions:
                done = committed.get(tp)
                behind += ends[tp] - (done.offset if done is not None and done.offset >= 0 else 0)
            return behind
        finally:
            await admin.close()
            await consumer.stop()

    async def delete_topics(self) -> int:
        """Delete this run's topics (contract topics and the worker's changelogs)."""
        admin = AIOKafkaAdminClient(**self.connection.client_kwargs())
        await admin.start()
        try:
            ours = [t for t in await admin.list_topics() if t.startswith(self.app_id)]
            if ours:
                with contextlib.suppress(KafkaError):
                    await admin.delete_topics(ours, timeout_ms=15000)
            return len(ours)
        finally:
            await admin.close()
