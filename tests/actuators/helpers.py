"""Helpers for actuator tests: decisions, ports, processes, counting who served, and a
backend that follows the protocol and nothing else."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from canarystream.actuators.base import TrafficTarget
from canarystream.contracts.decision import Action, Decision, Phase, decision_id_for

DEPLOYMENT = "shop-2024-06"


def make_decision(
    seq: int,
    action: Action = Action.ADVANCE,
    traffic_percent: float = 10.0,
    phase: Phase = Phase.RUNNING,
    deployment: str = DEPLOYMENT,
) -> Decision:
    """A decision as the engine would publish it (ids derived the engine's way)."""
    return Decision(
        decision_id=decision_id_for(deployment, seq, action.value),
        deployment=deployment,
        service="shop",
        seq=seq,
        action=action,
        ts=1_700_000_000.0 + seq * 5,
        stage=seq,
        traffic_percent=traffic_percent,
        phase=phase,
        baseline_version="v1",
        canary_version="v2",
        policy="default",
        summary=f"{action.value} to {traffic_percent:g}%",
    )


def require_binary(name: str) -> str:
    """The path of ``name``; skip without it, or fail under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (deploy/services/install-{name}.sh installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback TCP ports that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Wait for ``process`` to accept connections on ``port``; fail with its log if it dies."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}: {log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    pytest.fail(f"not listening on {port} after 15 s: {log.read_text(errors='replace')}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a process started by a fixture, then kill it if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


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


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free local port in a thread; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def require_module(name: str) -> None:
    """Import ``name``; skip without it, or fail under CI."""
    try:
        __import__(name)
    except ImportError:
        message = f"the {name!r} package is not installed"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


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
