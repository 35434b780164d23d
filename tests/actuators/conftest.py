"""Fixtures for actuator tests: two tiny HTTP backends, and real HAProxy / NGINX.

The proxies run from Debian's packages (``deploy/services/install-*.sh``). Where one is
missing a test is skipped, except under CI (``CI=true``), where it fails: CI must never
pass by skipping the real thing.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.actuators import Backends, HAProxy, Nginx
from tests.support.broker import kafka_bootstrap, stack  # noqa: F401  (broker fixtures)
from tests.support.services import free_ports, require_binary, stop, wait_until_listening


class _NameHandler(BaseHTTPRequestHandler):
    """Answers every GET with the server's name: which cohort served the request."""

    def do_GET(self) -> None:
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


@pytest.fixture
def backends() -> Iterator[Backends]:
    """Two HTTP servers on ephemeral loopback ports that answer with their cohort's name."""
    servers = []
    for name in ("baseline", "canary"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _NameHandler)
        server.daemon_threads = True
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
    try:
        yield Backends(servers[0].server_address[1], servers[1].server_address[1])
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def haproxy(tmp_path: Path, backends: Backends) -> Iterator[HAProxy]:
    """HAProxy in the foreground, round-robin over the two backends, all traffic on the
    baseline to start with, and the admin-level Runtime API on a unix and a TCP socket.
    Sessions are sticky by cookie (``SRV=b`` or ``SRV=c``); clients without one are
    balanced by weight."""
    binary = require_binary("haproxy")
    sock = tmp_path / "haproxy.sock"
    port, admin_port = free_ports(2)
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        f"""\
global
    stats socket {sock} mode 600 level admin
    stats socket ipv4@127.0.0.1:{admin_port} level admin
    maxconn 256

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend web
    bind 127.0.0.1:{port}
    default_backend app

backend app
    balance roundrobin
    cookie SRV insert indirect nocache
    server baseline 127.0.0.1:{backends.baseline} weight 100 cookie b
    server canary 127.0.0.1:{backends.canary} weight 0 cookie c
"""
    )
    log = tmp_path / "haproxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-f", str(config), "-db"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_listening(process, port, log)
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield HAProxy(socket=str(sock), admin=f"127.0.0.1:{admin_port}", port=port)
    finally:
        stop(process)


@pytest.fixture
def nginx(tmp_path: Path, backends: Backends) -> Iterator[Nginx]:
    """NGINX in the foreground with one worker, proxying to the upstream file it includes
    (all traffic on the baseline to start with)."""
    binary = require_binary("nginx")
    (port,) = free_ports(1)
    baseline = f"127.0.0.1:{backends.baseline}"
    canary = f"127.0.0.1:{backends.canary}"
    upstream = tmp_path / "upstream.conf"
    upstream.write_text(
        f"upstream app {{\n    server {baseline} weight=100;\n    server {canary} down;\n}}\n"
    )
    config = tmp_path / "nginx.conf"
    config.write_text(
        f"""\
daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    include {upstream};
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://app; }}
    }}
}}
"""
    )
    log = tmp_path / "nginx.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-c", str(config), "-e", str(tmp_path / "error.log")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_listening(process, port, log)
        yield Nginx(binary, process.pid, config, upstream, port, baseline, canary)
    finally:
        stop(process)
