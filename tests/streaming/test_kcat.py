"""A third-party Kafka client (kcat, librdkafka) produces telemetry and reads decisions."""

from __future__ import annotations

import shutil
import subprocess

import orjson
import pytest

from canarystream.contracts.authn import signed_headers
from canarystream.contracts.codec import decode_decision
from canarystream.contracts.topics import DECISIONS_TOPIC, DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC
from tests.support.broker import Stack, key, replayed, rollout_events
from tests.support.services import require_service

pytestmark = pytest.mark.kafka


@pytest.fixture
def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        require_service("kcat", "install it: bash deploy/services/install.sh")
    return path


def _produce(
    kcat: str, stack: Stack, topic: str, events: list[dict], *, headers: tuple[str, ...] = ()
) -> None:
    # librdkafka's default partitioner differs from the Java client's; murmur2 is what keeps a
    # service's telemetry on the partition of its deployments (see topics/).
    lines = b"".join(e["service"].encode() + b"|" + orjson.dumps(e) + b"\n" for e in events)
    subprocess.run(
        [kcat, "-P", "-b", stack.bootstrap, "-t", stack.topic(topic), "-K", "|",
         "-X", "topic.partitioner=murmur2_random", *(f"-H{h}" for h in headers)],
        input=lines,
        check=True,
        timeout=60,
    )  # fmt: skip


def _announce(kcat: str, stack: Stack, starts: list[dict]) -> None:
    """Each announcement signed as the deployer over its exact bytes, in kcat headers."""
    for start in starts:
        signed = signed_headers(stack.keys.signer("deployer"), "deployer", orjson.dumps(start))
        headers = [f"{name}={value.decode()}" for name, value in signed]
        _produce(kcat, stack, DEPLOYMENTS_TOPIC, [start], headers=tuple(headers))


def test_kcat_produces_telemetry_and_reads_the_decisions(stack: Stack, kcat: str) -> None:
    events = rollout_events("errors-x3", rps=30, duration="10m", seed=21)
    expected = replayed(events)
    worker = stack.start_worker()
    starts = [e for e in events if e["type"] == "deployment_started"]
    _announce(kcat, stack, starts)
    stack.wait_for(lambda: worker.get_json("/rollouts/")["rollouts"], what="the announcement")
    _produce(kcat, stack, TELEMETRY_TOPIC, [e for e in events if e not in starts])
    stack.wait_until_caught_up(expected)

    read = subprocess.run(
        [kcat, "-C", "-b", stack.bootstrap, "-t", stack.topic(DECISIONS_TOPIC), "-e",
         "-o", "beginning", "-q", "-f", "%k\t%s\n", "-X", "isolation.level=read_committed"],
        capture_output=True,
        check=True,
        timeout=60,
    )  # fmt: skip
    rows = [line.split(b"\t", 1) for line in read.stdout.splitlines() if line]
    decisions = [decode_decision(value) for _, value in rows]
    assert all(k.decode() == d.deployment for (k, _), d in zip(rows, decisions, strict=True))
    assert sorted(map(key, decisions)) == sorted(map(key, expected))
