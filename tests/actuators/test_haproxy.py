"""HAProxy router against a real HAProxy: Runtime API weights and the traffic they split."""

from __future__ import annotations

import asyncio
import http.client
from pathlib import Path

import pytest

from canarystream.actuators import Actuator, HAProxyConfig, HAProxyRouter, RetryPolicy
from canarystream.actuators.base import TrafficTarget
from canarystream.actuators.routers.haproxy import parse_address
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.decision import Action, Phase
from canarystream.contracts.signing import Signer
from canarystream.errors import ConfigError, RouterError
from tests.support.actuators import EVERY_SERVICE, HAProxy, count_cohorts, make_decision

SIGNER = Signer.hmac(b"haproxy test key")


def _router(haproxy: HAProxy, address: str | None = None, **kwargs: object) -> HAProxyRouter:
    return HAProxyRouter(
        HAProxyConfig(
            address=address or haproxy.socket,
            backend=haproxy.backend,
            baseline_server=haproxy.baseline_server,
            canary_server=haproxy.canary_server,
            **kwargs,  # type: ignore[arg-type]
        )
    )


def _target(percent: float) -> TrafficTarget:
    return TrafficTarget("d1", "shop", "v1", "v2", percent)


def test_set_and_read_back_weights(haproxy: HAProxy) -> None:
    router = _router(haproxy)

    async def scenario() -> tuple[tuple[int, int], float, tuple[int, int], float]:
        await router.set_share(_target(10.0))
        first = await router.weights(), await router.get_share("d1")
        await router.set_share(_target(100.0))
        return (*first, await router.weights(), await router.get_share("d1"))

    weights, percent, promoted, full = asyncio.run(scenario())
    assert weights == (90, 10) and percent == 10.0
    assert promoted == (0, 100) and full == 100.0


def test_tcp_admin_socket_and_fine_weights(haproxy: HAProxy) -> None:
    router = _router(haproxy, address=haproxy.admin, total_weight=256)

    async def scenario() -> tuple[tuple[int, int], float]:
        await router.set_share(_target(2.5))
        return await router.weights(), await router.get_share("d1")

    weights, percent = asyncio.run(scenario())
    assert weights == (250, 6)
    assert percent == pytest.approx(2.34, abs=0.01)  # within the actuator's 0.5 points


def test_actuator_walks_traffic_and_rolls_back(haproxy: HAProxy) -> None:
    """The traffic split follows the decisions: 10 % of requests, then none after rollback."""
    actuator = Actuator(_router(haproxy), verifier=SIGNER.verifier(), scope=EVERY_SERVICE)

    def act(
        seq: int, action: Action, percent: float, phase: Phase, signature: str | None = ""
    ) -> ActuationReport:
        decision = make_decision(seq, action, percent, phase)
        signed = SIGNER.sign_decision(decision) if signature == "" else signature
        return asyncio.run(actuator.actuate(decision, signed))

    assert count_cohorts(haproxy.port, 50) == {"baseline": 50}

    report = act(0, Action.ADVANCE, 10.0, Phase.RUNNING)
    assert report.status is ActuationStatus.APPLIED
    assert report.traffic_percent_observed == 10.0 and report.backend == "haproxy"
    served = count_cohorts(haproxy.port, 400)
    assert served["error"] == 0
    assert 28 <= served["canary"] <= 52, served  # round-robin by weight: 40 expected

    # A forged promotion mid-rollout changes nothing.
    forged = act(1, Action.PROMOTE, 100.0, Phase.PROMOTED, "hmac-sha256:" + "00" * 32)
    assert forged.status is ActuationStatus.REJECTED
    assert asyncio.run(actuator.backend.get_share("d1")) == 10.0

    report = act(1, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK)
    assert report.status is ActuationStatus.APPLIED and report.traffic_percent_observed == 0.0
    assert count_cohorts(haproxy.port, 400) == {"baseline": 400}

    # An advance that arrives late, after the rollback, is fenced off.
    late = act(0, Action.ADVANCE, 10.0, Phase.RUNNING)
    assert late.status is ActuationStatus.REJECTED
    assert count_cohorts(haproxy.port, 40) == {"baseline": 40}


def test_promote_sends_everything_to_the_canary(haproxy: HAProxy) -> None:
    actuator = Actuator(_router(haproxy), verifier=None, scope=EVERY_SERVICE)
    decision = make_decision(0, Action.PROMOTE, 100.0, Phase.PROMOTED)
    assert asyncio.run(actuator.actuate(decision, None)).status is ActuationStatus.APPLIED
    assert count_cohorts(haproxy.port, 100) == {"canary": 100}


def test_dry_run_leaves_haproxy_alone(haproxy: HAProxy) -> None:
    router = _router(haproxy)
    actuator = Actuator(router, verifier=None, scope=EVERY_SERVICE, dry_run=True)
    report = asyncio.run(actuator.actuate(make_decision(0, traffic_percent=50.0), None))
    assert report.dry_run and report.traffic_percent_observed == 0.0
    assert asyncio.run(router.weights()) == (100, 0)


def test_unknown_server_is_a_router_error_and_a_failed_actuation(haproxy: HAProxy) -> None:
    router = HAProxyRouter(
        HAProxyConfig(
            address=haproxy.socket, backend="app", baseline_server="baseline", canary_server="nope"
        )
    )
    with pytest.raises(RouterError, match="No such server"):
        asyncio.run(router.set_share(_target(10.0)))
    policy = RetryPolicy(max_attempts=2, initial_delay=0.01)
    report = asyncio.run(
        Actuator(router, verifier=None, scope=EVERY_SERVICE, retry=policy).actuate(
            make_decision(0), None
        )
    )
    assert report.status is ActuationStatus.FAILED and report.attempts == 2
    assert "No such server" in report.detail


def _sticky_get(port: int, cookie: str) -> str:
    """One request from a client mid-session (it holds the persistence cookie)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Cookie": f"SRV={cookie}", "Connection": "close"})
        response = connection.getresponse()
        return response.read().decode() if response.status == 200 else f"error {response.status}"
    finally:
        connection.close()


def test_drain_on_rollback_keeps_sticky_sessions_and_resists_weight_changes(
    haproxy: HAProxy,
) -> None:
    router = _router(haproxy, drain=True)
    actuator = Actuator(router, verifier=None, scope=EVERY_SERVICE)

    def act(seq: int, action: Action, percent: float, phase: Phase, deployment: str) -> float:
        decision = make_decision(seq, action, percent, phase, deployment=deployment)
        report = asyncio.run(actuator.actuate(decision, None))
        assert report.status is ActuationStatus.APPLIED, report.detail
        assert report.traffic_percent_observed is not None
        return report.traffic_percent_observed

    assert act(0, Action.ADVANCE, 10.0, Phase.RUNNING, "d1") == 10.0
    assert asyncio.run(router.admin_states())["canary"] == 0  # ready
    assert act(1, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK, "d1") == 0.0
    assert asyncio.run(router.admin_states())["canary"] == 8  # forced drain
    assert count_cohorts(haproxy.port, 60) == {"baseline": 60}  # no new sessions on the canary
    assert {_sticky_get(haproxy.port, "c") for _ in range(5)} == {"canary"}  # not bounced

    # Drain is not undone by a weight change from elsewhere, and the read-back says so.
    assert (asyncio.run(router.command("set weight app/canary 50"))).strip() == ""
    assert asyncio.run(router.weights()) == (100, 50)
    assert asyncio.run(router.get_share("d1")) == 0.0
    assert count_cohorts(haproxy.port, 60) == {"baseline": 60}

    # The next rollout's first stage makes the canary ready again.
    assert act(0, Action.ADVANCE, 10.0, Phase.RUNNING, "d2") == 10.0
    assert asyncio.run(router.admin_states())["canary"] == 0
    assert 10 <= count_cohorts(haproxy.port, 300)["canary"] <= 50


def test_without_drain_a_rollback_only_sets_weights(haproxy: HAProxy) -> None:
    router = _router(haproxy)
    actuator = Actuator(router, verifier=None, scope=EVERY_SERVICE)
    for seq, action, percent, phase in [
        (0, Action.ADVANCE, 10.0, Phase.RUNNING),
        (1, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK),
    ]:
        asyncio.run(actuator.actuate(make_decision(seq, action, percent, phase), None))
    assert asyncio.run(router.admin_states())["canary"] == 0
    assert asyncio.run(router.weights()) == (100, 0)


def test_a_canary_in_maintenance_is_left_there_and_reads_back_as_zero(haproxy: HAProxy) -> None:
    router = _router(haproxy, drain=True)
    assert (asyncio.run(router.command("set server app/canary state maint"))).strip() == ""
    policy = RetryPolicy(max_attempts=1)
    report = asyncio.run(
        Actuator(router, verifier=None, scope=EVERY_SERVICE, retry=policy).actuate(
            make_decision(0), None
        )
    )
    assert report.status is ActuationStatus.FAILED
    assert "read back 0% for a requested 10%" in report.detail
    assert asyncio.run(router.admin_states())["canary"] & 0x01  # still in maintenance


def test_unreachable_socket(tmp_path: Path) -> None:
    config = HAProxyConfig(
        address=f"{tmp_path}/missing.sock", backend="app", baseline_server="a", canary_server="b"
    )
    with pytest.raises(RouterError, match=r"missing\.sock"):
        asyncio.run(HAProxyRouter(config).get_share("d1"))


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="backend"):
        HAProxyConfig(address="/s", backend="app; shutdown", baseline_server="a", canary_server="b")
    with pytest.raises(ConfigError, match="must differ"):
        HAProxyConfig(address="/s", backend="app", baseline_server="a", canary_server="a")
    with pytest.raises(ConfigError, match="total_weight"):
        HAProxyConfig(
            address="/s", backend="app", baseline_server="a", canary_server="b", total_weight=300
        )
    with pytest.raises(ConfigError, match="neither host:port"):
        parse_address("localhost")
    assert parse_address("[::1]:9999") == ("::1", 9999)
    assert parse_address("unix:admin.sock") == "admin.sock"
