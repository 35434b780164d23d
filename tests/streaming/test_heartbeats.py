"""On the real broker: a rollout whose telemetry stops entirely still reaches its no-data deadline.

The worker's heartbeats move the silent rollout's event time on at wall speed; they are
recorded on the deployments topic, so a replay of the recorded topics decides as the worker did.
"""

from __future__ import annotations

import random
import time

import orjson
import pytest

from canarystream.contracts.decision import Action
from canarystream.replay import replay_lines
from tests.support.broker import Stack, announce_then_send, key

pytestmark = pytest.mark.kafka

START = 1_790_000_000.0
TELEMETRY_SECONDS = 60.0
POLICY = {
    "name": "quiet",
    "stages": [{"traffic_percent": 10, "min_duration": "10m"}],
    "guards": {"no_data": {"hold_after": "15s", "rollback_after": "30s"}},
    "rollback_verification": {"window": "20s"},
}


def quiet_rollout() -> list[dict]:
    """An announcement, then 60 s of requests of both versions, then nothing at all."""
    rnd = random.Random(4)
    events: list[dict] = [
        {"type": "deployment_started", "ts": START, "deployment": "quiet-1", "service": "quiet",
         "baseline_version": "v1", "canary_version": "v2", "policy": POLICY},
    ]  # fmt: skip
    for i in range(1, int(TELEMETRY_SECONDS * 20) + 1):
        version = "v2" if rnd.random() < 0.1 else "v1"
        events.append(
            {"type": "request", "ts": START + i / 20, "service": "quiet", "version": version,
             "latency_ms": round(rnd.uniform(10, 30), 3), "status": 200}
        )  # fmt: skip
    return events


def test_a_service_that_goes_silent_is_rolled_back_within_its_no_data_deadline(
    stack: Stack,
) -> None:
    stack.env["CANARYSTREAM_HEARTBEAT_SECONDS"] = "1"
    stack.env["CANARYSTREAM_IDLE_AFTER_SECONDS"] = "3"
    worker = stack.start_worker()
    announce_then_send(stack, quiet_rollout())

    def actions() -> list[Action]:
        return [d.action for d in sorted(stack.decisions(), key=lambda d: d.seq)]

    # Hold at 15 s of silence, roll back at 30 s, and (no traffic to show recovery) page 20 s
    # later: about a minute of wall time once the heartbeats start.
    stack.wait_for(lambda: Action.ROLLBACK_NOT_RECOVERING in actions(), 180, "the rollback")
    assert actions() == [
        Action.ADVANCE, Action.HOLD, Action.ROLLBACK, Action.ROLLBACK_NOT_RECOVERING
    ]  # fmt: skip
    live = {d.action: d for d in stack.decisions()}
    last_telemetry = START + TELEMETRY_SECONDS
    assert "no canary telemetry" in live[Action.ROLLBACK].summary
    tick = 5.0
    assert live[Action.ROLLBACK].ts <= last_telemetry + 30 + 2 * tick
    assert worker.metric("canarystream_heartbeats_sent_total") >= 3

    time.sleep(3)  # the rollout has ended: no more heartbeats, nothing more to decide
    worker.kill()
    recorded = stack.recorded_events()
    heartbeats = [e for e in recorded if e["type"] == "heartbeat"]
    assert heartbeats and all(e["service"] == "quiet" for e in heartbeats)
    replayed: list = []
    replay_lines([("topics", [orjson.dumps(e) for e in recorded])], on_decision=replayed.append)
    decided = stack.decisions()
    assert len({(d.deployment, d.seq) for d in decided}) == len(decided)
    assert sorted(map(key, decided)) == sorted(map(key, replayed))
