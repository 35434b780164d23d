"""Local services for tests: free ports, binaries and packages they need, processes, HTTP.

A missing binary, package or service skips the test, except under CI (``CI=true``), where it
fails: nothing skips there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NoReturn

import pytest

from canarystream.demo.stack import free_port, free_ports

__all__ = [
    "free_port",
    "free_ports",
    "require_binary",
    "require_module",
    "require_service",
    "serve_http",
    "stop",
    "wait_until_listening",
]


def require_service(what: str, hint: str) -> NoReturn:
    """Skip when a service is missing; in CI (CI=true) fail instead: nothing skips there."""
    message = f"{what} is not available: {hint}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_binary(name: str) -> str:
    """The path of ``name``; skip without it, or fail under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (deploy/services/install-{name}.sh installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


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
