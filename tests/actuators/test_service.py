"""The actuator service on the real broker: signed decisions in, reports out, nothing else."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from typer.testing import CliRunner

from canarystream.actuators import (
    ActuationMetrics,
    Actuator,
    HandlerOptions,
    HAProxyConfig,
    HAProxyRouter,
    MemoryRouter,
    Plugin,
    Registry,
    traffic,
)
from canarystream.actuators.base import TrafficBackend
from canarystream.actuators.config import Scope
from canarystream.actuators.service import ActuatorService, group_id_for
from canarystream.cli import app
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.codec import encode_decision
from canarystream.contracts.decision import Action, Decision, Phase
from canarystream.contracts.signing import SIGNATURE_HEADER, Signer
from canarystream.contracts.topics import ACTUATIONS_TOPIC, DEADLETTER_TOPIC, DECISIONS_TOPIC
from canarystream.errors import ConfigError
from canarystream.kafka.connection import Connection
from canarystream.settings import load_settings
from tests.support.actuators import (
    DEPLOYMENT,
    EVERY_SERVICE,
    HAProxy,
    ProtocolOnly,
    count_cohorts,
    make_decision,
)
from tests.support.broker import Stack
from tests.support.services import free_ports

KEY = "actuator service test key"
SIGNER = Signer.hmac(KEY)
ROLLBACK = {"action": Action.ROLLBACK, "traffic_percent": 0.0, "phase": Phase.ROLLED_BACK}

Message = tuple[bytes, bytes | None, bytes | None]  # key, value, signature header


def signed(decision: Decision, signer: Signer = SIGNER) -> Message:
    """A decision as the worker publishes it: signature over the exact value bytes."""
    value = encode_decision(decision)
    return decision.deployment.encode(), value, signer.sign(value).encode("ascii")


def publish(stack: Stack, messages: list[Message]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(**stack.connection.client_kwargs())
        await producer.start()
        try:
            for key, value, signature in messages:
                headers = [] if signature is None else [(SIGNATURE_HEADER, signature)]
                await producer.send(stack.topic(DECISIONS_TOPIC), value, key=key, headers=headers)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def reports(stack: Stack) -> list[ActuationReport]:
    return [ActuationReport.model_validate_json(raw) for raw in stack.read(ACTUATIONS_TOPIC)]


def wait_for_reports(stack: Stack, count: int, timeout: float = 15.0) -> list[ActuationReport]:
    stack.wait_for(lambda: len(reports(stack)) >= count, timeout, f"{count} reports")
    return reports(stack)


def build(
    stack: Stack,
    router: TrafficBackend,
    *,
    name: str = "t",
    **kw: Any,
) -> ActuatorService:
    kw.setdefault("scope", EVERY_SERVICE)
    actuator = Actuator(
        router, verifier=SIGNER.verifier(), metrics=ActuationMetrics(CollectorRegistry()), **kw
    )
    return ActuatorService(
        actuator,
        stack.connection,
        name=name,
        metrics_port=0,
        metrics_host="127.0.0.1",
        start_from="earliest",
        poll_seconds=0.2,
    )


@contextmanager
def running(service: ActuatorService) -> Iterator[ActuatorService]:
    """Run the service in a thread of its own (as it would run in its own process)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(service.run())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not service.ready.wait(0.1):
            assert not errors and time.monotonic() < deadline, errors or "not ready in 20 s"
        yield service
    finally:
        service.stop()
        thread.join(15)
    assert not thread.is_alive(), "the service did not stop"
    assert not errors, errors


def scrape(service: ActuatorService) -> str:
    assert service.metrics_address is not None
    host, port = service.metrics_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def sample(text: str, line: str) -> float:
    """The value of one exposition line, e.g. ``name{label="x"}``; 0 if absent."""
    for row in text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.kafka
def test_applies_signed_decisions_and_refuses_everything_else(stack: Stack) -> None:
    router = MemoryRouter()
    first = make_decision(0, traffic_percent=10.0)
    tampered_key, tampered, tampered_signature = signed(make_decision(2, traffic_percent=50.0))
    edited = tampered.replace(b'"traffic_percent":50.0', b'"traffic_percent":100.0')
    messages = [
        signed(first),
        signed(first),  # redelivered: duplicate
        signed(make_decision(1, traffic_percent=25.0)),
        (DEPLOYMENT.encode(), encode_decision(make_decision(2, Action.PROMOTE, 100.0)), None),
        signed(make_decision(2, Action.PROMOTE, 100.0), Signer.hmac("another key")),
        (tampered_key, edited, tampered_signature),  # signed, then edited in flight
        signed(make_decision(0, Action.HOLD, 10.0, Phase.HELD)),  # older than seq 1: stale
        signed(make_decision(3, **ROLLBACK)),
    ]
    assert edited != tampered
    service = build(stack, router)
    with running(service):
        publish(stack, messages)
        got = wait_for_reports(stack, len(messages))
        metrics = scrape(service)

    assert [(r.seq, r.status.value) for r in got] == [
        (0, "applied"),
        (0, "rejected"),
        (1, "applied"),
        (2, "rejected"),
        (2, "rejected"),
        (2, "rejected"),
        (0, "rejected"),
        (3, "applied"),
    ]
    assert [r.traffic_percent_observed for r in got if r.status is ActuationStatus.APPLIED] == [
        10.0,
        25.0,
        0.0,
    ]
    assert "applied already" in got[1].detail and "not signed" in got[3].detail
    assert "not valid" in got[4].detail and "not valid" in got[5].detail
    assert "not newer than seq 1" in got[6].detail
    assert all(r.deployment == DEPLOYMENT and r.backend == "memory" for r in got)
    assert router.history == [(DEPLOYMENT, 10.0), (DEPLOYMENT, 25.0), (DEPLOYMENT, 0.0)]

    rejected = 'canarystream_actuation_rejected_total{reason="%s"}'
    assert sample(metrics, rejected % "unsigned") == 1
    assert sample(metrics, rejected % "bad_signature") == 2
    assert sample(metrics, rejected % "duplicate") == 1
    assert sample(metrics, rejected % "stale") == 1
    total = 'canarystream_actuations_total{backend="memory",status="%s"}'
    assert sample(metrics, total % "applied") == 3 and sample(metrics, total % "rejected") == 5


@pytest.mark.kafka
def test_other_services_and_messages_that_are_not_decisions(stack: Stack) -> None:
    router = MemoryRouter()
    cart = make_decision(0, deployment="cart-7", service="cart")
    key = DEPLOYMENT.encode()  # one key: one partition, so the order below holds
    garbage = b'{"type":"decision","seq":"x"}'
    messages = [
        (key, *signed(cart)[1:]),  # not this instance's service: refused, reported
        (key, garbage, SIGNER.sign(garbage).encode()),  # signed: a contract mismatch
        (key, b"\xff not json", None),  # unsigned junk: counted, not dead-lettered
        signed(make_decision(0, traffic_percent=5.0)),
    ]
    service = build(stack, router, scope=Scope(services=["shop"]))
    with running(service):
        publish(stack, messages)
        got = wait_for_reports(stack, 2)
        metrics = scrape(service)
    got = sorted(got, key=lambda r: r.service)  # reports of two deployments: two partitions
    assert [(r.service, r.status.value) for r in got] == [("cart", "rejected"), ("shop", "applied")]
    assert "service 'cart' is not one this actuator acts for (shop)" in got[0].detail
    assert router.history == [(DEPLOYMENT, 5.0)]
    letters = [orjson.loads(raw) for raw in stack.read(DEADLETTER_TOPIC)]
    assert [(d["reason"], d["original"]) for d in letters] == [
        ("invalid_decision", garbage.decode())
    ]
    assert letters[0]["source"] == stack.topic(DECISIONS_TOPIC)
    rejected = 'canarystream_actuation_rejected_total{reason="%s"}'
    assert sample(metrics, rejected % "out_of_scope") == 1
    assert sample(metrics, rejected % "invalid_decision") == 1
    assert sample(metrics, rejected % "unsigned") == 1


@pytest.mark.kafka
def test_dry_run_reports_and_changes_nothing(stack: Stack) -> None:
    router = MemoryRouter()
    with running(build(stack, router, dry_run=True)):
        publish(stack, [signed(make_decision(0, traffic_percent=10.0))])
        (report,) = wait_for_reports(stack, 1)
    assert report.status is ActuationStatus.APPLIED and report.dry_run
    assert "dry run: would set canary traffic to 10%" in report.detail
    assert router.calls == 0 and router.weights == {}


@pytest.mark.kafka
def test_gradual_rollback_steps_down_in_wall_clock_time(stack: Stack) -> None:
    router = MemoryRouter()
    service = build(stack, router, rollback_steps=4, rollback_step_seconds=0.4)
    with running(service):
        publish(stack, [signed(make_decision(0, traffic_percent=20.0))])
        publish(stack, [signed(make_decision(1, **ROLLBACK))])
        advance, rollback = wait_for_reports(stack, 2)
    assert [share for _, share in router.history] == [20.0, 15.0, 10.0, 5.0, 0.0]
    assert rollback.status is ActuationStatus.APPLIED
    assert rollback.traffic_percent_observed == 0.0
    assert "stepped 20% -> 15% -> 10% -> 5% -> 0%" in rollback.detail
    assert rollback.ts - advance.ts >= 3 * 0.4


@pytest.mark.kafka
def test_a_restarted_service_resumes_after_what_it_committed(stack: Stack) -> None:
    first_router = MemoryRouter()
    with running(build(stack, first_router, name="r")):
        publish(stack, [signed(make_decision(0)), signed(make_decision(1, traffic_percent=25.0))])
        wait_for_reports(stack, 2)
    assert len(first_router.history) == 2

    # A new process: empty fence, same consumer group.
    second_router = MemoryRouter()
    with running(build(stack, second_router, name="r")):
        publish(stack, [signed(make_decision(2, traffic_percent=50.0))])
        got = wait_for_reports(stack, 3)
        time.sleep(1.0)  # room for a wrongful redelivery to show
    assert second_router.history == [(DEPLOYMENT, 50.0)]
    assert [(r.seq, r.status.value) for r in reports(stack)] == [
        (0, "applied"),
        (1, "applied"),
        (2, "applied"),
    ]
    assert got[-1].traffic_percent_observed == 50.0


@pytest.mark.kafka
def test_haproxy_through_the_service_with_gradual_rollback_and_drain(
    stack: Stack, haproxy: HAProxy
) -> None:
    router = HAProxyRouter(
        HAProxyConfig(
            address=haproxy.socket,
            backend=haproxy.backend,
            baseline_server=haproxy.baseline_server,
            canary_server=haproxy.canary_server,
            drain=True,
        )
    )
    with running(build(stack, router, rollback_steps=2, rollback_step_seconds=0.2)):
        publish(stack, [signed(make_decision(0, traffic_percent=30.0))])
        (advance,) = wait_for_reports(stack, 1)
        assert advance.status is ActuationStatus.APPLIED
        assert advance.traffic_percent_observed == 30.0
        served = count_cohorts(haproxy.port, 200)
        assert served["error"] == 0 and 40 <= served["canary"] <= 80, served

        forged = signed(make_decision(1, Action.PROMOTE, 100.0, Phase.PROMOTED), Signer.hmac("x"))
        publish(stack, [forged, signed(make_decision(1, **ROLLBACK))])
        _, refused, rollback = wait_for_reports(stack, 3)
    assert refused.status is ActuationStatus.REJECTED
    assert rollback.status is ActuationStatus.APPLIED and rollback.traffic_percent_observed == 0.0
    assert "stepped 30% -> 15% -> 0%" in rollback.detail
    assert asyncio.run(router.weights()) == (100, 0)
    assert asyncio.run(router.admin_states())[haproxy.canary_server] == 8  # drain
    assert count_cohorts(haproxy.port, 100) == {"baseline": 100}


@pytest.mark.kafka
def test_cli_gateway_api_writes_the_route_serves_metrics_and_stops_on_sigterm(
    stack: Stack, tmp_path: Path
) -> None:
    out = tmp_path / "route.yaml"
    (port,) = free_ports(1)
    env = {
        **stack.env,
        "CANARYSTREAM_SIGNING_SCHEME": "hmac-sha256",
        "CANARYSTREAM_VERIFY_KEYS": orjson.dumps([KEY]).decode(),
    }
    command = [
        sys.executable, "-m", "canarystream", "actuate", "gateway-api", "--out", str(out),
        "--route", "shop", "--gateway", "edge", "--baseline-service", "shop-v1",
        "--canary-service", "shop-v2", "--service-port", "80", "--service", "shop",
        "--name", "cli", "--start-from", "earliest", "--metrics-port", str(port),
    ]  # fmt: skip
    log = tmp_path / "actuate.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        publish(stack, [signed(make_decision(0, traffic_percent=25.0))])
        stack.wait_for(lambda: out.exists() or process.poll() is not None, 20, "the route file")
        assert process.poll() is None, log.read_text()
        route = yaml.safe_load(out.read_text())
        weights = [ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]]
        assert weights == [75, 25]
        (report,) = wait_for_reports(stack, 1)
        assert report.status is ActuationStatus.APPLIED and report.backend == "gateway_api"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        labels = 'backend="gateway_api",status="applied"'
        assert sample(metrics, f"canarystream_actuations_total{{{labels}}}") == 1
        assert sample(metrics, "canarystream_insecure_mode") == 0
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, log.read_text()
    assert "actuator cli stopped" in log.read_text()


class _Nothing(BaseModel):
    """A configuration without keys."""


@pytest.mark.kafka
def test_a_backend_known_only_by_its_protocol_runs_from_the_registry_to_the_reports(
    stack: Stack,
) -> None:
    backend = ProtocolOnly()
    registry = Registry([Plugin("fake", _Nothing, traffic(lambda _: backend), "a dict")])
    options = HandlerOptions(verifier=SIGNER.verifier(), scope=EVERY_SERVICE, rollback_steps=2)
    handler = registry.get("fake").build({}, options)
    service = ActuatorService(
        handler, stack.connection, name="fake", start_from="earliest", poll_seconds=0.2
    )
    assert service.group_id.endswith("canarystream-actuator-protocol_only-fake")
    with running(service):
        publish(stack, [signed(make_decision(0, traffic_percent=30.0))])
        publish(stack, [signed(make_decision(0, traffic_percent=30.0))])  # redelivered
        publish(stack, [signed(make_decision(1, **ROLLBACK))])
        got = wait_for_reports(stack, 3)
    assert [(r.backend, r.seq, r.status.value) for r in got] == [
        ("protocol_only", 0, "applied"),
        ("protocol_only", 0, "rejected"),
        ("protocol_only", 1, "applied"),
    ]
    assert got[2].detail.endswith("stepped 30% -> 15% -> 0%")
    assert backend.shares == {DEPLOYMENT: 0.0} and backend.closed


class _EchoHandler:
    """A handler that follows the Handler protocol and nothing else: reports every decision
    applied, checking nothing."""

    kind = "echo"
    longest_seconds = 1.0

    def __init__(self) -> None:
        self.verifier = None
        self.metrics: ActuationMetrics | None = None
        self.seen: list[bytes | None] = []
        self.remembered: list[ActuationReport] = []
        self.recorder: Any = None
        self.hurried = self.closed = False

    def describe(self) -> str:
        return "nothing at all"

    async def actuate(
        self, decision: Decision, signature: str | bytes | None, payload: bytes | None = None
    ) -> ActuationReport:
        self.seen.append(payload)
        return ActuationReport(
            actuation_id=decision.decision_id,
            decision_id=decision.decision_id,
            deployment=decision.deployment,
            service=decision.service,
            seq=decision.seq,
            action=decision.action,
            backend=self.kind,
            status=ActuationStatus.APPLIED,
            ts=decision.ts,
            traffic_percent_requested=decision.traffic_percent,
            detail="echo",
        )

    def remember(self, report: ActuationReport) -> None:
        self.remembered.append(report)

    def hurry(self) -> None:
        self.hurried = True

    async def close(self) -> None:
        self.closed = True


@pytest.mark.kafka
def test_the_service_drives_any_handler_that_follows_the_protocol(stack: Stack) -> None:
    handler = _EchoHandler()
    service = ActuatorService(
        handler, stack.connection, name="echo", start_from="earliest", poll_seconds=0.2
    )
    message = signed(make_decision(0))
    with running(service):
        publish(stack, [message])
        (report,) = wait_for_reports(stack, 1)
    assert (report.backend, report.detail) == ("echo", "echo")
    assert handler.seen == [message[1]] and handler.hurried and handler.closed
    assert handler.metrics is service.metrics  # given one by the service


def test_cli_refuses_to_start_without_verify_keys_unless_insecure(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSTREAM_")}
    command = [
        *("actuate", "haproxy", "--socket", str(tmp_path / "s"), "--backend", "app"),
        *("--baseline-server", "a", "--canary-server", "b"),
    ]
    result = CliRunner().invoke(app, command, env=env)  # signing is on by default
    assert result.exit_code == 2
    message = result.stderr.replace("\n", "")
    assert "CANARYSTREAM_VERIFY_KEYS (verify_keys) is empty" in message
    assert "canarystream keys generate worker" in message and "--insecure" in message
    # Turning signatures off is no way around it either.
    result = CliRunner().invoke(app, command, env={**env, "CANARYSTREAM_SIGNING_SCHEME": "none"})
    assert result.exit_code == 2
    assert "CANARYSTREAM_SIGNING_SCHEME (signing_scheme) is none" in result.stderr


def test_group_id_names_backend_and_instance() -> None:
    connection = Connection(load_settings(topic_prefix="t1."))
    assert group_id_for(connection, "haproxy", "edge") == "t1.canarystream-actuator-haproxy-edge"
    with pytest.raises(ConfigError, match="name"):
        group_id_for(connection, "haproxy", "Edge 1")
