"""Unleash flag provider: the strategy it writes, read back from a real Unleash (on PostgreSQL),
served over the client API and evaluated by Unleash's official Python SDK, driven by the Actuator.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import binom

from canarystream.actuators import Actuator, RetryPolicy, UnleashConfig, UnleashProvider
from canarystream.actuators.base import TrafficBackend, TrafficTarget
from canarystream.actuators.flags.unleash import render_strategy
from canarystream.contracts.actuation import ActuationStatus
from canarystream.contracts.decision import Action, Phase
from canarystream.contracts.signing import Signer
from canarystream.errors import ConfigError, FlagError
from tests.support.actuators import EVERY_SERVICE, make_decision
from tests.support.services import free_ports, require_module
from tests.support.unleash import UnleashService

USERS = [f"user-{i}" for i in range(2000)]
SIGNER = Signer.hmac(b"unleash test key")


def _target(service: str, percent: float, deployment: str | None = None) -> TrafficTarget:
    return TrafficTarget(deployment or f"{service}-2024-06", service, "v1", "v2", percent)


def _provider(unleash: UnleashService, **kwargs: Any) -> UnleashProvider:
    return UnleashProvider(
        UnleashConfig(url=unleash.url, admin_token=unleash.admin_token, **kwargs)
    )


def _http(
    unleash: UnleashService, method: str, path: str, token: str, body: object = None
) -> tuple[int, Any]:
    url = urllib.parse.urlsplit(unleash.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        headers = {"Authorization": token, "Content-Type": "application/json"}
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw.strip() else None
    finally:
        connection.close()


def _admin(unleash: UnleashService, method: str, path: str, body: object = None) -> Any:
    """Call the Admin API as a person would by hand; fail the test on an error answer."""
    status, answer = _http(unleash, method, path, unleash.admin_token, body)
    assert 200 <= status < 300, (method, path, status, answer)
    return answer


def _environment(unleash: UnleashService, feature: str) -> dict[str, Any]:
    path = f"/api/admin/projects/default/features/{feature}/environments/development"
    answer: dict[str, Any] = _admin(unleash, "GET", path)
    return answer


def _served(unleash: UnleashService, feature: str, rollout: str) -> dict[str, Any]:
    """The toggle as the client API serves it to SDKs (backend token), once it serves
    ``rollout``: the client API caches, so allow it a few seconds to catch up."""
    deadline = time.monotonic() + 10
    while True:
        status, answer = _http(unleash, "GET", "/api/client/features", unleash.backend_token)
        assert status == 200, answer
        toggle = next((f for f in answer["features"] if f["name"] == feature), None)
        strategies = toggle["strategies"] if toggle else []
        if len(strategies) == 1 and strategies[0]["parameters"]["rollout"] == rollout:
            return toggle  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"client API serves {toggle} for {feature}"
        time.sleep(0.1)


@contextmanager
def _sdk(unleash: UnleashService, cache_dir: Path) -> Iterator[Any]:
    """Unleash's official Python SDK, polling the client API with the backend token."""
    require_module("UnleashClient")
    from UnleashClient import UnleashClient  # noqa: PLC0415
    from UnleashClient.cache import FileCache  # noqa: PLC0415
    from UnleashClient.utils import InstanceAllowType  # noqa: PLC0415

    client = UnleashClient(
        url=f"{unleash.url}/api",
        app_name="canarystream-tests",
        environment=unleash.environment,
        custom_headers={"Authorization": unleash.backend_token},
        disable_metrics=True,
        disable_registration=True,
        refresh_interval=3600,  # one fetch at start: each check takes a fresh client
        cache=FileCache("canarystream-tests", directory=str(cache_dir)),
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    )
    client.initialize_client()
    try:
        yield client
    finally:
        client.destroy()


def _enabled(unleash: UnleashService, feature: str, rollout: str, cache_dir: Path) -> list[bool]:
    """Whether the SDK serves the canary to each of ``USERS`` once Unleash serves ``rollout``."""
    _served(unleash, feature, rollout)
    with _sdk(unleash, cache_dir) as client:
        assert feature in client.feature_definitions(), "the SDK did not fetch the toggle"
        return [client.is_enabled(feature, {"userId": user}) for user in USERS]


def _expected(feature: str, rollout: int) -> list[bool]:
    """Unleash's documented gradual rollout: murmur3 (seed 0) of ``groupId:userId``, mod 100,
    plus 1, at most the rollout (the group id is the toggle's name)."""
    import mmh3  # noqa: PLC0415

    return [mmh3.hash(f"{feature}:{u}", 0, signed=False) % 100 + 1 <= rollout for u in USERS]


def _assert_share(enabled: list[bool], percent: float) -> None:
    """The canary share is what a binomial draw at ``percent`` gives, beyond doubt."""
    low, high = binom.interval(1 - 1e-6, len(enabled), percent / 100)
    assert low <= sum(enabled) <= high, (sum(enabled), low, high)


# -- the strategy, without a server ----------------------------------------------------------


def test_strategy_is_a_gradual_rollout_in_whole_percents() -> None:
    config = UnleashConfig(url="http://127.0.0.1:4242", admin_token="*:*.x")
    strategy = render_strategy(config, "shop-canary", _target("shop", 10.0))
    assert strategy == {
        "name": "flexibleRollout",
        "title": "canarystream:shop-2024-06",
        "disabled": False,
        "constraints": [],
        "segments": [],
        "variants": [],
        "parameters": {"rollout": "10", "stickiness": "default", "groupId": "shop-canary"},
    }
    rollouts = {
        percent: render_strategy(config, "f", _target("shop", percent))["parameters"]["rollout"]
        for percent in (0.0, 0.2, 2.5, 99.9, 100.0)
    }
    assert rollouts == {0.0: "0", 0.2: "1", 2.5: "3", 99.9: "99", 100.0: "100"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "127.0.0.1:4242"},
        {"admin_token": " "},
        {"feature": "canary"},
        {"project": ""},
        {"environment": ""},
        {"stickiness": ""},
        {"timeout": 0},
    ],
)
def test_invalid_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        UnleashConfig(**{"url": "http://127.0.0.1:4242", "admin_token": "*:*.x", **kwargs})  # type: ignore[arg-type]


def test_config_hides_the_token_and_names_toggles() -> None:
    config = UnleashConfig(url="http://u:4242", admin_token="*:*.secret", feature="ff.{service}")
    assert "secret" not in repr(config)
    assert config.feature_for("shop") == "ff.shop"
    assert config.matches("ff.shop") and not config.matches("ff.") and not config.matches("xfshop")


def test_unreachable_unleash_is_a_flag_error() -> None:
    (port,) = free_ports(1)  # nothing listens there
    provider = UnleashProvider(UnleashConfig(url=f"http://127.0.0.1:{port}", admin_token="a"))
    assert isinstance(provider, TrafficBackend) and provider.kind == "unleash"
    with pytest.raises(FlagError, match=f"Unleash at http://127.0.0.1:{port}"):
        asyncio.run(provider.set_share(_target("shop", 10.0)))


# -- the real Unleash ------------------------------------------------------------------------


def test_read_back_follows_each_write(unleash: UnleashService, service_name: str) -> None:
    provider = _provider(unleash)
    deployment = f"{service_name}-2024-06"

    async def scenario() -> list[float | None]:
        seen = [await provider.get_share(deployment)]  # no toggle yet
        for percent in (10.0, 1.0, 0.0, 100.0, 25.0):
            await provider.set_share(_target(service_name, percent))
            seen.append(await provider.get_share(deployment))
        seen.append(await provider.get_share("another-deployment"))
        # A new provider (an actuator restarted) finds the deployment's toggle in Unleash.
        seen.append(await _provider(unleash).get_share(deployment))
        return seen

    assert asyncio.run(scenario()) == [None, 10.0, 1.0, 0.0, 100.0, 25.0, None, 25.0]
    state = _environment(unleash, f"{service_name}-canary")
    assert state["enabled"] is True
    (strategy,) = state["strategies"]
    assert strategy["name"] == "flexibleRollout"
    assert strategy["title"] == f"canarystream:{deployment}"
    assert strategy["parameters"] == {
        "rollout": "25",
        "stickiness": "default",
        "groupId": f"{service_name}-canary",
    }


def test_applying_the_same_share_twice_changes_nothing(
    unleash: UnleashService, service_name: str
) -> None:
    provider = _provider(unleash)
    feature = f"{service_name}-canary"

    def events() -> list[str]:
        answer = _admin(unleash, "GET", f"/api/admin/events?feature={feature}")
        return [event["type"] for event in answer["events"]]

    asyncio.run(provider.set_share(_target(service_name, 10.0)))
    before, strategy = events(), _environment(unleash, feature)["strategies"]
    asyncio.run(provider.set_share(_target(service_name, 10.0)))
    assert events() == before  # no write at all: Unleash records every change as an event
    assert _environment(unleash, feature)["strategies"] == strategy
    assert "feature-created" in before and "feature-environment-enabled" in before


def test_the_official_sdk_gets_the_rollout(
    unleash: UnleashService, service_name: str, tmp_path: Path
) -> None:
    """What Unleash serves to its Python SDK splits users as the percentage says, user by user
    as Unleash's gradual-rollout hash puts them, and keeps them as the share grows."""
    provider = _provider(unleash)
    feature = f"{service_name}-canary"

    asyncio.run(provider.set_share(_target(service_name, 10.0)))
    at_ten = _enabled(unleash, feature, "10", tmp_path)
    _assert_share(at_ten, 10.0)
    assert at_ten == _expected(feature, 10)

    asyncio.run(provider.set_share(_target(service_name, 25.0)))
    at_25 = _enabled(unleash, feature, "25", tmp_path)
    _assert_share(at_25, 25.0)
    assert at_25 == _expected(feature, 25)
    assert all(b for a, b in zip(at_ten, at_25, strict=True) if a)  # sticky: nobody moves back

    asyncio.run(provider.set_share(_target(service_name, 0.0)))  # rollback
    assert not any(_enabled(unleash, feature, "0", tmp_path))
    asyncio.run(provider.set_share(_target(service_name, 100.0)))  # promote
    assert all(_enabled(unleash, feature, "100", tmp_path))


def test_takes_over_strategies_and_state_changed_by_hand(
    unleash: UnleashService, service_name: str
) -> None:
    provider = _provider(unleash)
    deployment = f"{service_name}-2024-06"
    feature = f"{service_name}-canary"
    base = f"/api/admin/projects/default/features/{feature}"
    asyncio.run(provider.set_share(_target(service_name, 10.0)))

    # Someone adds a strategy that turns the toggle on for everyone: the share is not ours.
    _admin(unleash, "POST", f"{base}/environments/development/strategies", {"name": "default"})
    with pytest.raises(FlagError, match="other active strategies"):
        asyncio.run(provider.get_share(deployment))
    asyncio.run(provider.set_share(_target(service_name, 10.0)))
    assert [s["name"] for s in _environment(unleash, feature)["strategies"]] == ["flexibleRollout"]
    assert asyncio.run(provider.get_share(deployment)) == 10.0

    # Switched off by hand: nobody gets the canary; the next decision switches it back on.
    _admin(unleash, "POST", f"{base}/environments/development/off")
    assert asyncio.run(provider.get_share(deployment)) == 0.0
    asyncio.run(provider.set_share(_target(service_name, 5.0)))
    assert asyncio.run(provider.get_share(deployment)) == 5.0

    # Archived by hand: the next decision revives it.
    _admin(unleash, "DELETE", base)
    assert asyncio.run(provider.get_share(deployment)) is None
    asyncio.run(provider.set_share(_target(service_name, 5.0)))
    assert asyncio.run(provider.get_share(deployment)) == 5.0
    assert _environment(unleash, feature)["enabled"] is True


def test_toggle_of_a_newer_deployment_is_not_read_back_as_the_old_one(
    unleash: UnleashService, service_name: str
) -> None:
    provider = _provider(unleash)

    async def scenario() -> tuple[float | None, ...]:
        await provider.set_share(_target(service_name, 10.0, deployment=f"{service_name}-old"))
        await provider.set_share(_target(service_name, 50.0, deployment=f"{service_name}-new"))
        restarted = _provider(unleash)
        return (
            await provider.get_share(f"{service_name}-old"),
            await provider.get_share(f"{service_name}-new"),
            await restarted.get_share(f"{service_name}-old"),
            await restarted.get_share(f"{service_name}-new"),
        )

    assert asyncio.run(scenario()) == (None, 50.0, None, 50.0)


def test_errors_name_what_is_wrong(unleash: UnleashService, service_name: str) -> None:
    target = _target(service_name, 10.0)
    wrong = UnleashProvider(UnleashConfig(url=unleash.url, admin_token="*:*.not-the-token"))
    with pytest.raises(FlagError, match="refused the admin token"):
        asyncio.run(wrong.set_share(target))
    with pytest.raises(FlagError, match="project"):
        asyncio.run(_provider(unleash, project="no-such-project").set_share(target))
    with pytest.raises(FlagError, match="no environment 'staging'"):
        asyncio.run(_provider(unleash, environment="staging").set_share(target))


def test_actuator_applies_signed_decisions(unleash: UnleashService, service_name: str) -> None:
    actuator = Actuator(
        _provider(unleash),
        verifier=SIGNER.verifier(),
        scope=EVERY_SERVICE,
        retry=RetryPolicy(max_attempts=3, initial_delay=0.05, deadline=20),
    )
    deployment = f"{service_name}-2024-06"

    def decision(seq: int, action: Action, percent: float, phase: Phase = Phase.RUNNING) -> Any:
        made = make_decision(seq, action, percent, phase, deployment=deployment)
        return made.model_copy(update={"service": service_name})

    advance = decision(0, Action.ADVANCE, 10.0)
    hold = decision(1, Action.HOLD, 10.0)
    forged = decision(2, Action.PROMOTE, 100.0, Phase.PROMOTED)
    rollback = decision(2, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK)

    async def scenario() -> list[Any]:
        reports = [await actuator.actuate(advance, SIGNER.sign_decision(advance))]
        reports.append(await actuator.actuate(hold, SIGNER.sign_decision(hold)))
        reports.append(await actuator.actuate(forged, Signer.hmac(b"x").sign_decision(forged)))
        reports.append(await actuator.actuate(forged, None))  # unsigned
        reports.append(await actuator.backend.get_share(deployment))  # type: ignore[union-attr]
        reports.append(await actuator.actuate(rollback, SIGNER.sign_decision(rollback)))
        await actuator.close()
        return reports

    applied, held, forgery, unsigned, after_forgery, rolled_back = asyncio.run(scenario())
    assert applied.status is ActuationStatus.APPLIED, applied.detail
    assert applied.traffic_percent_observed == 10.0
    assert applied.backend == "unleash"
    assert held.status is ActuationStatus.APPLIED
    assert held.traffic_percent_observed == 10.0
    assert forgery.status is ActuationStatus.REJECTED
    assert unsigned.status is ActuationStatus.REJECTED
    assert after_forgery == 10.0  # the forged promote changed nothing
    assert rolled_back.status is ActuationStatus.APPLIED, rolled_back.detail
    assert rolled_back.traffic_percent_observed == 0.0
    assert (
        _environment(unleash, f"{service_name}-canary")["strategies"][0]["parameters"]["rollout"]
        == "0"
    )
