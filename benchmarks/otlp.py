"""OTLP ingest benchmarks: the bridge's conversion, the bridge on a broker, the Collector path.

Run with ``make bench-otlp`` (starts the local broker unless one runs; ``KAFKA_BOOTSTRAP``
picks another). Writes ``benchmarks/results/otlp.json`` and ``otlp.md`` (``otlp-quick.*``
with ``--quick``; ``--parts`` runs some of the three parts).

- ``convert`` (no broker): ``ExportTraceServiceRequest`` batches of realistic shape, built with
  the official opentelemetry-proto classes (six services, two versions each, two instances,
  SERVER spans with ``http.route`` and status under which CLIENT spans call a database, a
  cache or another service, some through an INTERNAL span; 100-500 spans per message, several
  resources each, as the Collector's batch processor groups them), in ``otlp_proto`` and
  ``otlp_json``. Spans/s of a bare decode of the same bytes (``ParseFromString``;
  ``orjson.loads``) against the bridge's per-message conversion
  (:func:`canarystream.ingest.otlp.convert`), best of three passes each, in one process, CPU
  time; plus a cProfile of the conversion (``otlp-profile.txt``).
- ``bridge`` (broker): a backlog of ``otlp_proto`` messages on ``otlp_spans`` is read by a bare
  aiokafka consumer (raw, and decoding each message with ``ParseFromString``) and then by the
  ``canarystream bridge otlp`` process, same topic, same run. The bridge's rate is taken from
  its own counter of events acknowledged on the telemetry topic between 10 % and 90 % of the
  backlog (start-up and group join excluded); every event is then counted on the topic.
- ``collector`` (broker and the Collector of ``deploy/otelcol``): OTLP/HTTP protobuf requests
  (what the SDK's exporter sends) posted to the Collector as fast as it takes them, through
  its Kafka exporter and the bridge: spans/s sustained until every event is acknowledged on
  the telemetry topic. Then services instrumented with the OpenTelemetry Python SDK (a
  ``BatchSpanProcessor`` exporting every 100 ms, as ``deploy/e2e/app.py --otlp``) at a
  moderate rate: latency from each SERVER span's end to its event being read from the
  telemetry topic, p50/p90/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import io
import json
import math
import os
import pstats
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from benchmarks.pool import machine
from canarystream.ingest.conversion import IngestOptions
from canarystream.ingest.decode import Encoding
from canarystream.ingest.otlp import convert

RESULTS = Path(__file__).parent / "results"
PARTS = ("convert", "bridge", "collector")

_SERVER = Span.SpanKind.SPAN_KIND_SERVER
_CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
_INTERNAL = Span.SpanKind.SPAN_KIND_INTERNAL
_ERROR = Status.StatusCode.STATUS_CODE_ERROR
_T0_NS = 1_790_000_000_000_000_000

# service -> (versions, routes, what its requests call)
SERVICES: dict[str, tuple[tuple[str, str], tuple[str, ...], tuple[str, ...]]] = {
    "shop": (("1.4.2", "1.5.0"), ("/", "/items/{id}", "/items", "/search"), ("catalog", "redis")),
    "cart": (("2.0.1", "2.1.0"), ("/cart", "/cart/items/{id}", "/cart/checkout"), ("postgresql",)),
    "checkout": (("0.9.3", "0.9.4"), ("/checkout", "/checkout/{id}"), ("payments", "postgresql")),
    "catalog": (("3.2.0", "3.3.0"), ("/products/{id}", "/products"), ("postgresql", "redis")),
    "payments": (("7.1.0", "7.2.0"), ("/charge", "/refund/{id}"), ("bank.example.com",)),
    "users": (("1.0.0", "1.1.0"), ("/users/{id}", "/login", "/logout"), ("postgresql",)),
}


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _resource(service: str, version: str, instance: int) -> Resource:
    pod = f"{service}-{version.replace('.', '-')}-{instance}"
    attrs: dict[str, str | int] = {
        "service.name": service,
        "service.version": version,
        "service.namespace": "shop-prod",
        "service.instance.id": pod,
        "deployment.environment.name": "production",
        "host.name": f"node-{instance}.eu-west-1.compute.internal",
        "cloud.provider": "aws",
        "cloud.region": "eu-west-1",
        "cloud.availability_zone": f"eu-west-1{'abc'[instance % 3]}",
        "k8s.namespace.name": "shop",
        "k8s.pod.name": pod,
        "process.pid": 1000 + instance,
        "process.runtime.name": "cpython",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": "1.45.2",
    }
    return Resource(attributes=[_kv(k, v) for k, v in attrs.items()])


_SCOPE = InstrumentationScope(name="opentelemetry.instrumentation.flask", version="0.59b0")


def _span(
    rng: random.Random,
    trace: bytes,
    parent: bytes,
    kind: Any,
    name: str,
    start: int,
    ns: int,
    attrs: dict[str, str | int],
    *,
    error: bool = False,
) -> Span:
    return Span(
        trace_id=trace,
        span_id=rng.randbytes(8),
        parent_span_id=parent,
        name=name,
        kind=kind,
        start_time_unix_nano=start,
        end_time_unix_nano=start + ns,
        attributes=[_kv(k, v) for k, v in attrs.items()],
        status=Status(code=_ERROR) if error else Status(),
    )


def _trace(rng: random.Random, service: str, at: int) -> list[Span]:
    """One request of ``service``: its SERVER span, and the calls it made (0-3)."""
    _, routes, calls = SERVICES[service]
    trace = rng.randbytes(16)
    route = rng.choice(routes)
    status = rng.choices((200, 201, 404, 500, 503), (90, 4, 3, 2, 1))[0]
    ns = int(rng.lognormvariate(17.0, 0.5))  # ~25 ms
    method = "POST" if route.endswith(("checkout", "charge", "login")) else "GET"
    server = _span(
        rng,
        trace,
        b"",
        _SERVER,
        f"{method} {route}",
        at,
        ns,
        {
            "http.request.method": method,
            "http.route": route,
            "url.path": route.replace("{id}", str(rng.randrange(10_000))),
            "url.scheme": "http",
            "http.response.status_code": status,
            "network.protocol.version": "1.1",
            "server.address": f"{service}.shop.svc",
            "server.port": 8080,
            "client.address": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
            "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
        },
        error=status >= 500,
    )
    spans = [server]
    parent = server.span_id
    if rng.random() < 0.3:  # a handler's own span between the request and its calls
        internal = _span(rng, trace, parent, _INTERNAL, "handle", at + 1000, ns - 2000, {})
        spans.append(internal)
        parent = internal.span_id
    for k in range(rng.choice((0, 1, 1, 2, 3))):
        target = rng.choice(calls)
        start, call_ns = at + 2000 + k * 1000, max(ns // 4, 1000)
        failed = status >= 500 and k == 0
        attrs: dict[str, str | int]
        if target in ("postgresql", "redis"):
            attrs = {
                "db.system": target,
                "db.namespace": service,
                "db.operation.name": "SELECT" if target == "postgresql" else "GET",
                "server.address": f"{target}.shop.svc",
                "server.port": 5432 if target == "postgresql" else 6379,
            }
            name = f"{attrs['db.operation.name']} {service}"
        else:
            attrs = {
                "http.request.method": "POST",
                "peer.service": target,
                "server.address": f"{target}.shop.svc" if "." not in target else target,
                "url.full": f"https://{target}/api/v1/op",
                "http.response.status_code": 502 if failed else 200,
            }
            name = "POST"
        spans.append(_span(rng, trace, parent, _CLIENT, name, start, call_ns, attrs, error=failed))
    return spans


def build_requests(count: int, *, seed: int = 13) -> list[ExportTraceServiceRequest]:
    """``count`` export requests of 100-500 spans each, several resources per request."""
    rng = random.Random(seed)
    resources = [
        (service, version, instance)
        for service, (versions, _, _) in SERVICES.items()
        for version in versions
        for instance in range(2)
    ]
    at = _T0_NS
    requests: list[ExportTraceServiceRequest] = []
    for _ in range(count):
        target = rng.randint(100, 500)
        chosen = rng.sample(resources, rng.randint(3, 8))
        groups: list[list[Span]] = [[] for _ in chosen]
        total = 0
        while total < target:
            i = rng.randrange(len(chosen))
            spans = _trace(rng, chosen[i][0], at)
            at += rng.randrange(1_000_000)  # ~2,000 requests/s
            groups[i].extend(spans)
            total += len(spans)
        requests.append(
            ExportTraceServiceRequest(
                resource_spans=[
                    ResourceSpans(
                        resource=_resource(*chosen[i]),
                        scope_spans=[ScopeSpans(scope=_SCOPE, spans=group)],
                        schema_url="https://opentelemetry.io/schemas/1.27.0",
                    )
                    for i, group in enumerate(groups)
                    if group
                ]
            )
        )
    return requests


def span_count(request: ExportTraceServiceRequest) -> int:
    return sum(len(s.spans) for rs in request.resource_spans for s in rs.scope_spans)


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """The OTLP/JSON the Collector's ``otlp_json`` encoding writes: camelCase, enums as
    integers, 64-bit integers as strings, trace and span ids in hex."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return orjson.dumps(document)


def encode(requests: Sequence[ExportTraceServiceRequest], encoding: Encoding) -> list[bytes]:
    if encoding == "otlp_proto":
        return [r.SerializeToString() for r in requests]
    return [otlp_json(r) for r in requests]


# -------------------------------------------------------------------- summaries


def rate(count: float, seconds: float) -> float:
    """Per second, 0 for no time."""
    return count / seconds if seconds > 0 else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of unsorted values; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = math.ceil(q * len(ordered) - 1e-9)  # the tolerance: 0.9 * 100 is 90.00000000000001
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def window_rate(samples: Sequence[tuple[float, float]], total: float) -> float | None:
    """Rate between the first samples at or past 10 % and 90 % of ``total``.

    ``samples`` are (time, count so far), in time order. None when 90 % was never reached or
    both marks fall on one sample.
    """
    lo = next(((t, n) for t, n in samples if n >= 0.1 * total), None)
    hi = next(((t, n) for t, n in samples if n >= 0.9 * total), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return None
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


def best_of(passes: int, run: Callable[[], object]) -> tuple[float, float]:
    """Least CPU seconds and least wall seconds of ``passes`` runs of ``run``."""
    cpu, wall = [], []
    for _ in range(passes):
        c0, w0 = time.process_time(), time.perf_counter()
        run()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), min(wall)


# -------------------------------------------------------------------- 1. conversion


def _bare_proto(values: list[bytes]) -> None:
    parse = ExportTraceServiceRequest.FromString
    for value in values:
        parse(value)


def _bare_json(values: list[bytes]) -> None:
    loads = orjson.loads
    for value in values:
        loads(value)


def _walk(values: list[bytes]) -> None:
    """Parse, and read every span's kind, ids and times and every attribute (resource and
    span) into a lookup: the least a mapping through the protobuf classes reads."""
    from canarystream.ingest.attributes import Attributes  # noqa: PLC0415

    parse = ExportTraceServiceRequest.FromString
    for value in values:
        for resource_spans in parse(value).resource_spans:
            Attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    _ = (span.kind, span.trace_id, span.span_id, span.parent_span_id)
                    _ = (span.start_time_unix_nano, span.end_time_unix_nano)
                    Attributes(span.attributes)


def _convert_all(values: list[bytes], encoding: Encoding, options: IngestOptions) -> int:
    return sum(len(convert(v, "traces", encoding, options).events) for v in values)


def conversion(
    requests: list[ExportTraceServiceRequest], encoding: Encoding, passes: int
) -> dict[str, Any]:
    """Spans/s of a bare decode and of the bridge's conversion, on the same bytes."""
    values = encode(requests, encoding)
    spans = sum(span_count(r) for r in requests)
    options = IngestOptions()
    events = _convert_all(values, encoding, options)
    bare = _bare_proto if encoding == "otlp_proto" else _bare_json
    bare_cpu, bare_wall = best_of(passes, lambda: bare(values))
    conv_cpu, conv_wall = best_of(passes, lambda: _convert_all(values, encoding, options))
    walk_cpu = best_of(passes, lambda: _walk(values))[0] if encoding == "otlp_proto" else None
    return {
        "encoding": encoding,
        "messages": len(values),
        "spans": spans,
        "events": events,
        "mb": round(sum(map(len, values)) / 1e6, 1),
        "bare": "ParseFromString" if encoding == "otlp_proto" else "orjson.loads",
        "bare_spans_per_s": round(rate(spans, bare_cpu)),
        "convert_spans_per_s": round(rate(spans, conv_cpu)),
        "convert_events_per_s": round(rate(events, conv_cpu)),
        "convert_over_bare": round(conv_cpu / bare_cpu, 2),
        "walk_spans_per_s": round(rate(spans, walk_cpu)) if walk_cpu else None,
        "convert_over_walk": round(conv_cpu / walk_cpu, 2) if walk_cpu else None,
        "wall_bare_spans_per_s": round(rate(spans, bare_wall)),
        "wall_convert_spans_per_s": round(rate(spans, conv_wall)),
    }


def profile(requests: list[ExportTraceServiceRequest], top: int = 15) -> dict[str, Any]:
    """cProfile of the conversion of the ``otlp_proto`` bytes: the top functions by own time."""
    values = encode(requests, "otlp_proto")
    options = IngestOptions()
    profiler = cProfile.Profile()
    profiler.enable()
    _convert_all(values, "otlp_proto", options)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(25)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    entries = stats.stats  # type: ignore[attr-defined]
    for (path, line, name), (_, calls, tottime, cumtime, _) in sorted(
        entries.items(), key=lambda item: -item[1][2]
    )[:top]:
        where = f"{_short(path)}:{line}({name})" if line else name
        rows.append(
            {
                "function": where,
                "calls": calls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
                "share_of_own_time": round(tottime / total, 3),
            }
        )
    return {"seconds": round(total, 3), "top_by_own_time": rows, "listing": out.getvalue()}


def _short(path: str) -> str:
    for marker in ("canarystream/", "site-packages/", "lib/python3"):
        if marker in path:
            return (
                path.split(marker, 1)[1]
                if marker != "canarystream/"
                else "canarystream/" + (path.split(marker, 1)[1])
            )
    return path


# -------------------------------------------------------------------- 2. the bridge on a broker


def _published(port: int) -> float:
    """Events the bridge has had acknowledged on the telemetry topic (its own counter)."""
    import requests  # noqa: PLC0415

    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("canarystream_otlp_events_published_total{")
    )


@contextmanager
def _bridge(stack: Any, traces: str, metrics: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``canarystream bridge otlp`` on the stack's broker, reading from the earliest offsets."""
    from tests.support.services import free_port, stop  # noqa: PLC0415

    port = free_port()
    command = [sys.executable, "-m", "canarystream", "bridge", "otlp", "--start-from", "earliest"]
    command += ["--traces-topic", traces, "--metrics-topic", metrics]
    command += ["--metrics-port", str(port)]
    log = stack.workdir / f"bridge-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=stack.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the bridge exited: {log.read_text(errors='replace')[-3000:]}")
            try:
                _published(port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the bridge serves no /metrics after 90 s") from None
                time.sleep(0.2)
        yield process, port
    finally:
        stop(process)


def _wait_published(port: int, events: int, timeout: float) -> list[tuple[float, float]]:
    """Scrape the bridge's counter every 0.25 s until ``events`` are acknowledged; the samples."""
    samples: list[tuple[float, float]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples.append((time.perf_counter(), _published(port)))
        if samples[-1][1] >= events:
            return samples
        time.sleep(0.25)  # each scrape costs the bridge a little CPU
    raise SystemExit(f"the bridge published {samples[-1][1]:.0f} of {events} events")


def _telemetry_events(stack: Any) -> int:
    from canarystream.contracts.topics import TELEMETRY_TOPIC  # noqa: PLC0415

    return sum(len(orjson.loads(value)) for value in stack.read(TELEMETRY_TOPIC))


async def _create_topic(stack: Any, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: PLC0415

    admin = AIOKafkaAdminClient(**stack.connection.client_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def _produce(stack: Any, topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415

    producer = AIOKafkaProducer(
        **stack.connection.client_kwargs(), linger_ms=5, max_request_size=8 << 20
    )
    await producer.start()
    try:
        for value in values:  # unkeyed, as the Collector's exporter writes them
            await producer.send(topic, value)
        await producer.flush()
    finally:
        await producer.stop()


async def _bare(stack: Any, topic: str, partitions: int, *, decode: bool) -> tuple[float, int]:
    """Seconds for a bare consumer to read ``topic``; messages read, or spans decoded."""
    from benchmarks.stream import bare_read  # noqa: PLC0415

    parse = ExportTraceServiceRequest.FromString
    count = (lambda value: span_count(parse(value))) if decode else None
    return await bare_read(stack, topic, partitions, count, max_partition_fetch_bytes=8 << 20)


def bridge_throughput(bootstrap: str, workdir: Path, messages: int) -> dict[str, Any]:
    """Spans/s of the bridge process on a backlog, against a bare consumer of the same topic."""
    from tests.support.broker import Stack  # noqa: PLC0415

    requests = build_requests(messages, seed=17)
    values = encode(requests, "otlp_proto")
    spans = sum(span_count(r) for r in requests)
    events = _convert_all(values, "otlp_proto", IngestOptions())
    stack = Stack(bootstrap, workdir / "bridge")
    stack.workdir.mkdir(parents=True, exist_ok=True)
    traces, metrics = stack.topic("otlp_spans"), stack.topic("otlp_metrics")
    partitions = 3
    asyncio.run(_create_topic(stack, traces, partitions))
    asyncio.run(_create_topic(stack, metrics, 1))
    asyncio.run(_produce(stack, traces, values))
    raw_s, read = asyncio.run(_bare(stack, traces, partitions, decode=False))
    decode_s, decoded = asyncio.run(_bare(stack, traces, partitions, decode=True))
    assert read == messages and decoded == spans, (read, messages, decoded, spans)
    launched = time.perf_counter()
    with _bridge(stack, traces, metrics) as (_, port):
        samples = _wait_published(port, events, timeout=900)
    bridge_rate = window_rate(samples, events)
    if bridge_rate is None:
        raise SystemExit("the backlog was converted between two scrapes: make it longer")
    on_topic = _telemetry_events(stack)
    assert on_topic >= events, (on_topic, events)
    spans_rate = bridge_rate * spans / events
    return {
        "messages": messages,
        "spans": spans,
        "events": events,
        "mb": round(sum(map(len, values)) / 1e6, 1),
        "partitions": partitions,
        "bare_raw_spans_per_s": round(rate(spans, raw_s)),
        "bare_decode_spans_per_s": round(rate(spans, decode_s)),
        "bridge_spans_per_s": round(spans_rate),
        "bridge_events_per_s": round(bridge_rate),
        "bridge_over_raw": round(spans_rate * raw_s / spans, 4),
        "bridge_over_decode": round(spans_rate * decode_s / spans, 4),
        "bridge_start_to_last_event_s": round(samples[-1][0] - launched, 1),
        "events_on_telemetry_topic": on_topic,
    }


# -------------------------------------------------------------------- 3. the Collector path


def _collector_binary() -> Path:
    build = Path(__file__).resolve().parents[1] / "deploy/otelcol/build.sh"
    built = subprocess.run(
        ["bash", str(build)], capture_output=True, text=True, check=False, timeout=3600
    )
    lines = built.stdout.strip().splitlines()
    if built.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        raise SystemExit(f"{build} failed: {built.stderr[-3000:]}")
    return Path(lines[-1])


def _sustained(endpoint: str, port: int, posts: int) -> dict[str, Any]:
    """Post ``posts`` OTLP/HTTP protobuf requests as fast as the Collector answers."""
    import requests as http  # noqa: PLC0415

    corpus = build_requests(posts, seed=19)
    values = encode(corpus, "otlp_proto")
    spans = sum(span_count(r) for r in corpus)
    events = _convert_all(values, "otlp_proto", IngestOptions())
    before = _published(port)
    session = http.Session()
    started = time.perf_counter()
    for value in values:
        answer = session.post(
            f"{endpoint}/v1/traces",
            data=value,
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
        answer.raise_for_status()
    posted = time.perf_counter() - started
    samples = _wait_published(port, before + events, timeout=900)
    seconds = samples[-1][0] - started
    return {
        "posts": posts,
        "spans": spans,
        "events": events,
        "post_seconds": round(posted, 1),
        "seconds": round(seconds, 1),
        "spans_per_s": round(rate(spans, seconds)),
        "events_per_s": round(rate(events, seconds)),
    }


async def _read_latencies(
    stack: Any, prefix: str, latencies: list[float], stop: asyncio.Event
) -> None:
    """Span end to event read, for every event of a service named ``prefix...``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415

    from canarystream.contracts.topics import TELEMETRY_TOPIC  # noqa: PLC0415

    topic = stack.topic(TELEMETRY_TOPIC)
    consumer = AIOKafkaConsumer(**stack.connection.client_kwargs(), group_id=None)
    await consumer.start()
    try:
        consumer._client.add_topic(topic)
        await consumer._client.force_metadata_update()
        found = consumer._client.cluster.partitions_for_topic(topic) or set()
        partitions = [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            read_at = time.time()
            for messages in batches.values():
                for message in messages:
                    for event in orjson.loads(message.value):
                        if event["service"].startswith(prefix):
                            latencies.append(read_at - event["ts"] - event["latency_ms"] / 1000)
            if stop.is_set() and not batches:
                return
    finally:
        await consumer.stop()


def _sdk_spans(endpoint: str, seconds: float, server_rate: float) -> int:
    """SERVER spans (each with one CLIENT span) from SDK-instrumented services; how many."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import Resource as SdkResource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    from opentelemetry.trace import SpanKind, set_span_in_context  # noqa: PLC0415

    providers, tracers = [], []
    for service in ("lat-shop", "lat-cart", "lat-users"):
        for version in ("v1", "v2"):
            provider = TracerProvider(
                resource=SdkResource.create({"service.name": service, "service.version": version})
            )
            exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=5)
            provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
            providers.append(provider)
            tracers.append(provider.get_tracer("benchmarks.otlp"))
    rng = random.Random(23)
    step, made = 0.02, 0
    started = time.time()
    tick = started
    while (tick := tick + step) < started + seconds:
        time.sleep(max(tick - time.time(), 0))
        due = int((tick - started) * server_rate) - made
        for _ in range(due):
            tracer = rng.choice(tracers)
            end = time.time_ns()
            start = end - int(rng.lognormvariate(17.0, 0.5))
            server = tracer.start_span(
                "GET /items/{id}",
                kind=SpanKind.SERVER,
                start_time=start,
                attributes={"http.route": "/items/{id}", "http.response.status_code": 200},
            )
            client = tracer.start_span(
                "SELECT items",
                context=set_span_in_context(server),
                kind=SpanKind.CLIENT,
                start_time=start + 1000,
                attributes={"db.system": "postgresql"},
            )
            client.end(end_time=end - 1000)
            server.end(end_time=end)
        made += due
    for provider in providers:
        provider.force_flush()
        provider.shutdown()
    return made


def collector_path(
    bootstrap: str, workdir: Path, posts: int, latency_seconds: float, latency_rate: float
) -> dict[str, Any]:
    from tests.support.broker import Stack  # noqa: PLC0415
    from tests.support.collector import run_collector  # noqa: PLC0415

    binary = _collector_binary()
    stack = Stack(bootstrap, workdir / "collector")
    stack.workdir.mkdir(parents=True, exist_ok=True)
    with (
        run_collector(binary, stack, stack.workdir) as collector,
        _bridge(stack, collector.traces_topic, collector.metrics_topic) as (_, port),
    ):
        sustained = _sustained(collector.endpoint, port, posts)
        latencies: list[float] = []

        async def measure() -> int:
            stop = asyncio.Event()
            reader = asyncio.create_task(_read_latencies(stack, "lat-", latencies, stop))
            await asyncio.sleep(2.0)  # positioned at the end
            made = await asyncio.to_thread(
                _sdk_spans, collector.endpoint, latency_seconds, latency_rate
            )
            deadline = time.monotonic() + 30
            while len(latencies) < made and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            stop.set()
            await reader
            return made

        made = asyncio.run(measure())
    return {
        "collector": str(binary.parent.name),
        "sustained": sustained,
        "latency": {
            "seconds": latency_seconds,
            "server_spans_per_s_target": latency_rate,
            "client_spans_per_server": 1,
            "sdk_schedule_delay_ms": 100,
            "collector_batch_timeout_ms": 200,
            "server_spans": made,
            "events": len(latencies),
            "p50_s": round(percentile(latencies, 0.5), 3),
            "p90_s": round(percentile(latencies, 0.9), 3),
            "p99_s": round(percentile(latencies, 0.99), 3),
            "max_s": round(max(latencies), 3) if latencies else None,
        },
    }


def run_broker_parts(
    parts: list[str],
    *,
    backlog: int,
    posts: int,
    latency_seconds: float,
    latency_rate: float,
) -> dict[str, Any]:
    from canarystream.kafka.admin import broker_ready  # noqa: PLC0415
    from canarystream.kafka.connection import LOCAL_BOOTSTRAP  # noqa: PLC0415

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", LOCAL_BOOTSTRAP)
    if not broker_ready(bootstrap):
        raise SystemExit(f"no broker at {bootstrap}: run `canarystream kafka up` first")
    found: dict[str, Any] = {"bootstrap": bootstrap}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if "bridge" in parts:
            found["bridge"] = bridge_throughput(bootstrap, workdir, backlog)
        if "collector" in parts:
            found["collector"] = collector_path(
                bootstrap, workdir, posts, latency_seconds, latency_rate
            )
    return found


# -------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A tenth of the messages.")
    parser.add_argument("--parts", default=",".join(PARTS), help="Of: " + ", ".join(PARTS))
    parser.add_argument("--messages", type=int, default=400, help="Conversion corpus.")
    parser.add_argument("--backlog", type=int, default=2000, help="Bridge: messages.")
    parser.add_argument("--posts", type=int, default=1000, help="Collector: requests posted.")
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--latency-rate", type=float, default=500.0, help="SERVER spans/s.")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"unknown parts: {sorted(unknown)}")
    scale = 0.1 if args.quick else 1.0
    load = os.getloadavg()[0]
    result: dict[str, Any] = {"quick": args.quick}
    if "convert" in parts:
        requests = build_requests(max(int(args.messages * scale), 10))
        result["conversion"] = [
            conversion(requests, encoding, passes=3) for encoding in ("otlp_proto", "otlp_json")
        ]
        profiled = profile(requests)
        listing = profiled.pop("listing")
        result["profile"] = profiled
        RESULTS.mkdir(exist_ok=True)
        name = "otlp-profile-quick.txt" if args.quick else "otlp-profile.txt"
        (RESULTS / name).write_text(listing)
    broker_parts = [p for p in parts if p != "convert"]
    if broker_parts:
        result.update(
            run_broker_parts(
                broker_parts,
                backlog=max(int(args.backlog * scale), 600),
                posts=max(int(args.posts * scale), 50),
                latency_seconds=args.latency_seconds * (0.25 if args.quick else 1.0),
                latency_rate=args.latency_rate,
            )
        )
    result["machine"] = machine(load)
    stem = "otlp-quick" if args.quick else "otlp"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    """The results as the README's tables."""
    lines: list[str] = []
    m = result.get("machine", {})
    if m:
        lines += [
            f"{m['when']}, {m['cpus']} CPUs, Python {m['python']}, load average "
            f"{m['load_average_at_start']} at the start"
            f"{' (quick run)' if result['quick'] else ''}.",
            "",
        ]
    if conv := result.get("conversion"):
        lines += [
            "| encoding | messages | spans | events | MB | bare | bare spans/s "
            "| `convert` spans/s | `convert` events/s | convert / bare |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {c['encoding']} | {c['messages']:,} | {c['spans']:,} | {c['events']:,} "
            f"| {c['mb']} | `{c['bare']}` | {c['bare_spans_per_s']:,} "
            f"| {c['convert_spans_per_s']:,} | {c['convert_events_per_s']:,} "
            f"| **{c['convert_over_bare']}×** |"
            for c in conv
        ]
        lines.append("")
        lines += [
            f"A walk of the same {c['encoding']} messages reading every span's kind, ids and "
            f"times and every attribute into a lookup: {c['walk_spans_per_s']:,} spans/s; "
            f"`convert` / walk **{c['convert_over_walk']}×**."
            for c in conv
            if c.get("walk_spans_per_s")
        ]
        lines.append("")
    if prof := result.get("profile"):
        lines += [
            f"cProfile of `convert` on the otlp_proto messages ({prof['seconds']} s under the "
            "profiler), top by own time:",
            "",
            "| function | calls | own s | cumulative s | share of own time |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| `{r['function']}` | {r['calls']:,} | {r['tottime_s']} | {r['cumtime_s']} "
            f"| {r['share_of_own_time']:.0%} |"
            for r in prof["top_by_own_time"]
        ]
        lines.append("")
    if bridge := result.get("bridge"):
        lines += [
            "| messages | spans | events | bare raw spans/s | bare + `ParseFromString` spans/s "
            "| bridge spans/s | bridge events/s | bridge / raw | bridge / decode "
            "| bridge start to last event s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {bridge['messages']:,} | {bridge['spans']:,} | {bridge['events']:,} "
            f"| {bridge['bare_raw_spans_per_s']:,} | {bridge['bare_decode_spans_per_s']:,} "
            f"| {bridge['bridge_spans_per_s']:,} | {bridge['bridge_events_per_s']:,} "
            f"| {bridge['bridge_over_raw']:.1%} | **{bridge['bridge_over_decode']:.1%}** "
            f"| {bridge['bridge_start_to_last_event_s']} |",
            "",
        ]
    if collector := result.get("collector"):
        s, lat = collector["sustained"], collector["latency"]
        lines += [
            f"Sustained: {s['posts']:,} OTLP/HTTP posts, {s['spans']:,} spans "
            f"({s['events']:,} SERVER spans) in {s['seconds']} s from the first post to the "
            f"last event acknowledged: **{s['spans_per_s']:,} spans/s** "
            f"({s['events_per_s']:,} events/s); the posts took {s['post_seconds']} s.",
            "",
            f"Latency: SDK at {lat['server_spans_per_s_target']:g} SERVER spans/s "
            f"(+ {lat['client_spans_per_server']:g} CLIENT span each) for {lat['seconds']} s, "
            f"{lat['events']:,} events read: span end to event read "
            f"p50 **{lat['p50_s']} s**, p90 {lat['p90_s']} s, p99 **{lat['p99_s']} s**, "
            f"max {lat['max_s']} s.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
