"""A local webhook receiver: records every POST by path, answers what each path is told to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import orjson
import pytest

from tests.support.services import serve_http


@dataclass
class Receiver:
    """Base URL, the calls received, and scripted answers: path -> list of statuses (the last
    one repeats), optional extra headers per status."""

    base: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, list[int]] = field(default_factory=dict)
    headers: dict[int, dict[str, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def bodies(self, path: str) -> list[Any]:
        with self.lock:
            return [orjson.loads(c["body"]) for c in self.calls if c["path"] == path]

    def answer(self, path: str) -> int:
        with self.lock:
            script = self.answers.get(path, [200])
            return script.pop(0) if len(script) > 1 else script[0]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with found.lock:
                found.calls.append(
                    {
                        "path": self.path,
                        "body": body,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                    }
                )
            status = found.answer(self.path)
            self.send_response(status)
            for name, value in found.headers.get(status, {}).items():
                self.send_header(name, value)
            body = b"" if status in (204, 304) else b"ok"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    with serve_http(Handler) as base:
        found.base = base
        yield found
