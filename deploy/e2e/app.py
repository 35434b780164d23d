"""A tiny HTTP service for the end-to-end drill: answers every request with its version and
emits one ``request`` telemetry event per request to Kafka.

    python deploy/e2e/app.py --service shop --version v2 [--error-rate 0.3] [--latency-ms 8]

Listens on 127.0.0.1 (an ephemeral port unless ``--port``) and prints ``listening PORT`` once
it accepts connections. Each answer carries its version in the ``X-Version`` header and the
body; a share ``--error-rate`` of requests answer 500. Service time is a log-normal sleep
around ``--latency-ms``; the event's ``latency_ms`` is measured (request read to answer
written), ``ts`` is the wall clock. Events are batched and published every 50 ms with
:class:`~canarystream.kafka.publisher.EventPublisher` (``KAFKA_BOOTSTRAP`` and
``CANARYSTREAM_TOPIC_PREFIX`` from the environment). SIGTERM flushes and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import sys
import time
from typing import Any

from canarystream.kafka.connection import Connection
from canarystream.kafka.publisher import EventPublisher
from canarystream.settings import load_settings

FLUSH_SECONDS = 0.05
MAX_HEAD = 16 * 1024


class App:
    def __init__(self, args: argparse.Namespace) -> None:
        self.service: str = args.service
        self.version: str = args.version
        self.error_rate: float = args.error_rate
        self.latency_ms: float = args.latency_ms
        self.rng = random.Random(args.seed)
        self.instance = f"{self.version}-{os.getpid()}"
        self.pending: list[dict[str, Any]] = []
        self.served = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    return
                started = time.perf_counter()
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, sep, value in (line.partition(":") for line in lines[1:])
                    if sep
                }
                length = int(headers.get("content-length") or 0)
                if length:
                    await reader.readexactly(length)
                close = headers.get("connection", "").lower() == "close"
                sleep_ms = self.latency_ms * math.exp(self.rng.gauss(0.0, 0.25))
                await asyncio.sleep(sleep_ms / 1000.0)
                status = 500 if self.rng.random() < self.error_rate else 200
                body = f"{self.version}\n".encode()
                reason = "OK" if status == 200 else "Internal Server Error"
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\nX-Version: {self.version}\r\n"
                    f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                latency = (time.perf_counter() - started) * 1000.0
                self.pending.append(
                    {
                        "type": "request",
                        "ts": time.time(),
                        "service": self.service,
                        "version": self.version,
                        "latency_ms": round(latency, 3),
                        "status": status,
                        "instance": self.instance,
                    }
                )
                self.served += 1
                if close:
                    return
        except OSError:
            return
        finally:
            self.writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def publish(self, publisher: EventPublisher, stop: asyncio.Event) -> None:
        while True:
            stopping = stop.is_set()
            if self.pending:
                batch, self.pending = self.pending, []
                await publisher.send(batch, batch=len(batch))
            if stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLUSH_SECONDS)


async def main(args: argparse.Namespace) -> None:
    app = App(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connection = Connection(load_settings())
    async with EventPublisher(connection) as publisher:
        server = await asyncio.start_server(app.handle, "127.0.0.1", args.port, limit=MAX_HEAD)
        port = server.sockets[0].getsockname()[1]
        print(f"listening {port}", flush=True)
        flusher = asyncio.create_task(app.publish(publisher, stop))
        await stop.wait()
        server.close()
        for writer in list(app.writers):  # idle keep-alive connections of the proxy
            writer.close()
        await flusher
    print(f"served {app.served}", flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if not 0.0 <= args.error_rate <= 1.0:
        parser.error("--error-rate must be within 0..1")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
