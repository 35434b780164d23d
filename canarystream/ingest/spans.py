"""OTLP spans to ``request`` events, with the dependency each request went through.

SERVER spans are the requests a service served: each becomes one ``request`` event. CLIENT
spans are calls the service made while serving one; they are *not* requests of the service.
Every ``request`` event the engine receives counts in the overall checks (error rate,
latency, sample ratio), and a check with ``breakdown: dependency`` also counts it in the unit
of its ``dependency`` value (``Rollout.add_request``): the breakdown is a view of the same
requests. A CLIENT span emitted as an event of its own would be counted as a second request
of the service, with the dependency's latency and status. So a CLIENT span only names the
``dependency`` of the request event of its enclosing SERVER span: the nearest SERVER
ancestor in the same trace, reached through parents of the same service within the message.

A request carries one dependency. Where several CLIENT spans lie under one SERVER span, the
one kept is the likeliest to explain the request's outcome: a failed call (span status ERROR
or an HTTP status of 500 or more) before a successful one, then the longest; the others are
counted as ``dependency_superseded``. A CLIENT span whose SERVER span is not in the same
message (the exporter's batches may split a trace) is counted as ``no_server_span``; one whose
SERVER span gave no event (no service or version, an invalid field) as ``server_span_dropped``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from canarystream.ingest.attributes import Attributes
from canarystream.ingest.conversion import Conversion, IngestOptions, contract_violation

__all__ = ["convert_traces", "dependency_of", "request_status"]

_SERVER = Span.SpanKind.SPAN_KIND_SERVER
_CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
_ERROR = Status.StatusCode.STATUS_CODE_ERROR
_MAX_DEPTH = 64  # a parent chain longer than this is not followed (and cannot loop)
_NS_PER_S = 1e9
_NS_PER_MS = 1e6


@dataclass
class _Seen:
    """One span of the message with what its resource says."""

    span: Span
    attributes: Attributes
    service: str | None
    resource: Attributes


@dataclass
class _Call:
    """The dependency a CLIENT span names, ranked for the choice of one per request."""

    dependency: str
    failed: bool
    duration: int


def request_status(span: Span, attrs: Attributes) -> int:
    """The HTTP status of a SERVER span, else 500 for status ERROR and 200 otherwise.

    ``http.response.status_code`` (semantic conventions 1.20+) first, then the older
    ``http.status_code``; a non-integer status gives -1 (an invalid event).
    """
    for key in ("http.response.status_code", "http.status_code"):
        if (status := attrs.integer(key)) is not None:
            return status
    return 500 if span.status.code == _ERROR else 200


def dependency_of(attrs: Attributes) -> str | None:
    """What a CLIENT span calls: ``db.system``, else ``peer.service``, else ``server.address``."""
    return attrs.first_name("db.system", "peer.service", "server.address")


def convert_traces(request: ExportTraceServiceRequest, options: IngestOptions) -> Conversion:
    """The request events of every SERVER span; every span counted by outcome."""
    result = Conversion()
    seen: dict[tuple[bytes, bytes], _Seen] = {}
    order: list[_Seen] = []
    for resource_spans in request.resource_spans:
        resource = Attributes(resource_spans.resource.attributes)
        service = resource.name(options.service_attribute)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                item = _Seen(span, Attributes(span.attributes), service, resource)
                order.append(item)
                seen.setdefault((span.trace_id, span.span_id), item)
    calls: dict[int, list[_Call]] = {}
    for item in order:
        if item.span.kind == _CLIENT:
            _client(item, seen, calls, result)
        elif item.span.kind != _SERVER:
            result.spans["ignored_kind"] += 1
    for item in order:
        if item.span.kind == _SERVER:
            _server(item, calls.get(id(item), []), options, result)
    return result


def _client(
    item: _Seen,
    seen: dict[tuple[bytes, bytes], _Seen],
    calls: dict[int, list[_Call]],
    result: Conversion,
) -> None:
    dependency = dependency_of(item.attributes)
    if dependency is None:
        result.spans["no_dependency"] += 1
        return
    server = _enclosing_server(item, seen)
    if server is None:
        result.spans["no_server_span"] += 1
        return
    span = item.span
    status = item.attributes.integer("http.response.status_code")
    if status is None:
        status = item.attributes.integer("http.status_code")
    failed = span.status.code == _ERROR or (status is not None and status >= 500)
    duration = span.end_time_unix_nano - span.start_time_unix_nano
    calls.setdefault(id(server), []).append(_Call(dependency, failed, duration))


def _enclosing_server(item: _Seen, seen: dict[tuple[bytes, bytes], _Seen]) -> _Seen | None:
    """The nearest SERVER ancestor of the same service, or None."""
    current = item
    for _ in range(_MAX_DEPTH):
        parent_id = current.span.parent_span_id
        if not parent_id:
            return None
        parent = seen.get((current.span.trace_id, parent_id))
        if parent is None or parent.service != item.service or parent is item:
            return None
        if parent.span.kind == _SERVER:
            return parent
        current = parent
    return None


def _server(item: _Seen, calls: list[_Call], options: IngestOptions, result: Conversion) -> None:
    outcome = _request(item, calls, options, result)
    result.spans[outcome] += 1
    if not calls:
        return
    if outcome != "request":
        result.spans["server_span_dropped"] += len(calls)  # their request was not emitted
        return
    result.spans["dependency"] += 1
    if len(calls) > 1:
        result.spans["dependency_superseded"] += len(calls) - 1


def _request(item: _Seen, calls: list[_Call], options: IngestOptions, result: Conversion) -> str:
    """Emit the request event of a SERVER span; its outcome."""
    if item.service is None:
        return "no_service"
    version = item.resource.name(options.version_attribute)
    if version is None:
        return "no_version"
    span, attrs = item.span, item.attributes
    event: dict[str, Any] = {
        "type": "request",
        "ts": span.start_time_unix_nano / _NS_PER_S,
        "service": item.service,
        "version": version,
        "latency_ms": (span.end_time_unix_nano - span.start_time_unix_nano) / _NS_PER_MS,
        "status": request_status(span, attrs),
    }
    optional = {
        "endpoint": attrs.first_name("http.route", "rpc.method"),
        "instance": item.resource.name("service.instance.id"),
        "zone": item.resource.name("cloud.availability_zone"),
    }
    if calls:
        kept = max(calls, key=lambda call: (call.failed, call.duration))
        optional["dependency"] = kept.dependency
    event.update({key: value for key, value in optional.items() if value is not None})
    if (reason := contract_violation(event)) is not None:
        return reason
    result.events.append(event)
    return "request"
