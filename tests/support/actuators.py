"""Actuator test helpers: decisions as the engine publishes them, the proxies' handles,
counting who served, and a backend that follows the protocol and nothing else."""

from __future__ import annotations

import http.client
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from canarystream.actuators.base import TrafficTarget
from canarystream.actuators.config import Scope
from canarystream.contracts.decision import Action, Decision, Phase, decision_id_for

__all__ = [
    "DEPLOYMENT",
    "EVERY_SERVICE",
    "Backends",
    "HAProxy",
    "Nginx",
    "ProtocolOnly",
    "count_cohorts",
    "make_decision",
]

DEPLOYMENT = "shop-2024-06"
#: A scope that acts for every service, on decisions up to the default age.
EVERY_SERVICE = Scope(services=("*",))


def make_decision(
    seq: int,
    action: Action = Action.ADVANCE,
    traffic_percent: float = 10.0,
    phase: Phase = Phase.RUNNING,
    deployment: str = DEPLOYMENT,
    *,
    service: str = "shop",
    ts: float | None = None,
) -> Decision:
    """A decision as the engine would publish it (ids derived the engine's way), taken
    ``seq`` * 5 s after ``ts`` (by default: now, so that no actuator finds it too old)."""
    return Decision(
        decision_id=decision_id_for(deployment, seq, action.value),
        deployment=deployment,
        service=service,
        seq=seq,
        action=action,
        ts=(time.time() if ts is None else ts) + seq * 5,
        stage=seq,
        traffic_percent=traffic_percent,
        phase=phase,
        baseline_version="v1",
        canary_version="v2",
        policy="default",
        summary=f"{action.value} to {traffic_percent:g}%",
    )


@dataclass(frozen=True)
class Backends:
    """The two tiny HTTP servers: ``baseline`` and ``canary`` ports on 127.0.0.1."""

    baseline: int
    canary: int


def count_cohorts(port: int, requests: int) -> Counter[str]:
    """Send ``requests`` GETs through a proxy on ``port``, one connection each; count who
    answered (``error`` for a non-200 answer)."""
    served: Counter[str] = Counter()
    for _ in range(requests):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/", headers={"Connection": "close"})
            response = connection.getresponse()
            body = response.read().decode()
            served[body if response.status == 200 else "error"] += 1
        finally:
            connection.close()
    return served


@dataclass(frozen=True)
class HAProxy:
    """A running HAProxy: its admin sockets (unix path, host:port) and its HTTP port."""

    socket: str
    admin: str
    port: int
    backend: str = "app"
    baseline_server: str = "baseline"
    canary_server: str = "canary"


@dataclass(frozen=True)
class Nginx:
    """A running NGINX: binary, master pid, main config, included upstream file, HTTP port."""

    binary: str
    pid: int

    config: Path
    upstream: Path
    port: int
    baseline_server: str
    canary_server: str


class ProtocolOnly:
    """A traffic backend that implements the protocol and nothing else: no base class, no
    router or flag naming, no method but the five."""

    kind = "protocol_only"

    def __init__(self) -> None:
        self.shares: dict[str, float] = {}
        self.closed = False

    async def set_share(self, target: TrafficTarget) -> None:
        self.shares[target.deployment] = target.canary_percent

    async def get_share(self, deployment: str) -> float | None:
        return self.shares.get(deployment)

    def describe(self) -> str:
        return "canary shares in a dict"

    async def close(self) -> None:
        self.closed = True
