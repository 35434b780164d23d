"""otlp_proto and otlp_json decode to the same events; bytes that are no OTLP request raise
ContractError with a reason (the bridge dead-letters them), never anything else."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from canarystream.errors import ContractError
from canarystream.ingest import convert
from canarystream.ingest.decode import decode_traces
from tests.ingest.otlp_build import (
    CLIENT,
    SERVER,
    T0_NS,
    TRACE,
    gauge,
    metrics,
    point,
    resource,
    span,
    traces,
)

SHOP = resource(service="shop", version="1.0")
REQUEST = traces(
    (SHOP, [span(1, SERVER, **{"http.route": "/a"}),
            span(2, CLIENT, parent=1, **{"db.system": "postgresql"})])
)  # fmt: skip

# An OTLP/JSON body as the Collector's otlp_json encoding writes it: hex ids, enums as
# integers, 64-bit integers as strings, camelCase, and a field this version does not know.
HAND_WRITTEN = b"""{"resourceSpans": [{
  "resource": {"attributes": [
    {"key": "service.name", "value": {"stringValue": "checkout"}},
    {"key": "service.version", "value": {"stringValue": "7.1.0"}}]},
  "scopeSpans": [{"scope": {"name": "io.opentelemetry.http"}, "spans": [
    {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
     "name": "POST /orders", "kind": 2,
     "startTimeUnixNano": "1790000000000000000", "endTimeUnixNano": "1790000000250000000",
     "attributes": [{"key": "http.route", "value": {"stringValue": "/orders"}},
                    {"key": "http.response.status_code", "value": {"intValue": "201"}}],
     "status": {}, "someFutureField": true},
    {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175",
     "parentSpanId": "eee19b7ec3c1b174", "name": "SELECT", "kind": 3,
     "startTimeUnixNano": "1790000000010000000", "endTimeUnixNano": "1790000000020000000",
     "attributes": [{"key": "db.system", "value": {"stringValue": "postgresql"}}],
     "status": {"code": 2},
     "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}]}
  ]}]}]}"""


def _otlp_json(message: Message) -> bytes:
    """OTLP/JSON of a message: protobuf's JSON with its base64 ids written in hex."""
    document = json_format.MessageToDict(message)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for found in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in found:
                        found[key] = base64.b64decode(found[key]).hex()
    return json.dumps(document).encode()


@pytest.mark.parametrize("writer", [_otlp_json, lambda m: json_format.MessageToJson(m).encode()],
                         ids=["hex ids", "base64 ids"])  # fmt: skip
def test_json_and_protobuf_of_one_request_give_the_same_events(writer: Any) -> None:
    proto = convert(REQUEST.SerializeToString(), "traces", "otlp_proto")
    from_json = convert(writer(REQUEST), "traces", "otlp_json")
    assert from_json.events == proto.events
    assert proto.events[0]["dependency"] == "postgresql"
    assert from_json.spans == proto.spans == {"request": 1, "dependency": 1}


def test_an_unknown_span_kind_name_is_an_ignored_span() -> None:
    body = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "SIDEWAYS"}]}]}]}'
    assert convert(body, "traces", "otlp_json").spans == {"ignored_kind": 1}


def test_a_hand_written_otlp_json_body() -> None:
    result = convert(HAND_WRITTEN, "traces", "otlp_json")
    assert result.events == [
        {
            "type": "request",
            "ts": 1_790_000_000.0,
            "service": "checkout",
            "version": "7.1.0",
            "latency_ms": 250.0,
            "status": 201,
            "endpoint": "/orders",
            "dependency": "postgresql",  # found through the hex parent id
        }
    ]


def test_hex_ids_are_read_as_hex() -> None:
    decoded = decode_traces(HAND_WRITTEN, "otlp_json")
    spans = decoded.resource_spans[0].scope_spans[0].spans
    assert spans[0].trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert spans[1].parent_span_id.hex() == "eee19b7ec3c1b174"
    assert spans[1].links[0].span_id.hex() == "b7ad6b7169203331"


def test_metrics_as_json() -> None:
    request = metrics((SHOP, [gauge("cpu", point(0.25))]))
    result = convert(json_format.MessageToJson(request).encode(), "metrics", "otlp_json")
    assert [(e["name"], e["value"], e["ts"]) for e in result.events] == [("cpu", 0.25, T0_NS / 1e9)]


@pytest.mark.parametrize(
    ("raw", "encoding", "reason"),
    [
        (b"\xff\xff\xff garbage", "otlp_proto", "malformed_protobuf"),
        (REQUEST.SerializeToString()[:-7], "otlp_proto", "malformed_protobuf"),  # truncated
        (b"hello world", "otlp_proto", "malformed_protobuf"),
        (b"{not json", "otlp_json", "malformed_json"),
        (b"", "otlp_json", "malformed_json"),
        (b"[1, 2]", "otlp_json", "invalid_otlp"),
        (b'"resourceSpans"', "otlp_json", "invalid_otlp"),
        (b'{"resourceSpans": 7}', "otlp_json", "invalid_otlp"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": {"x": 1}}]}]}]}',
         "otlp_json", "invalid_otlp"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": 12}]}]}]}',
         "otlp_json", "invalid_otlp"),  # an id that is no string
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "-5"}]}]}]}',
         "otlp_json", "invalid_otlp"),
        (b"[" * 5000 + b"]" * 5000, "otlp_json", "malformed_json"),  # too deep for orjson
    ],
)  # fmt: skip
def test_what_is_no_otlp_request_raises_contract_error_with_a_reason(
    raw: bytes, encoding: str, reason: str
) -> None:
    with pytest.raises(ContractError) as caught:
        convert(raw, "traces", encoding)  # type: ignore[arg-type]
    assert caught.value.reason == reason


def test_json_of_a_trace_request_read_as_metrics_gives_nothing_not_an_error() -> None:
    # Unknown fields are ignored, as OTLP/JSON receivers must: the wrong topic is just empty.
    result = convert(json_format.MessageToJson(REQUEST).encode(), "metrics", "otlp_json")
    assert result.events == [] and not result.points


def test_a_deeply_nested_attribute_value_is_refused_not_a_crash() -> None:
    nested: dict[str, object] = {"stringValue": "leaf"}
    for _ in range(200):
        nested = {"arrayValue": {"values": [nested]}}
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": nested}]}}]}
    try:
        result = convert(json.dumps(body).encode(), "traces", "otlp_json")
    except ContractError as exc:
        assert exc.reason == "invalid_otlp"
    else:
        assert result.events == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["otlp_proto", "otlp_json"]),
       st.sampled_from(["traces", "metrics"]))  # fmt: skip
def test_random_bytes_either_convert_or_raise_contract_error(
    raw: bytes, encoding: str, signal: str
) -> None:
    try:
        result = convert(raw, signal, encoding)  # type: ignore[arg-type]
    except ContractError:
        return
    assert all(event["type"] in ("request", "metric") for event in result.events)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(REQUEST.SerializeToString())), st.integers(0, 255))
def test_a_corrupted_request_never_crashes(at: int, byte: int) -> None:
    raw = bytearray(REQUEST.SerializeToString())
    raw[at : at + 1] = bytes([byte])
    with contextlib.suppress(ContractError):
        convert(bytes(raw), "traces", "otlp_proto")


def test_the_trace_fixture_uses_the_fixed_trace_id() -> None:
    assert REQUEST.resource_spans[0].scope_spans[0].spans[0].trace_id == TRACE
