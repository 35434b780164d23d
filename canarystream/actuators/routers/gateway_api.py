"""Kubernetes Gateway API router: the canary share as ``backendRefs`` weights of an HTTPRoute.

The route sends every request matched by its rule to the baseline and canary Services in
proportion to their weights (weight 0 takes no traffic). The router renders the whole
route and hands it to an ``apply`` callable (server-side apply, a client library, a GitOps
commit); :func:`merge_patch` gives the equivalent JSON merge patch for ``kubectl patch
--type merge``. A merge patch replaces lists whole, so it carries the complete ``rules``.

>>> config = GatewayApiConfig(route="shop", gateway="edge", baseline_service="shop-v1",
...                           canary_service="shop-v2", port=80)
>>> route = render_http_route(config, 25)
>>> [(ref["name"], ref["weight"]) for ref in route["spec"]["rules"][0]["backendRefs"]]
[('shop-v1', 75), ('shop-v2', 25)]
>>> read_canary_percent(route, config)
25.0
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml

from canarystream.actuators.base import TrafficTarget, split_weights
from canarystream.errors import ConfigError, RouterError

__all__ = [
    "API_VERSION",
    "GatewayApiConfig",
    "GatewayApiRouter",
    "merge_patch",
    "read_canary_percent",
    "render_http_route",
    "to_yaml",
]

API_VERSION = "gateway.networking.k8s.io/v1"
_ANNOTATION = "canarystream.io/canary-percent"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

KubeObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class GatewayApiConfig:
    """The HTTPRoute to own, the Gateway it attaches to, and the two Services."""

    route: str  # HTTPRoute name
    gateway: str  # parent Gateway name
    baseline_service: str
    canary_service: str
    port: int  # Service port both cohorts serve on
    namespace: str = "default"
    gateway_namespace: str | None = None  # the Gateway's, when not the route's
    hostnames: tuple[str, ...] = ()
    total_weight: int = 100

    def __post_init__(self) -> None:
        for name in ("route", "gateway", "baseline_service", "canary_service"):
            if not _DNS_NAME.match(getattr(self, name)):
                raise ConfigError(f"{name}: {getattr(self, name)!r} is not a Kubernetes name")
        for name in ("namespace", "gateway_namespace"):
            value = getattr(self, name)
            if value is not None and not _DNS_LABEL.match(value):
                raise ConfigError(f"{name}: {value!r} is not a Kubernetes namespace")
        if self.baseline_service == self.canary_service:
            raise ConfigError("canary_service: must differ from baseline_service")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port: {self.port} is not within 1..65535")
        if not 2 <= self.total_weight <= 1_000_000:
            raise ConfigError(f"total_weight: {self.total_weight} is not within 2..1000000")


def _rules(config: GatewayApiConfig, canary_percent: float) -> list[KubeObject]:
    baseline, canary = split_weights(canary_percent, config.total_weight)
    return [
        {
            "backendRefs": [
                {"name": config.baseline_service, "port": config.port, "weight": baseline},
                {"name": config.canary_service, "port": config.port, "weight": canary},
            ]
        }
    ]


def render_http_route(config: GatewayApiConfig, canary_percent: float) -> KubeObject:
    """The whole HTTPRoute that gives the canary ``canary_percent`` % of requests."""
    parent: KubeObject = {"name": config.gateway}
    if config.gateway_namespace is not None:
        parent["namespace"] = config.gateway_namespace
    spec: KubeObject = {"parentRefs": [parent]}
    if config.hostnames:
        spec["hostnames"] = list(config.hostnames)
    spec["rules"] = _rules(config, canary_percent)
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {
            "name": config.route,
            "namespace": config.namespace,
            "annotations": {_ANNOTATION: f"{canary_percent:g}"},
            "labels": {"app.kubernetes.io/managed-by": "canarystream"},
        },
        "spec": spec,
    }


def merge_patch(config: GatewayApiConfig, canary_percent: float) -> KubeObject:
    """A JSON merge patch (RFC 7386) that sets the weights on an existing route."""
    return {
        "metadata": {"annotations": {_ANNOTATION: f"{canary_percent:g}"}},
        "spec": {"rules": _rules(config, canary_percent)},
    }


def to_yaml(obj: KubeObject) -> str:
    """A Kubernetes object as YAML, keys in the order they were rendered."""
    return yaml.safe_dump(obj, sort_keys=False)


def read_canary_percent(obj: KubeObject | None, config: GatewayApiConfig) -> float | None:
    """The canary's share, %, in the first rule of a route that names either Service;
    None when there is no route, no such rule, or both weights are 0."""
    if not obj:
        return None
    for rule in obj.get("spec", {}).get("rules", []) or []:
        weights = {config.baseline_service: 0, config.canary_service: 0}
        seen = False
        for ref in rule.get("backendRefs", []) or []:
            if ref.get("kind", "Service") == "Service" and ref.get("name") in weights:
                weights[ref["name"]] += int(ref.get("weight", 1))  # the API's default is 1
                seen = True
        if seen:
            total = sum(weights.values())
            return None if total == 0 else 100.0 * weights[config.canary_service] / total
    return None


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class GatewayApiRouter:
    """Routes a canary share by applying a rendered HTTPRoute.

    ``apply(obj)`` writes the object and ``get()`` returns the live one (or None); either may
    be a plain function or a coroutine function. Their exceptions become ``RouterError``.
    """

    kind = "gateway_api"

    def __init__(
        self,
        config: GatewayApiConfig,
        apply: Callable[[KubeObject], Awaitable[object] | object],
        get: Callable[[], Awaitable[KubeObject | None] | KubeObject | None],
    ) -> None:
        self.config = config
        self._apply = apply
        self._get = get

    async def set_weight(self, target: TrafficTarget) -> None:
        """Apply the route for ``target.canary_percent``."""
        route = render_http_route(self.config, target.canary_percent)
        try:
            await _resolve(self._apply(route))
        except Exception as exc:
            raise RouterError(f"HTTPRoute {self.config.route}: apply failed: {exc}") from exc

    async def get_weight(self, deployment: str) -> float | None:
        """The canary's share in the live route, %; None if the route is missing."""
        try:
            live = await _resolve(self._get())
        except Exception as exc:
            raise RouterError(f"HTTPRoute {self.config.route}: get failed: {exc}") from exc
        return read_canary_percent(live, self.config)

    async def close(self) -> None:
        """Nothing to release: the callables own their clients."""
