"""A worker that loses a partition drops the per-rollout series of its services, so a rollout
that moved to another worker is not reported (and alerted on) by both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from faust.types import TP

from canarystream.contracts.topics import DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC
from tests.streaming.test_worker_publish import (
    DEPLOYER,
    START,
    FailingProducer,
    FakeEvent,
    FakeMessage,
    FakeStream,
    worker_with,
)


def _announce(service: str, partition: int) -> FakeEvent:
    event = {
        "type": "deployment_started",
        "ts": START,
        "deployment": f"{service}-d",
        "service": service,
        "baseline_version": "v1",
        "canary_version": "v2",
    }
    value = orjson.dumps(event)  # signed by the deployer, as the worker's access file requires
    message = FakeMessage(
        DEPLOYMENTS_TOPIC, partition, 0, service.encode(), value, DEPLOYER.headers(value)
    )
    return FakeEvent(message)


def test_revoked_partitions_take_their_rollouts_series_with_them(tmp_path: Path) -> None:
    worker, _ = worker_with(FailingProducer(fail=0), tmp_path)
    asyncio.run(worker._consume(FakeStream([[_announce("alpha", 3), _announce("beta", 5)]])))  # type: ignore[arg-type]
    registry = worker.metrics.registry
    stage = "canarystream_rollout_stage"
    assert registry.get_sample_value(stage, {"deployment": "alpha-d"}) == 0
    assert registry.get_sample_value("canarystream_active_rollouts") == 2

    revoked = {TP(worker.connection.topic(TELEMETRY_TOPIC), 3)}
    asyncio.run(worker._on_revoked(worker.app, revoked))

    assert registry.get_sample_value(stage, {"deployment": "alpha-d"}) is None
    phase = {"deployment": "alpha-d", "phase": "running"}
    assert registry.get_sample_value("canarystream_rollout_phase", phase) is None
    assert registry.get_sample_value(stage, {"deployment": "beta-d"}) == 0
    assert registry.get_sample_value("canarystream_active_rollouts") == 1
