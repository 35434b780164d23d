"""OTLP metric data points to ``metric`` events.

Gauge and Sum points (integer or double) become one ``metric`` event each: the metric's name,
the point's value, its ``time_unix_nano`` as ``ts``. A Sum is passed as OTLP has it: a
cumulative counter's running total is a value a gauge check compares as it is, so a gauge
check suits a Sum only when it is a delta or a level (a pool size, a queue depth). Histogram,
exponential-histogram and summary points are counted as ``unsupported``.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import DataPointFlags, Metric, NumberDataPoint

from canarystream.ingest.attributes import Attributes
from canarystream.ingest.conversion import Conversion, IngestOptions, contract_violation

__all__ = ["convert_metrics"]

_NO_RECORDED_VALUE = DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_NS_PER_S = 1e9


def convert_metrics(request: ExportMetricsServiceRequest, options: IngestOptions) -> Conversion:
    """The metric events of every Gauge and Sum point; every point counted by outcome."""
    result = Conversion()
    for resource_metrics in request.resource_metrics:
        resource = Attributes(resource_metrics.resource.attributes)
        service = resource.name(options.service_attribute)
        version = resource.name(options.version_attribute)
        base = {
            "service": service,
            "version": version,
            "instance": resource.name("service.instance.id"),
        }
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                _metric(metric, base, result)
    return result


def _metric(metric: Metric, base: dict[str, Any], result: Conversion) -> None:
    kind = metric.WhichOneof("data")
    if kind == "gauge":
        points = metric.gauge.data_points
    elif kind == "sum":
        points = metric.sum.data_points
    else:
        if kind is not None:
            result.points["unsupported"] += len(getattr(metric, kind).data_points)
        return
    for point in points:
        result.points[_point(metric.name, point, base, result)] += 1


def _point(name: str, point: NumberDataPoint, base: dict[str, Any], result: Conversion) -> str:
    """Emit the event of one point; its outcome."""
    if base["service"] is None:
        return "no_service"
    if base["version"] is None:
        return "no_version"
    if point.flags & _NO_RECORDED_VALUE:
        return "no_recorded_value"
    kind = point.WhichOneof("value")
    if kind is None:
        return "no_value"
    value = float(point.as_int) if kind == "as_int" else point.as_double
    event = {
        "type": "metric",
        "ts": point.time_unix_nano / _NS_PER_S,
        "name": name,
        "value": value,
        **{key: value for key, value in base.items() if value is not None},
    }
    if (reason := contract_violation(event)) is not None:
        return reason
    result.events.append(event)
    return "metric"
