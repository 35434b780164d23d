"""Local services for tests: free ports, binaries and packages they need, processes, HTTP.

A missing binary, package or service skips the test, except under CI (``CI=true``), where it
fails: nothing skips there.
"""

from __future__ import annotations

import contextlib
import ipaddress
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
    "listening_addresses",
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


def listening_addresses(port: int) -> set[str]:
    """The local addresses on which some process listens on TCP ``port`` (Linux
    ``/proc/net/tcp*``): ``{"127.0.0.1"}`` for this host only, ``{"0.0.0.0"}`` for every
    interface."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                local, state = row.split()[1], row.split()[3]
                address, _, hex_port = local.partition(":")
                if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(address)
                # The kernel writes each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, width // 2, 4))
                ip = ipaddress.ip_address(words)
                mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
                found.add(str(mapped or ip))
    return found
