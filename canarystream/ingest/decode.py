"""Decoding OTLP export requests from Kafka message bytes, ``otlp_proto`` or ``otlp_json``.

``otlp_json`` is the OTLP/JSON mapping of the same messages, which differs from protobuf's
canonical JSON in one way that matters: trace and span ids are hex, not base64. They are
turned into base64 before :func:`google.protobuf.json_format.ParseDict` reads them (read as
base64 they would decode without error into wrong ids, and the parent chains that give CLIENT
spans their SERVER span would break). Protobuf's canonical JSON (base64 ids, what
``MessageToJson`` writes) is read too. Enum values as integers, camelCase or the proto field
names, and 64-bit integers as strings or numbers are what ``ParseDict`` accepts anyway;
unknown fields are ignored, as OTLP/JSON receivers must.
"""

from __future__ import annotations

import base64
from typing import Any, Literal, TypeVar

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from canarystream.errors import ContractError

__all__ = ["ENCODINGS", "Encoding", "Signal", "decode_metrics", "decode_traces"]

Encoding = Literal["otlp_proto", "otlp_json"]
Signal = Literal["traces", "metrics"]
ENCODINGS: tuple[Encoding, ...] = ("otlp_proto", "otlp_json")

_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_POINT_KINDS = ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram")

M = TypeVar("M", bound=Message)


def decode_traces(raw: bytes, encoding: Encoding) -> ExportTraceServiceRequest:
    """An ``ExportTraceServiceRequest``; ContractError with the reason if it is none."""
    return _decode(raw, encoding, ExportTraceServiceRequest(), _trace_holders)


def decode_metrics(raw: bytes, encoding: Encoding) -> ExportMetricsServiceRequest:
    """An ``ExportMetricsServiceRequest``; ContractError with the reason if it is none."""
    return _decode(raw, encoding, ExportMetricsServiceRequest(), _exemplar_holders)


def _decode(raw: bytes, encoding: Encoding, message: M, holders: Any) -> M:
    if encoding == "otlp_proto":
        try:
            message.ParseFromString(raw)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise ContractError(f"not OTLP protobuf: {exc}", reason="malformed_protobuf") from exc
        return message
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"malformed JSON: {exc}", reason="malformed_json") from exc
    if not isinstance(document, dict):
        raise ContractError(
            f"expected an OTLP/JSON object, got {type(document).__name__}", reason="invalid_otlp"
        )
    for holder in holders(document):
        _hex_to_base64(holder)
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise ContractError(f"not OTLP/JSON: {exc}", reason="invalid_otlp") from exc
    return message


def _hex_to_base64(holder: dict[str, Any]) -> None:
    """Rewrite the hex ids of one span, link or exemplar as base64 (in place).

    An id that is not hex is left as it is: protobuf's own JSON mapping writes base64 (a
    16-byte id is 24 characters then, 32 in hex, so the two never look alike), and ParseDict
    refuses what is neither.
    """
    for key in _ID_KEYS:
        value = holder.get(key)
        if isinstance(value, str) and value:
            try:
                holder[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            except ValueError:
                continue


def _dicts(value: Any, *keys: str) -> list[dict[str, Any]]:
    """The objects of the list under the first of ``keys`` present (none if the shape is
    wrong: ParseDict then says what is)."""
    if not isinstance(value, dict):
        return []
    for key in keys:
        if key in value:
            found = value[key]
            return [v for v in found if isinstance(v, dict)] if isinstance(found, list) else []
    return []


def _trace_holders(document: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for resource in _dicts(document, "resourceSpans", "resource_spans"):
        for scope in _dicts(resource, "scopeSpans", "scope_spans"):
            for span in _dicts(scope, "spans"):
                found.append(span)
                found.extend(_dicts(span, "links"))
    return found


def _exemplar_holders(document: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for resource in _dicts(document, "resourceMetrics", "resource_metrics"):
        for scope in _dicts(resource, "scopeMetrics", "scope_metrics"):
            for metric in _dicts(scope, "metrics"):
                for kind in _POINT_KINDS:
                    for point in _dicts(metric.get(kind), "dataPoints", "data_points"):
                        found.extend(_dicts(point, "exemplars"))
    return found
