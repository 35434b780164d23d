"""A bounded load generator for the end-to-end drill: GET requests to loopback targets only.

    python deploy/e2e/loadgen.py --target NAME=http://127.0.0.1:PORT/ ... --rate 40 \\
        --duration 120 --max-requests 20000 --out results.jsonl

Each target gets ``--rate`` requests a second on a fixed schedule (one connection per
request, so the proxy balances every request afresh) until ``--duration`` seconds or
``--max-requests`` requests in all, or SIGTERM. One JSON line per request is appended to
``--out`` (flushed twice a second): ``target``, ``t`` (wall clock when sent), ``status`` (0:
no answer), ``version`` (the ``X-Version`` answer header), ``ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import signal
import sys
import time
import urllib.parse
from typing import IO

TIMEOUT = 5.0
CONCURRENCY = 64


async def fetch(host: str, port: int, path: str) -> tuple[int, str | None]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    version = next(
        (
            line.split(":", 1)[1].strip()
            for line in head[1:]
            if line.lower().startswith("x-version:")
        ),
        None,
    )
    return status, version


class Load:
    def __init__(self, args: argparse.Namespace, out: IO[str]) -> None:
        self.args = args
        self.out = out
        self.sent = 0
        self.lines: list[str] = []
        self.slots = asyncio.Semaphore(CONCURRENCY)

    async def one(self, name: str, host: str, port: int, path: str) -> None:
        sent = time.time()
        started = time.perf_counter()
        try:
            async with self.slots:
                status, version = await asyncio.wait_for(fetch(host, port, path), TIMEOUT)
        except (OSError, TimeoutError, ValueError, IndexError):
            status, version = 0, None
        ms = (time.perf_counter() - started) * 1000.0
        record = {"target": name, "t": sent, "status": status, "version": version, "ms": ms}
        self.lines.append(json.dumps(record))

    async def target(self, name: str, url: str, stop: asyncio.Event) -> None:
        parts = urllib.parse.urlsplit(url)
        host, port, path = parts.hostname or "", parts.port or 80, parts.path or "/"
        interval = 1.0 / self.args.rate
        start = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        while not stop.is_set() and self.sent < self.args.max_requests:
            due = start + n * interval
            if due - start > self.args.duration:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(due - time.monotonic(), 0.0))
                break
            task = asyncio.create_task(self.one(name, host, port, path))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.sent += 1
            n += 1
        if tasks:
            await asyncio.wait(tasks)

    async def flush(self, stop: asyncio.Event) -> None:
        while True:
            stopping = stop.is_set()
            if self.lines:
                lines, self.lines = self.lines, []
                self.out.write("\n".join(lines) + "\n")
                self.out.flush()
            if stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


async def main(args: argparse.Namespace) -> None:
    stop, done = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    with open(args.out, "a", encoding="utf-8") as out:
        load = Load(args, out)
        flusher = asyncio.create_task(load.flush(done))
        await asyncio.gather(*(load.target(name, url, stop) for name, url in args.target))
        done.set()
        await flusher
    print(f"sent {load.sent}", flush=True)


def target(value: str) -> tuple[str, str]:
    name, sep, url = value.partition("=")
    parts = urllib.parse.urlsplit(url)
    if not sep or not name or parts.scheme != "http" or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{value!r} is not NAME=http://HOST:PORT/PATH")
    host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise argparse.ArgumentTypeError(f"{url!r}: only loopback targets are allowed")
    return name, url.replace("//localhost", "//127.0.0.1", 1)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=target, action="append", required=True)
    parser.add_argument("--rate", type=float, default=40.0, help="requests/s per target")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds, at most")
    parser.add_argument("--max-requests", type=int, default=20_000, help="in all targets")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 1000 or not 0 < args.duration <= 3600 or args.max_requests < 1:
        parser.error("--rate must be within (0, 1000], --duration (0, 3600], --max-requests >= 1")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
