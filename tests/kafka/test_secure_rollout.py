"""A rollout over the secured broker: the worker (user ``worker``) judges it, an actuator (user
``actuator``) applies the decisions, each connecting over SASL_SSL with SCRAM-SHA-512 and the
broker's CA; the broker has no plaintext listener at all."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml

from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.decision import Action
from canarystream.contracts.topics import ACTUATIONS_TOPIC
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset
from tests.support.broker import Stack, announce_then_send, key, replayed
from tests.support.secure_broker import SecureBroker, secure_broker, secure_stack
from tests.support.services import free_ports, listening_addresses

__all__ = ["secure_broker", "secure_stack"]

pytestmark = pytest.mark.kafka

KEY = "secure transport test key"


def test_the_worker_judges_and_an_actuator_applies_over_sasl_ssl(
    secure_broker: SecureBroker, secure_stack: Stack, tmp_path: Path
) -> None:
    stack = secure_stack
    # Event times near now: the actuator refuses decisions older than its maximum age. A whole
    # second, so that the simulator's steps (hence its draws) are those of every whole-second
    # start: the recording of seed 3, which is advanced once and rolled back. Other draws of
    # errors x3 at 0.3 canary requests/s are mostly held at the first stage's deadline.
    scenario = build_preset("errors-x3", rps=30, duration="20m", start_ts=time.time() // 1 - 60)
    events = list(simulate([scenario], seed=3))
    expected = replayed(events)
    assert [d.action for d in expected][-1] is Action.ROLLBACK

    assert stack.env["CANARYSTREAM_KAFKA_SASL_USERNAME"] == "worker"
    stack.env.update(
        {"CANARYSTREAM_SIGNING_SCHEME": "hmac-sha256", "CANARYSTREAM_SIGNING_KEY": KEY}
    )
    worker = stack.start_worker()

    route = tmp_path / "route.yaml"
    (metrics_port,) = free_ports(1)
    env = {
        **{k: v for k, v in stack.env.items() if k != "CANARYSTREAM_SIGNING_KEY"},
        **secure_broker.env("actuator"),
        "CANARYSTREAM_VERIFY_KEYS": orjson.dumps([KEY]).decode(),
    }
    command = [
        sys.executable, "-m", "canarystream", "actuate", "gateway-api", "--out", str(route),
        "--route", "shop", "--gateway", "edge", "--baseline-service", "shop-v1",
        "--canary-service", "shop-v2", "--service-port", "80", "--service", scenario.service,
        "--name", "secure", "--start-from", "earliest", "--metrics-port", str(metrics_port),
    ]  # fmt: skip
    log = tmp_path / "actuate.log"
    with log.open("wb") as sink:
        actuator = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        announce_then_send(stack, events)
        stack.wait_until_caught_up(expected)
        assert sorted(map(key, stack.decisions())) == sorted(map(key, expected))

        def reports() -> list[ActuationReport]:
            assert actuator.poll() is None, log.read_text()
            raw = stack.read(ACTUATIONS_TOPIC)
            return [ActuationReport.model_validate_json(value) for value in raw]

        stack.wait_for(lambda: len(reports()) >= len(expected), 60, "the actuator's reports")
        applied = reports()
        assert [(r.seq, r.status) for r in applied] == [
            (d.seq, ActuationStatus.APPLIED) for d in expected
        ], log.read_text()
        backend_refs = yaml.safe_load(route.read_text())["spec"]["rules"][0]["backendRefs"]
        assert [ref["weight"] for ref in backend_refs] == [100, 0]  # rolled back
        # Every listener of the product binds this host only unless configured otherwise.
        broker = secure_broker.broker
        for port in (broker.port, broker.controller_port, worker.port, metrics_port):
            assert listening_addresses(port) == {"127.0.0.1"}, port
    finally:
        if actuator.poll() is None:
            actuator.send_signal(signal.SIGTERM)
        try:
            code = actuator.wait(15)
        except subprocess.TimeoutExpired:
            actuator.kill()
            raise
    assert code == 0, log.read_text()
