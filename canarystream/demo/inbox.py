"""The live demo's notifications: ``canarystream notify`` beside the worker, and a local inbox.

The inbox is a webhook receiver on 127.0.0.1 (a free port) that appends every body it gets to
``notifications.jsonl`` and reports a one-line summary. The notifier runs as a process of its
own, as in production, with a routes file written for the run: one ``json`` route taking every
event of every service, posting to the inbox; it reads the run's decisions topic from the
beginning (``--start-from earliest``: it needs no head start) and verifies each with the run's
worker key.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from canarystream.contracts.decision import Decision
from canarystream.demo.stack import DemoStack, WorkerProcess
from canarystream.notify.config import NotifyConfig, RateLimit, Retry, Route
from canarystream.notify.events import EventKind, events_of

__all__ = [
    "NOTIFICATIONS",
    "DemoNotifications",
    "NotificationInbox",
    "demo_notify_config",
    "expected_notifications",
    "start_notifier",
]

NOTIFICATIONS = "notifications.jsonl"  # in the output directory: every body received
ROUTE = "demo"  # the one route of the demo's routes file
_FORMAT = "json"
_MAX_BODY = 1 << 20  # bytes; a larger body is refused


def demo_notify_config(base_url: str) -> NotifyConfig:
    """Every event of every service, as generic JSON, to ``base_url``/hooks/demo."""
    return NotifyConfig(
        allowed_urls=[f"{base_url}/hooks"],
        routes=[
            Route(
                name=ROUTE,
                services=["*"],
                events=list(EventKind),
                format=_FORMAT,
                url=f"{base_url}/hooks/{ROUTE}",
                timeout_seconds=5.0,
            )
        ],
        retry=Retry(max_attempts=5, initial_delay=0.2, max_delay=2.0, deadline=20.0),
        rate_limit=RateLimit(per_minute=6000, burst=1000),  # the demo's event time is fast
    )


def expected_notifications(decisions: list[Decision]) -> int:
    """How many of ``decisions`` the demo's route notifies (one per decision with an event)."""
    return sum(1 for decision in decisions if events_of(decision))


def summary_line(body: Any, route: str) -> str:
    """``notification: rollback of payments-errors-x3 (json, route demo)``."""
    if isinstance(body, dict):
        event, deployment = body.get("event", "?"), body.get("deployment", "?")
        return f"notification: {event} of {deployment} ({_FORMAT}, route {route})"
    return f"notification: an unreadable body on route {route}"


class NotificationInbox:
    """The webhook receiver: appends each body to ``path`` and calls ``on_line`` with its
    summary. Serves in a thread from construction until :meth:`close`."""

    def __init__(self, path: Path, on_line: Callable[[str], None]) -> None:
        self.path = path
        self.on_line = on_line
        self.received = 0
        self._lock = threading.Lock()
        path.write_bytes(b"")
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 <= length <= _MAX_BODY:
                    self._answer(413)
                    return
                inbox.take(self.path, self.rfile.read(length))
                self._answer(200)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="demo-inbox", daemon=True
        )
        self._thread.start()

    def take(self, path: str, raw: bytes) -> None:
        """Record one POST (a body that is not JSON is kept as text) and report it."""
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode(errors="replace")
        route = path.rsplit("/", 1)[-1]
        received = datetime.now(UTC).isoformat(timespec="milliseconds")
        line = orjson.dumps({"received": received, "route": route, "body": body})
        with self._lock:
            with self.path.open("ab") as sink:
                sink.write(line + b"\n")
            self.received += 1
        self.on_line(summary_line(body, route))

    def wait_for(self, count: int, timeout: float) -> bool:
        """Whether ``count`` notifications have arrived within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.received < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_notifier(stack: DemoStack, config: NotifyConfig, out_dir: Path) -> WorkerProcess:
    """``canarystream notify`` on the run's decisions, from their beginning; do not wait.

    Its routes file is ``out_dir/notify.json``, its log ``out_dir/notify.log``. Returned as a
    :class:`WorkerProcess` for its process helpers (it serves no web port: ``port`` is 0).
    """
    routes = out_dir / "notify.json"
    routes.write_bytes(orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    log = out_dir / "notify.log"
    env = {
        **os.environ,
        **stack.watch_env(),
        "CANARYSTREAM_NOTIFY_METRICS_PORT": "0",  # no /metrics server
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "canarystream", "notify", "--config", str(routes),
             "--start-from", "earliest"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches only the demo
        )  # fmt: skip
    return WorkerProcess(0, process, log, name="notify")


class DemoNotifications:
    """One run's inbox (``out_dir/notifications.jsonl``) and the notifier posting to it."""

    def __init__(self, stack: DemoStack, out_dir: Path, on_line: Callable[[str], None]) -> None:
        self.path = out_dir / NOTIFICATIONS
        self.inbox = NotificationInbox(self.path, on_line)
        try:
            self.notifier = start_notifier(stack, demo_notify_config(self.inbox.base_url), out_dir)
        except BaseException:
            self.inbox.close()
            raise

    @property
    def url(self) -> str:
        return f"{self.inbox.base_url}/hooks/{ROUTE}"

    def finish(self, decisions: list[Decision], timeout: float = 30.0) -> tuple[int, int]:
        """Wait until the notifications of ``decisions`` have arrived (``timeout`` seconds at
        most, none if the notifier died), then stop the notifier; (received, expected)."""
        want = expected_notifications(decisions)
        self.inbox.wait_for(want, timeout if self.notifier.alive() else 0.0)
        self.notifier.stop()
        return self.inbox.received, want

    def stop(self) -> None:
        """Stop the notifier and the inbox (idempotent)."""
        self.notifier.stop()
        self.inbox.close()
