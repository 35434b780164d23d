"""A live worker's rollout, end to end: the notifier and ``status`` see what the worker decided
-- the same decisions a replay of the input takes, the rollback notified once."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from canarystream.cli import app
from canarystream.notify.events import events_of
from tests.notify.conftest import Receiver
from tests.notify.test_notifier import config_for
from tests.notify.test_service import running
from tests.support.broker import (
    Stack,
    announce_then_send,
    kafka_bootstrap,
    replayed,
    rollout_events,
    stack,
)

__all__ = ["kafka_bootstrap", "stack"]


@pytest.mark.kafka
def test_a_regressed_rollout_notifies_its_rollback_once_and_status_shows_it(
    stack: Stack, receiver: Receiver
) -> None:
    events = rollout_events("errors-x3", rps=40, duration="20m", seed=5)
    expected = replayed(events)
    notable = [d for d in expected if events_of(d)]
    assert [d.action.value for d in notable] == ["rollback"]  # the scenario's point
    stack.start_worker()
    with running(stack, config_for(receiver)):
        announce_then_send(stack, events)
        stack.wait_until_caught_up(expected)
        stack.wait_for(
            lambda: len(receiver.bodies("/hooks/json")) >= 1, 60, "the json notification"
        )
    (body,) = receiver.bodies("/hooks/json")
    assert body["decision"] == notable[0].model_dump(mode="json")
    assert body["event"] == "rollback" and body["service"] == "errors-x3"
    assert [c["path"] for c in receiver.calls] == ["/hooks/json"]  # not the shop team's

    env = {
        "KAFKA_BOOTSTRAP": stack.bootstrap,
        "CANARYSTREAM_TOPIC_PREFIX": stack.prefix,
        **stack.keys.actuator_env(),
    }
    result = CliRunner().invoke(app, ["status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    shown = {r["service"]: r for r in orjson.loads(result.stdout)["rollouts"]}
    last = {d.service: d for d in expected}
    assert {s: r["last_decision"]["decision_id"] for s, r in shown.items()} == {
        s: d.decision_id for s, d in last.items()
    }
    assert shown["errors-x3"]["phase"] == "rolled_back"

    # get reads the deployment's partition alone: the worker keys decisions by deployment.
    deployment = expected[0].deployment
    timeline = CliRunner().invoke(app, ["get", deployment, "--json"], env=env)
    assert timeline.exit_code == 0, timeline.output
    got = orjson.loads(timeline.stdout)["decisions"]
    assert got == [d.model_dump(mode="json") for d in expected]
