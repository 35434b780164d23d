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
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, Field, field_validator, model_validator

from canarystream.actuators.base import TrafficTarget, split_weights
from canarystream.actuators.config import BackendConfig, Strings
from canarystream.atomicfile import write_atomically
from canarystream.errors import RouterError

__all__ = [
    "API_VERSION",
    "GatewayApiConfig",
    "GatewayApiFileConfig",
    "GatewayApiRouter",
    "file_router",
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


class GatewayApiConfig(BackendConfig):
    """The HTTPRoute to own, the Gateway it attaches to, and the two Services."""

    route: str = Field(description="HTTPRoute name.")
    gateway: str = Field(description="Parent Gateway name.")
    baseline_service: str = Field(description="Kubernetes Service of the baseline.")
    canary_service: str = Field(description="Kubernetes Service of the canary.")
    port: int = Field(
        validation_alias=AliasChoices("port", "service_port"),
        description="Port both Services serve on.",
    )
    namespace: str = Field(default="default", description="Namespace of the route.")
    gateway_namespace: str | None = Field(
        default=None, description="Namespace of the Gateway, if not the route's."
    )
    hostnames: Strings = Field(
        default=(),
        validation_alias=AliasChoices("hostnames", "hostname"),
        description="Hostnames the route matches (repeatable).",
    )
    total_weight: int = Field(default=100, description="The two weights sum to this.")

    @field_validator("route", "gateway", "baseline_service", "canary_service")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _DNS_NAME.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes name")
        return value

    @field_validator("namespace", "gateway_namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes namespace")
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError(f"{value} is not within 1..65535")
        return value

    @field_validator("total_weight")
    @classmethod
    def _total_weight(cls, value: int) -> int:
        if not 2 <= value <= 1_000_000:
            raise ValueError(f"{value} is not within 2..1000000")
        return value

    @model_validator(mode="after")
    def _two_services(self) -> GatewayApiConfig:
        if self.baseline_service == self.canary_service:
            raise ValueError("canary_service: must differ from baseline_service")
        return self


class GatewayApiFileConfig(GatewayApiConfig):
    """An HTTPRoute rendered to a file, for ``kubectl apply -f`` or a GitOps commit."""

    out: Path = Field(description="Write the rendered HTTPRoute here (YAML); read back from it.")


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
    text: str = yaml.safe_dump(obj, sort_keys=False)
    return text


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
    ``destination`` says where ``apply`` puts the route, for :meth:`describe`.
    """

    kind = "gateway_api"

    def __init__(
        self,
        config: GatewayApiConfig,
        apply: Callable[[KubeObject], Awaitable[object] | object],
        get: Callable[[], Awaitable[KubeObject | None] | KubeObject | None],
        *,
        destination: str = "applied by a callable",
    ) -> None:
        self.config = config
        self._apply = apply
        self._get = get
        self.destination = destination

    def describe(self) -> str:
        """The route, its two Services, and where it goes."""
        config = self.config
        return (
            f"HTTPRoute {config.namespace}/{config.route} (baseline {config.baseline_service}, "
            f"canary {config.canary_service}) {self.destination}"
        )

    async def set_share(self, target: TrafficTarget) -> None:
        """Apply the route for ``target.canary_percent``."""
        route = render_http_route(self.config, target.canary_percent)
        try:
            await _resolve(self._apply(route))
        except Exception as exc:
            raise RouterError(f"HTTPRoute {self.config.route}: apply failed: {exc}") from exc

    async def get_share(self, deployment: str) -> float | None:
        """The canary's share in the live route, %; None if the route is missing."""
        try:
            live = await _resolve(self._get())
        except Exception as exc:
            raise RouterError(f"HTTPRoute {self.config.route}: get failed: {exc}") from exc
        return read_canary_percent(live, self.config)

    async def close(self) -> None:
        """Nothing to release: the callables own their clients."""


def file_router(config: GatewayApiFileConfig) -> GatewayApiRouter:
    """A router that writes the rendered route to ``config.out`` (atomically: a reader never
    sees half a route) and reads the share back from that file."""
    path = config.out

    def write(obj: KubeObject) -> None:
        write_atomically(path, to_yaml(obj).encode(), mode=0o644)

    def read() -> KubeObject | None:
        if not path.exists():
            return None
        loaded = yaml.safe_load(path.read_text("utf-8"))
        return loaded if isinstance(loaded, dict) else None

    return GatewayApiRouter(config, apply=write, get=read, destination=f"written to {path}")
