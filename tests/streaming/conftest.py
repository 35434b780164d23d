"""Fixtures of the tests that need the real broker (``make test`` starts it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from canarystream.kafka.admin import broker_ready
from canarystream.kafka.connection import LOCAL_BOOTSTRAP
from canarystream.kafka.local import LocalKafka, default_home
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset
from tests.streaming.harness import Stack, free_port


def require_service(what: str, hint: str) -> None:
    """Skip when a service is missing; in CI (CI=true) fail instead: nothing skips there."""
    message = f"{what} is not available: {hint}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", LOCAL_BOOTSTRAP)
    if not broker_ready(bootstrap):
        require_service(f"a Kafka broker at {bootstrap}", "run `canarystream kafka up`")
    return bootstrap


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(kafka_bootstrap, tmp_path)
    try:
        yield stack
    finally:
        stack.stop()


def rollout_events(*presets: str, rps: float = 40, duration: str = "20m", seed: int = 3) -> list:
    """Closed-loop simulated events of the presets, side by side, in ts order."""
    return list(
        simulate([build_preset(name, rps=rps, duration=duration) for name in presets], seed=seed)
    )


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
