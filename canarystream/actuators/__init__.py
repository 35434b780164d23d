"""Actuators: carry decisions out on traffic routers and flag services, safely.

Every router and flag service is a :class:`TrafficBackend` (one module each, under
``routers/`` and ``flags/``); the :class:`Actuator` drives any of them: it verifies a
decision's signature, fences duplicates and stale decisions, applies with retries, reads the
result back and reports. The :class:`HookActuator` runs rollbacks' compensation hooks behind the
same refusal check, metering and reports (:class:`~canarystream.actuators.handler.BaseHandler`).
The :data:`REGISTRY` maps each backend's kind to its configuration model and handler. Nothing
here but the service loop knows of Kafka.
"""

from canarystream.actuators.base import (
    Handler,
    TrafficBackend,
    TrafficTarget,
    describe_error,
    split_weights,
)
from canarystream.actuators.config import BackendConfig
from canarystream.actuators.executor import Actuator, RetryPolicy
from canarystream.actuators.fencing import Admission, Fence, FenceStore
from canarystream.actuators.flags import (
    FlagdConfig,
    FlagdProvider,
    UnleashConfig,
    UnleashProvider,
)
from canarystream.actuators.handler import BaseHandler
from canarystream.actuators.hooks import HookActuator, HookOutcome, HookRunner, HookRunnerConfig
from canarystream.actuators.metrics import ActuationMetrics
from canarystream.actuators.registry import REGISTRY, HandlerOptions, Plugin, Registry, traffic
from canarystream.actuators.routers import (
    GatewayApiConfig,
    GatewayApiFileConfig,
    GatewayApiRouter,
    HAProxyConfig,
    HAProxyRouter,
    MemoryConfig,
    MemoryRouter,
    NginxConfig,
    NginxRouter,
)

__all__ = [
    "REGISTRY",
    "ActuationMetrics",
    "Actuator",
    "Admission",
    "BackendConfig",
    "BaseHandler",
    "Fence",
    "FenceStore",
    "FlagdConfig",
    "FlagdProvider",
    "GatewayApiConfig",
    "GatewayApiFileConfig",
    "GatewayApiRouter",
    "HAProxyConfig",
    "HAProxyRouter",
    "Handler",
    "HandlerOptions",
    "HookActuator",
    "HookOutcome",
    "HookRunner",
    "HookRunnerConfig",
    "MemoryConfig",
    "MemoryRouter",
    "NginxConfig",
    "NginxRouter",
    "Plugin",
    "Registry",
    "RetryPolicy",
    "TrafficBackend",
    "TrafficTarget",
    "UnleashConfig",
    "UnleashProvider",
    "describe_error",
    "split_weights",
    "traffic",
]
