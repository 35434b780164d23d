"""Fixtures for flag-provider tests: a real flagd, and an OFREP stand-in for machines without one.

flagd is built by ``deploy/services/install-flagd.sh`` into
``${CANARYSTREAM_CACHE:-~/.cache/canarystream}/bin/flagd`` (``FLAGD_BIN`` overrides the
path). Without it the real-flagd tests are skipped, except under CI (``CI=true``), where they
fail: CI must never pass by skipping the real thing. They carry the ``flagd`` mark: where the
Go module proxy refuses the flagd module (as on our CI machines), ``make test`` deselects
them openly with ``-m "not flagd"``, and Unleash is the flag service tested for real.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.services import free_ports, require_module, stop, wait_until_listening
from tests.support.unleash import service_name, unleash  # noqa: F401

EMPTY_FLAGS = {"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": {}}


@dataclass(frozen=True)
class FlagService:
    """Something serving a flag file: its path, OFREP URL and, for flagd, its gRPC port."""

    name: str
    path: Path
    ofrep_url: str
    grpc_port: int | None = None  # flagd's evaluation service (the SDK's RPC resolver)


def flagd_binary() -> str:
    """The flagd binary; skip without it, or fail under CI."""
    cache = Path(os.environ.get("CANARYSTREAM_CACHE") or Path.home() / ".cache/canarystream")
    candidates = [os.environ.get("FLAGD_BIN"), str(cache / "bin/flagd"), shutil.which("flagd")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = f"flagd is not built (deploy/services/install-flagd.sh builds it into {cache}/bin)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Wait until flagd's management port says its flag source is synced (``/readyz``)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")
            pytest.fail(f"flagd exited with {process.returncode}: {output}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        with contextlib.suppress(OSError):
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        connection.close()
        time.sleep(0.1)
    pytest.fail(f"flagd not ready after 20 s: {log.read_text(errors='replace')}")


@pytest.fixture
def flagd(tmp_path: Path) -> Iterator[FlagService]:
    """A real flagd watching ``<tmp>/flags.json`` (no flags to start with), on free loopback
    ports; stopped afterwards."""
    binary = flagd_binary()
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(EMPTY_FLAGS))
    port, management, sync, ofrep = free_ports(4)
    log = tmp_path / "flagd.log"
    command = [
        binary,
        "start",
        "--uri",
        f"file:{path}",
        "--port",
        str(port),
        "--management-port",
        str(management),
        "--sync-port",
        str(sync),
        "--ofrep-port",
        str(ofrep),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(process, management, log)
        wait_until_listening(process, ofrep, log)
        wait_until_listening(process, port, log)
        yield FlagService("flagd", path, f"http://127.0.0.1:{ofrep}", grpc_port=port)
    finally:
        stop(process)


class _OfrepHandler(BaseHTTPRequestHandler):
    """Evaluates ``POST /ofrep/v1/evaluate/flags/{key}`` with OpenFeature's flagd evaluator
    (openfeature-flagd-core) over the current flag file, answering as flagd's OFREP does."""

    def do_POST(self) -> None:
        from openfeature.contrib.tools.flagd.core import FlagdCore  # noqa: PLC0415
        from openfeature.evaluation_context import EvaluationContext  # noqa: PLC0415
        from openfeature.exception import FlagNotFoundError  # noqa: PLC0415

        prefix = "/ofrep/v1/evaluate/flags/"
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.startswith(prefix):
            return self._answer(404, {"errorCode": "GENERAL", "errorDetails": "no such path"})
        key = self.path.removeprefix(prefix)
        context = dict(request.get("context") or {})
        targeting_key = context.pop("targetingKey", None)
        core = FlagdCore()
        core.set_flags(self.server.path.read_text())  # type: ignore[attr-defined]
        try:
            details = core.resolve_string_value(key, "", EvaluationContext(targeting_key, context))
        except FlagNotFoundError as exc:
            missing = {"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": str(exc)}
            return self._answer(404, missing)
        answer = {
            "key": key,
            "value": details.value,
            "variant": details.variant,
            "reason": str(details.reason),
            "metadata": dict(details.flag_metadata),
        }
        return self._answer(200, answer)

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


@pytest.fixture
def ofrep_standin(tmp_path: Path) -> Iterator[FlagService]:
    """A local OFREP server evaluating ``<tmp>/flags.json`` with OpenFeature's own flagd
    evaluator: the read-back path exercised where no flagd binary is built."""
    require_module("openfeature.contrib.tools.flagd.core")
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(EMPTY_FLAGS))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OfrepHandler)
    server.daemon_threads = True
    server.path = path  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield FlagService("standin", path, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(params=[pytest.param("flagd", marks=pytest.mark.flagd), "standin"])
def flag_service(request: pytest.FixtureRequest) -> FlagService:
    """The real flagd, then the OFREP stand-in: the provider's read-back against each."""
    name = "ofrep_standin" if request.param == "standin" else "flagd"
    service: FlagService = request.getfixturevalue(name)
    return service
