"""Fixtures for the Unleash flag provider's tests: a real Unleash server on a throwaway PostgreSQL.

``deploy/services/unleash/install.sh`` installs both (PostgreSQL from Debian, unleash-server
with ``npm ci``); ``start.sh`` starts them on free loopback ports and ``stop.sh`` stops them.
Without them the tests that need the server are skipped, except under CI (``CI=true``), where
they fail: CI must never pass by skipping the real thing. One server per test session (per
xdist worker); each test uses toggles of its own service names, so tests never share a toggle.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import free_ports, require_service

SERVICE_DIR = Path(__file__).resolve().parents[2] / "deploy/services/unleash"


@dataclass(frozen=True)
class UnleashService:
    """A running Unleash: its URL, an admin token, a backend (SDK) token and where they act."""

    url: str
    admin_token: str = ""
    backend_token: str = ""
    project: str = "default"
    environment: str = "development"
    log: Path | None = None


def _missing() -> str | None:
    """What is missing to run Unleash here, if anything."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "Node.js and npm"
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and shutil.which("initdb") is None:
        return "PostgreSQL"
    if not (SERVICE_DIR / "node_modules/unleash-server").is_dir():
        return "the npm package unleash-server"
    return None


@pytest.fixture(scope="session")
def unleash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UnleashService]:
    """A real Unleash (with its own PostgreSQL) on free loopback ports for the session."""
    missing = _missing()
    if missing is not None:
        require_service(missing, f"run {SERVICE_DIR}/install.sh")
    admin = f"*:*.{secrets.token_hex(16)}"
    backend = f"default:development.{secrets.token_hex(16)}"
    for attempt in range(3):
        # Ports free a moment ago may be taken by the time a server binds them: try others.
        state = tmp_path_factory.mktemp("unleash")
        pg_port, port = free_ports(2)
        environment = {
            **os.environ,
            "PG_PORT": str(pg_port),
            "UNLEASH_PORT": str(port),
            "UNLEASH_ADMIN_TOKEN": admin,
            "UNLEASH_BACKEND_TOKENS": backend,
        }
        started = subprocess.run(
            ["bash", str(SERVICE_DIR / "start.sh"), str(state)],
            env=environment,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if started.returncode == 0 or "already in use" not in started.stderr or attempt == 2:
            break
        _stop(state)
    try:
        if started.returncode != 0:
            pytest.fail(f"Unleash did not start: {started.stderr.strip()}", pytrace=False)
        settings = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
        yield UnleashService(
            url=settings["UNLEASH_URL"],
            admin_token=admin,
            backend_token=backend,
            log=state / "unleash.log",
        )
    finally:
        _stop(state)


def _stop(state: Path) -> None:
    subprocess.run(
        ["bash", str(SERVICE_DIR / "stop.sh"), str(state)],
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def service_name() -> str:
    """A service name no other test uses, so each test has toggles of its own."""
    return f"shop{uuid.uuid4().hex[:10]}"
