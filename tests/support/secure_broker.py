"""A secured broker for tests: ``canarystream kafka up --secure`` on free ports, for a session.

It runs beside the shared plain broker, under a home directory of its own (the jars are the
shared home's, linked), and is stopped and wiped at the end of the session. Without Java or
the jars it skips, except under CI, where it fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from canarystream.errors import BrokerError
from canarystream.kafka.local import LocalKafka, default_home
from tests.support.broker import Stack
from tests.support.services import free_ports, require_service

__all__ = ["SecureBroker", "secure_broker", "secure_stack"]


@dataclass(frozen=True)
class SecureBroker:
    """The running secured broker, what ``kafka up --secure`` printed, and its users."""

    broker: LocalKafka
    home: Path
    output: str

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def settings(self, user: str = "admin") -> dict[str, str]:
        """``user``'s client settings (field names of the settings)."""
        return self.broker.client_settings(user)

    def env(self, user: str = "admin") -> dict[str, str]:
        """``user``'s client settings as the environment variables of its env file."""
        lines = self.broker.security.env_file(user).read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line)


def _two_free_ports() -> int:
    """A free port whose successor is free too (``kafka up`` puts the controller there)."""
    for _ in range(100):
        (port,) = free_ports(1)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CANARYSTREAM_KAFKA_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "canarystream", "kafka", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """``canarystream kafka up --secure --port P`` for the session; down and wiped after."""
    shared = LocalKafka(default_home())
    try:
        libs = shared.install()
    except BrokerError as exc:
        require_service("the broker's jars", str(exc))
    home = tmp_path_factory.mktemp("secure-kafka")
    (home / libs.parent.name).mkdir()
    (home / libs.parent.name / "libs").symlink_to(libs)
    port = _two_free_ports()
    started = _cli(home, "up", "--secure", "--port", str(port))
    broker = LocalKafka(home, port=port, controller_port=port + 1, secure=True)
    if started.returncode != 0:
        broker.wipe()
        require_service("a secured Kafka broker", started.stderr + started.stdout)
    try:
        yield SecureBroker(broker, home, started.stdout)
    finally:
        _cli(home, "down", "--secure", "--port", str(port), "--wipe")
        broker.wipe()


@pytest.fixture
def secure_stack(secure_broker: SecureBroker, tmp_path: Path) -> Iterator[Stack]:
    """A :class:`Stack` on the secured broker: its clients connect as ``admin``, its workers
    as ``worker``."""
    stack = Stack(
        secure_broker.bootstrap,
        tmp_path,
        security=secure_broker.settings("admin"),
        worker_env=secure_broker.env("worker"),
    )
    try:
        yield stack
    finally:
        stack.stop()
