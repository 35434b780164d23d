"""An actuator acts only for the services it is configured for, only on recent decisions, and
serves its /metrics on this host unless told otherwise."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from canarystream.actuators import (
    ActuationMetrics,
    Actuator,
    HAProxyConfig,
    HAProxyRouter,
    HookActuator,
    HookRunner,
    MemoryRouter,
)
from canarystream.actuators.config import Scope
from canarystream.actuators.service import ActuatorService
from canarystream.cli import app
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.decision import Action, Decision, Phase
from canarystream.contracts.events import CompensationHook
from canarystream.contracts.signing import Signer, generate_ed25519_key
from canarystream.errors import ConfigError
from canarystream.kafka import admin as kafka_admin
from canarystream.kafka.connection import Connection
from canarystream.settings import load_settings
from tests.support.actuators import HAProxy, make_decision
from tests.support.broker import Stack

NOW = 1_800_000_000.0


def _act(actuator: Actuator | HookActuator, decision: Decision) -> ActuationReport:
    return asyncio.run(actuator.actuate(decision, None))


def _rejections(metrics: ActuationMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "canarystream_actuation_rejected_total", {"reason": reason}
    )
    return value or 0.0


def test_a_decision_for_another_service_does_not_move_its_haproxy_weight(
    haproxy: HAProxy,
) -> None:
    router = HAProxyRouter(
        HAProxyConfig(
            address=haproxy.socket,
            backend=haproxy.backend,
            baseline_server=haproxy.baseline_server,
            canary_server=haproxy.canary_server,
        )
    )
    metrics = ActuationMetrics(CollectorRegistry())
    checkout = Actuator(router, verifier=None, scope=Scope(services=["checkout"]), metrics=metrics)
    payments = make_decision(0, traffic_percent=50.0, deployment="pay-1", service="payments")
    report = _act(checkout, payments)
    assert report.status is ActuationStatus.REJECTED
    assert "service 'payments' is not one this actuator acts for (checkout)" in report.detail
    assert asyncio.run(router.weights()) == (100, 0)
    assert _rejections(metrics, "out_of_scope") == 1

    ours = make_decision(0, traffic_percent=50.0, deployment="co-1", service="checkout")
    assert _act(checkout, ours).status is ActuationStatus.APPLIED
    assert asyncio.run(router.weights()) == (50, 50)


def test_globs_and_an_explicit_star() -> None:
    router = MemoryRouter()
    actuator = Actuator(router, verifier=None, scope=Scope(services=["shop-*", "cart"]))
    statuses = [
        _act(actuator, make_decision(0, deployment=f"d-{service}", service=service)).status.value
        for service in ("shop-eu", "cart", "carts", "payments", "Shop-eu")
    ]
    assert statuses == ["applied", "applied", "rejected", "rejected", "rejected"]
    everything = Actuator(MemoryRouter(), verifier=None, scope=Scope(services=["*"]))
    assert _act(everything, make_decision(0, service="payments")).status.value == "applied"


def test_hooks_are_refused_out_of_scope_like_traffic() -> None:
    hooks = HookActuator(HookRunner(), verifier=None, scope=Scope(services=["checkout"]))
    decision = make_decision(
        0, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK, service="payments"
    ).model_copy(update={"compensation": [CompensationHook(name="x", command=["/bin/false"])]})
    report = _act(hooks, decision)
    assert report.status is ActuationStatus.REJECTED and "'payments'" in report.detail


def test_no_scope_is_an_error_naming_the_field() -> None:
    for empty in ([], ()):
        with pytest.raises(ConfigError, match="services: no service scope"):
            Scope(services=empty)
    with pytest.raises(ConfigError, match="services: 'a b' is not a service name or glob"):
        Scope(services=["a b"])
    with pytest.raises(ConfigError, match="max_age_seconds"):
        Scope(services=["*"], max_age_seconds=0)


@pytest.mark.parametrize(
    ("age", "limit", "status"),
    [
        (16 * 60, 900.0, "rejected"),
        (14 * 60, 900.0, "applied"),
        (61, 60.0, "rejected"),
        (10, 60.0, "applied"),
        (-30, 60.0, "applied"),  # a clock slightly behind the worker's is no reason to refuse
    ],
)
def test_decisions_older_than_the_allowed_age_are_not_applied(
    age: float, limit: float, status: str
) -> None:
    router = MemoryRouter()
    metrics = ActuationMetrics(CollectorRegistry())
    actuator = Actuator(
        router,
        verifier=None,
        scope=Scope(services=["shop"], max_age_seconds=limit),
        metrics=metrics,
        clock=lambda: NOW,
    )
    report = _act(actuator, make_decision(0, traffic_percent=25.0, ts=NOW - age))
    assert report.status.value == status
    if status == "rejected":
        assert f"older than the {limit:g} s allowed" in report.detail
        assert router.calls == 0 and _rejections(metrics, "stale") == 1
    else:
        assert router.history == [(make_decision(0).deployment, 25.0)]


def test_the_cli_refuses_to_start_without_a_service_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANARYSTREAM_ACTUATOR_SERVICES", raising=False)
    result = CliRunner().invoke(
        app,
        ["actuate", "memory", "--insecure"],
        env={"CANARYSTREAM_SIGNING_SCHEME": "none"},
    )
    assert result.exit_code == 2
    assert "actuator_services: this actuator has no service scope" in result.stderr
    assert "--service" in result.stderr and "CANARYSTREAM_ACTUATOR_SERVICES" in result.stderr


def test_the_cli_scope_from_options_or_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from canarystream.actuators import service as service_module  # noqa: PLC0415

    built: list[ActuatorService] = []

    signers: list[object] = []

    class Recorded:
        def __init__(self, handler: Actuator, connection: Connection, **kwargs: object) -> None:
            built.append(handler)  # type: ignore[arg-type]
            signers.append(kwargs["report_signer"])

        async def run(self) -> None:
            pass

        def stop(self) -> None:
            pass

    async def no_topics(connection: Connection) -> list[object]:
        return []

    monkeypatch.setattr(service_module, "ActuatorService", Recorded)
    monkeypatch.setattr(kafka_admin, "create_topics", no_topics)  # no broker needed
    env = {"CANARYSTREAM_SIGNING_SCHEME": "none", "CANARYSTREAM_ACTUATOR_SERVICES": '["cart"]'}
    args = ["actuate", "memory", "--insecure", "--max-decision-age", "120"]
    for extra, services in (
        ([], ("cart",)),
        (["--service", "shop-*", "--service", "x"], ("shop-*", "x")),
    ):
        result = CliRunner().invoke(app, [*args, *extra], env=env)
        assert result.exit_code == 0, result.output
        scope = built.pop().scope
        assert (scope.services, scope.max_age_seconds) == (services, 120.0)
        assert signers.pop() is None  # no key of its own: reports go unsigned

    # With a key of its own, the actuator signs its reports.
    key = tmp_path / "edge.key"
    key.write_bytes(generate_ed25519_key()[0])
    key.chmod(0o600)
    own = {"CANARYSTREAM_PRINCIPAL": "edge", "CANARYSTREAM_PRINCIPAL_KEY_FILE": str(key)}
    result = CliRunner().invoke(app, args, env={**env, **own})
    assert result.exit_code == 0, result.output
    assert isinstance(signers.pop(), Signer)


def test_metrics_bind_this_host_unless_configured() -> None:
    service = ActuatorService(
        Actuator(MemoryRouter(), verifier=None, scope=Scope(services=["*"])),
        Connection(load_settings()),
        metrics_port=0,
    )
    assert service.metrics_host == "127.0.0.1"
    assert load_settings().actuator_metrics_bind == "127.0.0.1"


@pytest.mark.kafka
def test_metrics_served_on_loopback_by_default(stack: Stack) -> None:
    from tests.actuators.test_service import running  # noqa: PLC0415

    service = ActuatorService(
        Actuator(MemoryRouter(), verifier=None, scope=Scope(services=["*"])),
        stack.connection,
        name="bind",
        metrics_port=0,
        poll_seconds=0.2,
    )
    with running(service):
        assert service.metrics_address is not None
        assert service.metrics_address[0] == "127.0.0.1"
