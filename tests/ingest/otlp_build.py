"""Real OTLP export requests built with the official classes, for the ingest tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

T0_NS = 1_790_000_000_000_000_000
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SERVER = Span.SpanKind.SPAN_KIND_SERVER
CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
INTERNAL = Span.SpanKind.SPAN_KIND_INTERNAL
ERROR = Status.StatusCode.STATUS_CODE_ERROR


def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def resource(**attrs: Any) -> Resource:
    """Resource attributes: ``service``, ``version``, or any attribute by its own name."""
    names = {"service": "service.name", "version": "service.version"}
    return Resource(attributes=[kv(names.get(k, k), v) for k, v in attrs.items()])


def span(
    span_id: int,
    kind: int,
    *,
    parent: int | None = None,
    start: int = T0_NS,
    ms: float = 12.5,
    error: bool = False,
    trace: bytes = TRACE,
    **attrs: Any,
) -> Span:
    return Span(
        trace_id=trace,
        span_id=span_id.to_bytes(8, "big"),
        parent_span_id=b"" if parent is None else parent.to_bytes(8, "big"),
        name=f"span {span_id}",
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=start + int(ms * 1e6),
        attributes=[kv(k, v) for k, v in attrs.items()],
        status=Status(code=ERROR) if error else Status(),
    )


def traces(*groups: tuple[Resource, list[Span]]) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=res, scope_spans=[ScopeSpans(spans=spans)])
            for res, spans in groups
        ]
    )


def gauge(name: str, *points: NumberDataPoint) -> Metric:
    return Metric(name=name, gauge=Gauge(data_points=points))


def counter(name: str, *points: NumberDataPoint) -> Metric:
    return Metric(name=name, sum=Sum(data_points=points, is_monotonic=True))


def histogram(name: str, count: int) -> Metric:
    points = [HistogramDataPoint(time_unix_nano=T0_NS, count=3) for _ in range(count)]
    return Metric(name=name, histogram=Histogram(data_points=points))


def point(value: float | int | None, *, at: int = T0_NS, flags: int = 0) -> NumberDataPoint:
    if value is None:
        return NumberDataPoint(time_unix_nano=at, flags=flags)
    if isinstance(value, int):
        return NumberDataPoint(time_unix_nano=at, as_int=value, flags=flags)
    return NumberDataPoint(time_unix_nano=at, as_double=value, flags=flags)


def metrics(*groups: tuple[Resource, list[Metric]]) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(resource=res, scope_metrics=[ScopeMetrics(metrics=ms)])
            for res, ms in groups
        ]
    )
