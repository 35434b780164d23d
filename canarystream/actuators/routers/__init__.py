"""Traffic routers, one module per backend."""

from canarystream.actuators.routers.gateway_api import (
    GatewayApiConfig,
    GatewayApiFileConfig,
    GatewayApiRouter,
    file_router,
    merge_patch,
    render_http_route,
)
from canarystream.actuators.routers.haproxy import HAProxyConfig, HAProxyRouter
from canarystream.actuators.routers.memory import MemoryConfig, MemoryRouter
from canarystream.actuators.routers.nginx import NginxConfig, NginxRouter, render_upstream

__all__ = [
    "GatewayApiConfig",
    "GatewayApiFileConfig",
    "GatewayApiRouter",
    "HAProxyConfig",
    "HAProxyRouter",
    "MemoryConfig",
    "MemoryRouter",
    "NginxConfig",
    "NginxRouter",
    "file_router",
    "merge_patch",
    "render_http_route",
    "render_upstream",
]
