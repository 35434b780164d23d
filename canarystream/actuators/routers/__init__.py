"""Traffic routers, one module per backend."""

from canarystream.actuators.routers.gateway_api import (
    GatewayApiConfig,
    GatewayApiRouter,
    merge_patch,
    render_http_route,
)
from canarystream.actuators.routers.haproxy import HAProxyConfig, HAProxyRouter
from canarystream.actuators.routers.memory import MemoryRouter
from canarystream.actuators.routers.nginx import NginxConfig, NginxRouter, render_upstream

__all__ = [
    "GatewayApiConfig",
    "GatewayApiRouter",
    "HAProxyConfig",
    "HAProxyRouter",
    "MemoryRouter",
    "NginxConfig",
    "NginxRouter",
    "merge_patch",
    "render_http_route",
    "render_upstream",
]
