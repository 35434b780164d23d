"""Actuators: carry decisions out on traffic routers and flag services, safely.

Backends follow the small protocols in :mod:`~canarystream.actuators.base`; the
:class:`Actuator` verifies a decision's signature, fences duplicates and stale decisions,
applies with retries, reads the result back and reports. Nothing here knows of Kafka.
"""

from canarystream.actuators.base import FlagProvider, Router, TrafficTarget, split_weights
from canarystream.actuators.executor import Actuator, RetryPolicy
from canarystream.actuators.fencing import Admission, Fence
from canarystream.actuators.flags import (
    FlagdConfig,
    FlagdProvider,
    UnleashConfig,
    UnleashProvider,
)
from canarystream.actuators.hooks import HookActuator, HookOutcome, HookRunner, HookRunnerConfig
from canarystream.actuators.metrics import ActuationMetrics
from canarystream.actuators.routers import (
    GatewayApiConfig,
    GatewayApiRouter,
    HAProxyConfig,
    HAProxyRouter,
    MemoryRouter,
    NginxConfig,
    NginxRouter,
)

__all__ = [
    "ActuationMetrics",
    "Actuator",
    "Admission",
    "Fence",
    "FlagProvider",
    "FlagdConfig",
    "FlagdProvider",
    "GatewayApiConfig",
    "GatewayApiRouter",
    "HAProxyConfig",
    "HAProxyRouter",
    "HookActuator",
    "HookOutcome",
    "HookRunner",
    "HookRunnerConfig",
    "MemoryRouter",
    "NginxConfig",
    "NginxRouter",
    "RetryPolicy",
    "Router",
    "TrafficTarget",
    "UnleashConfig",
    "UnleashProvider",
    "split_weights",
]
