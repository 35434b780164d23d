"""Gauge and Sum points become metric events; other point types and bad points are counted."""

from __future__ import annotations

import math

import pytest

from canarystream.contracts.events import MetricSample
from canarystream.ingest import convert
from canarystream.ingest.conversion import IngestOptions
from canarystream.ingest.points import convert_metrics
from tests.ingest.otlp_build import T0_NS, counter, gauge, histogram, metrics, point, resource

SHOP = resource(service="shop", version="2.0.0", **{"service.instance.id": "pod-1"})


def test_gauge_and_sum_points_are_metric_events_field_by_field() -> None:
    request = metrics(
        (SHOP, [gauge("cpu_utilization", point(0.75), point(3, at=T0_NS + 10**9)),
                counter("orders_total", point(1200))])
    )  # fmt: skip
    result = convert(request.SerializeToString(), "metrics", "otlp_proto")
    base = {"type": "metric", "service": "shop", "version": "2.0.0", "instance": "pod-1"}
    assert result.events == [
        {**base, "ts": T0_NS / 1e9, "name": "cpu_utilization", "value": 0.75},
        {**base, "ts": T0_NS / 1e9 + 1, "name": "cpu_utilization", "value": 3.0},
        {**base, "ts": T0_NS / 1e9, "name": "orders_total", "value": 1200.0},
    ]
    assert all(type(event["value"]) is float for event in result.events)
    for event in result.events:
        MetricSample.model_validate(event)
    assert result.points == {"metric": 3}


def test_histograms_are_counted_as_unsupported_not_emitted() -> None:
    request = metrics((SHOP, [histogram("latency", 4), gauge("cpu", point(0.5))]))
    result = convert_metrics(request, IngestOptions())
    assert [event["name"] for event in result.events] == ["cpu"]
    assert result.points == {"unsupported": 4, "metric": 1}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (point(math.nan), "invalid_value"),
        (point(math.inf), "invalid_value"),
        (point(-math.inf), "invalid_value"),
        (point(2e15), "invalid_value"),
        (point(2**62), "invalid_value"),
        (point(1.0, at=0), "invalid_ts"),
        (point(1.0, at=2**64 - 1), "invalid_ts"),
        (point(None), "no_value"),
        (point(5.0, flags=1), "no_recorded_value"),
    ],
)
def test_a_bad_point_is_dropped_with_its_reason(bad: object, reason: str) -> None:
    request = metrics((SHOP, [gauge("cpu", bad, point(0.5))]))  # type: ignore[arg-type]
    result = convert_metrics(request, IngestOptions())
    assert [event["value"] for event in result.events] == [0.5]
    assert result.points == {reason: 1, "metric": 1}


def test_points_without_service_or_version_are_counted() -> None:
    request = metrics(
        (resource(version="1"), [gauge("cpu", point(0.5))]),
        (resource(service="shop"), [counter("n", point(1), point(2))]),
    )
    result = convert_metrics(request, IngestOptions())
    assert result.events == [] and result.points == {"no_service": 1, "no_version": 2}


def test_the_version_attribute_is_configurable() -> None:
    request = metrics((resource(service="shop", **{"k8s.pod.label": "v9"}), [gauge("g", point(1))]))
    (event,) = convert_metrics(request, IngestOptions(version_attribute="k8s.pod.label")).events
    assert event["version"] == "v9"
