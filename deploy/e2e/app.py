"""A tiny HTTP service for the end-to-end drill: answers every request with its version and
emits one ``request`` telemetry event per request to Kafka, or one OpenTelemetry span.

    python deploy/e2e/app.py --service shop --version v2 [--error-rate 0.3] [--latency-ms 8]
    python deploy/e2e/app.py --service shop --version v2 --otlp http://127.0.0.1:4318

Listens on 127.0.0.1 (an ephemeral port unless ``--port``) and prints ``listening PORT`` once
it accepts connections. Each answer carries its version in the ``X-Version`` header and the
body; a share ``--error-rate`` of requests answer 500. Service time is a log-normal sleep
around ``--latency-ms``; the event's ``latency_ms`` is measured (request read to answer
written), ``ts`` is the wall clock. Events are batched and published every 50 ms with
:class:`~canarystream.kafka.publisher.EventPublisher` (``KAFKA_BOOTSTRAP`` and
``CANARYSTREAM_TOPIC_PREFIX`` from the environment). SIGTERM flushes and stops.

With ``--otlp URL`` the service is instrumented with the OpenTelemetry SDK instead and sends
nothing to Kafka itself: each request is a SERVER span (``http.route`` ``/``,
``http.response.status_code``, status ERROR on a 5xx; start and end from the measured service
time) of a resource naming ``service.name``, ``service.version`` and ``service.instance.id``,
exported as OTLP/HTTP protobuf to ``URL/v1/traces`` every 100 ms, for an OpenTelemetry
Collector to pass on (``deploy/otelcol``).
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


class Spans:
    """The OpenTelemetry SDK set up for one service version: a SERVER span per request."""

    def __init__(self, endpoint: str, service: str, version: str, instance: str) -> None:
        # Imported here: the Kafka mode needs no OpenTelemetry SDK.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
        from opentelemetry.trace import SpanKind, Status, StatusCode  # noqa: PLC0415

        resource = Resource.create(
            {"service.name": service, "service.version": version, "service.instance.id": instance}
        )
        self.provider = TracerProvider(resource=resource)
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)
        self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
        self.tracer = self.provider.get_tracer("canarystream.e2e.app")
        self.kind = SpanKind.SERVER
        self.error = Status(StatusCode.ERROR)

    def request(self, method: str, path: str, start_ns: int, ms: float, status: int) -> None:
        span = self.tracer.start_span(
            f"{method} /",
            kind=self.kind,
            start_time=start_ns,
            attributes={
                "http.request.method": method,
                "http.route": "/",
                "url.path": path.partition("?")[0],
                "http.response.status_code": status,
            },
        )
        if status >= 500:
            span.set_status(self.error)
        span.end(end_time=start_ns + round(ms * 1e6))

    def shutdown(self) -> None:
        """Export what is left, then stop."""
        self.provider.shutdown()


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
        self.spans: Spans | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    return
                started = time.perf_counter()
                started_ns = time.time_ns()
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
                if self.spans is not None:
                    method, path = [*lines[0].split(" "), "", ""][:2]
                    self.spans.request(method, path, started_ns, latency, status)
                else:
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


async def serve(app: App, port: int, stop: asyncio.Event, publisher: EventPublisher | None) -> None:
    server = await asyncio.start_server(app.handle, "127.0.0.1", port, limit=MAX_HEAD)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    flusher = asyncio.create_task(app.publish(publisher, stop)) if publisher else None
    await stop.wait()
    server.close()
    for writer in list(app.writers):  # idle keep-alive connections of the proxy
        writer.close()
    if flusher is not None:
        await flusher


async def main(args: argparse.Namespace) -> None:
    app = App(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.otlp:
        app.spans = Spans(args.otlp, app.service, app.version, app.instance)
        try:
            await serve(app, args.port, stop, None)
        finally:
            app.spans.shutdown()
    else:
        async with EventPublisher(Connection(load_settings())) as publisher:
            await serve(app, args.port, stop, publisher)
    print(f"served {app.served}", flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--otlp",
        metavar="URL",
        default=None,
        help="send OTLP spans to this OTLP/HTTP endpoint (a Collector) instead of events to Kafka",
    )
    args = parser.parse_args(argv)
    if not 0.0 <= args.error_rate <= 1.0:
        parser.error("--error-rate must be within 0..1")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
