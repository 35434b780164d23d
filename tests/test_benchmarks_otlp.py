"""The OTLP benchmark's corpus and summaries (no broker, no Collector)."""

from __future__ import annotations

import math

import pytest

from benchmarks.otlp import (
    SERVICES,
    build_requests,
    encode,
    markdown,
    percentile,
    rate,
    span_count,
    window_rate,
)
from benchmarks.report import otlp_targets
from canarystream.ingest.otlp import convert


def test_percentile_is_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.99) == 5.0
    assert percentile(values, 0.0) == 1.0
    assert percentile(list(map(float, range(1, 101))), 0.9) == 90.0
    assert math.isnan(percentile([], 0.5))


def test_window_rate_spans_the_first_samples_past_ten_and_ninety_percent() -> None:
    samples = [(0.0, 0.0), (1.0, 5.0), (2.0, 20.0), (3.0, 60.0), (4.0, 95.0), (5.0, 100.0)]
    assert window_rate(samples, 100) == pytest.approx((95 - 20) / (4 - 2))
    assert window_rate([(0.0, 0.0), (1.0, 100.0)], 100) is None  # one jump: no window
    assert window_rate([(0.0, 0.0), (1.0, 50.0)], 100) is None  # never reached 90 %
    assert rate(10, 0) == 0.0
    assert rate(10, 2) == 5.0


def test_the_corpus_converts_alike_in_both_encodings() -> None:
    requests = build_requests(3, seed=1)
    for request in requests:
        assert span_count(request) >= 100
        assert 3 <= len(request.resource_spans) <= 8
    proto, as_json = encode(requests, "otlp_proto"), encode(requests, "otlp_json")
    for raw_proto, raw_json in zip(proto, as_json, strict=True):
        from_proto = convert(raw_proto, "traces", "otlp_proto")
        from_json = convert(raw_json, "traces", "otlp_json")
        assert from_proto.events == from_json.events
        assert from_proto.spans == from_json.spans
        assert from_proto.spans["dependency"] > 0  # CLIENT spans found their SERVER span
        assert {e["service"] for e in from_proto.events} <= set(SERVICES)
        assert all("endpoint" in e and "instance" in e for e in from_proto.events)


def test_markdown_shows_every_part() -> None:
    result = {
        "quick": True,
        "machine": {
            "when": "2026-12-02 12:00 UTC",
            "cpus": 2,
            "python": "3.11.7",
            "load_average_at_start": 1.5,
        },
        "conversion": [
            {
                "encoding": "otlp_proto",
                "messages": 4,
                "spans": 1000,
                "events": 400,
                "mb": 0.3,
                "bare": "ParseFromString",
                "bare_spans_per_s": 2_000_000,
                "convert_spans_per_s": 80_000,
                "convert_events_per_s": 32_000,
                "convert_over_bare": 25.0,
            }
        ],
        "bridge": {
            "messages": 600,
            "spans": 180_000,
            "events": 66_000,
            "bare_raw_spans_per_s": 1_000_000,
            "bare_decode_spans_per_s": 700_000,
            "bridge_spans_per_s": 70_000,
            "bridge_events_per_s": 25_000,
            "bridge_over_raw": 0.07,
            "bridge_over_decode": 0.1,
            "bridge_start_to_last_event_s": 4.6,
        },
        "collector": {
            "sustained": {
                "posts": 100,
                "spans": 31_000,
                "events": 11_000,
                "seconds": 1.2,
                "spans_per_s": 25_000,
                "events_per_s": 9_000,
                "post_seconds": 0.4,
            },
            "latency": {
                "server_spans_per_s_target": 500.0,
                "client_spans_per_server": 1,
                "seconds": 15.0,
                "events": 7_500,
                "p50_s": 0.19,
                "p90_s": 0.28,
                "p99_s": 0.34,
                "max_s": 0.38,
            },
        },
    }
    rows = otlp_targets(result)
    assert len(rows) == 4 and all(row.endswith("| no target |") for row in rows)
    assert "80k (25.0× a bare `ParseFromString`)" in rows[0]
    assert "10.0 % of a bare aiokafka consumer" in rows[1]
    assert "p50 0.19 s, p99 0.34 s" in rows[3]
    text = markdown(result)
    assert "(quick run)" in text
    assert "| otlp_proto | 4 | 1,000 | 400 |" in text
    assert "**25.0×**" in text
    assert "**10.0%**" in text
    assert "**25,000 spans/s**" in text
    assert "p99 **0.34 s**" in text
