"""Gateway API router: rendered HTTPRoutes, merge patches, and the router over a fake store."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
import yaml

from canarystream.actuators import Actuator, GatewayApiConfig, GatewayApiRouter
from canarystream.actuators.base import TrafficTarget
from canarystream.actuators.routers.gateway_api import (
    merge_patch,
    read_canary_percent,
    render_http_route,
    to_yaml,
)
from canarystream.contracts.actuation import ActuationStatus
from canarystream.contracts.decision import Action, Phase
from canarystream.errors import ConfigError, RouterError
from tests.support.actuators import EVERY_SERVICE, make_decision

CONFIG = GatewayApiConfig(
    route="shop",
    gateway="edge",
    gateway_namespace="infra",
    baseline_service="shop-v1",
    canary_service="shop-v2",
    port=8080,
    namespace="shop",
    hostnames=("shop.example.com",),
)


def _apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies ``kubectl patch --type merge``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _apply_merge_patch(result.get(key), value)
    return result


def test_rendered_route() -> None:
    route = render_http_route(CONFIG, 10.0)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["kind"] == "HTTPRoute"
    assert route["metadata"]["name"] == "shop" and route["metadata"]["namespace"] == "shop"
    assert route["metadata"]["annotations"] == {"canarystream.io/canary-percent": "10"}
    spec = route["spec"]
    assert spec["parentRefs"] == [{"name": "edge", "namespace": "infra"}]
    assert spec["hostnames"] == ["shop.example.com"]
    assert spec["rules"] == [
        {
            "backendRefs": [
                {"name": "shop-v1", "port": 8080, "weight": 90},
                {"name": "shop-v2", "port": 8080, "weight": 10},
            ]
        }
    ]


@pytest.mark.parametrize(("percent", "weights"), [(0.0, (100, 0)), (100.0, (0, 100))])
def test_rollback_and_promote_weights(percent: float, weights: tuple[int, int]) -> None:
    refs = render_http_route(CONFIG, percent)["spec"]["rules"][0]["backendRefs"]
    assert (refs[0]["weight"], refs[1]["weight"]) == weights
    assert read_canary_percent(render_http_route(CONFIG, percent), CONFIG) == percent


def test_yaml_round_trip() -> None:
    route = render_http_route(CONFIG, 25.0)
    text = to_yaml(route)
    assert text.startswith("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n")
    assert yaml.safe_load(text) == route


def test_merge_patch_gives_the_rendered_weights() -> None:
    live = render_http_route(CONFIG, 5.0)
    live["metadata"]["resourceVersion"] = "42"  # fields the patch must leave alone
    live["status"] = {"parents": []}
    patched = _apply_merge_patch(live, merge_patch(CONFIG, 50.0))
    assert patched["spec"] == render_http_route(CONFIG, 50.0)["spec"]
    assert patched["metadata"]["resourceVersion"] == "42" and "status" in patched
    assert read_canary_percent(patched, CONFIG) == 50.0


def test_read_back_tolerates_foreign_routes() -> None:
    assert read_canary_percent(None, CONFIG) is None
    assert read_canary_percent({"spec": {"rules": [{"backendRefs": []}]}}, CONFIG) is None
    default_weights = {
        "spec": {
            "rules": [
                {"backendRefs": [{"name": "other"}]},
                {"backendRefs": [{"name": "shop-v1"}, {"name": "shop-v2"}]},
            ]
        }
    }
    assert read_canary_percent(default_weights, CONFIG) == 50.0  # weight defaults to 1
    zero = render_http_route(CONFIG, 0.0)
    zero["spec"]["rules"][0]["backendRefs"][0]["weight"] = 0
    assert read_canary_percent(zero, CONFIG) is None


def test_router_applies_and_reads_back_through_callables() -> None:
    store: dict[str, Any] = {}

    def apply(obj: dict[str, Any]) -> None:  # a plain function
        store["route"] = copy.deepcopy(obj)

    async def get() -> dict[str, Any] | None:  # and a coroutine function
        return store.get("route")

    router = GatewayApiRouter(CONFIG, apply, get)
    assert asyncio.run(router.get_share("d1")) is None
    actuator = Actuator(router, verifier=None, scope=EVERY_SERVICE)
    report = asyncio.run(actuator.actuate(make_decision(0, traffic_percent=25.0), None))
    assert report.status is ActuationStatus.APPLIED and report.backend == "gateway_api"
    assert store["route"] == render_http_route(CONFIG, 25.0)
    rollback = make_decision(1, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK)
    assert asyncio.run(actuator.actuate(rollback, None)).traffic_percent_observed == 0.0


def test_router_errors_are_translated() -> None:
    def refuse(obj: dict[str, Any]) -> None:
        raise PermissionError("httproutes.gateway.networking.k8s.io is forbidden")

    def broken() -> dict[str, Any]:
        raise ConnectionError("no route to the API server")

    router = GatewayApiRouter(CONFIG, refuse, broken)
    target = TrafficTarget("d1", "shop", "v1", "v2", 10.0)
    with pytest.raises(RouterError, match="apply failed: httproutes"):
        asyncio.run(router.set_share(target))
    with pytest.raises(RouterError, match="get failed: no route"):
        asyncio.run(router.get_share("d1"))


def test_config_validation() -> None:
    fields: dict[str, Any] = {
        "route": "shop",
        "gateway": "edge",
        "baseline_service": "a",
        "canary_service": "b",
        "port": 80,
    }
    with pytest.raises(ConfigError, match="route"):
        GatewayApiConfig(**{**fields, "route": "Shop_Route"})
    with pytest.raises(ConfigError, match="must differ"):
        GatewayApiConfig(**{**fields, "canary_service": "a"})
    with pytest.raises(ConfigError, match="port"):
        GatewayApiConfig(**{**fields, "port": 0})
    with pytest.raises(ConfigError, match="namespace"):
        GatewayApiConfig(**{**fields, "namespace": "a.b"})
