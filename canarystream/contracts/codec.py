"""Decoding of raw messages into events, with a cheap hot-path check for telemetry.

Telemetry is most of the traffic, so it is not checked by building a pydantic model per
event. Plain requests in replay lines and telemetry messages are decoded and checked in one
pass by :mod:`canarystream.contracts.wire`; any other telemetry object is checked by hand here.
Both are exactly as strict as the models in :mod:`canarystream.contracts.events` (property
tests hold them to agreement); when a check rejects, the model is run once to say precisely
what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import orjson
from pydantic import BaseModel, ValidationError

from canarystream.contracts.decision import Decision
from canarystream.contracts.events import (
    MAX_LATENCY_MS,
    MAX_METRIC_ABS,
    MAX_TS,
    MIN_TS,
    DeploymentStarted,
    MetricSample,
    ProbeResult,
    RequestSample,
    input_event_adapter,
)
from canarystream.contracts.wire import MESSAGE_DECODER, REQUEST_DECODER, WireRequest
from canarystream.errors import ContractError

__all__ = [
    "TELEMETRY_TYPES",
    "RequestFields",
    "check_request",
    "decode_decision",
    "decode_events",
    "decode_message",
    "decode_objects",
    "decode_telemetry",
    "encode_decision",
    "explain_invalid",
    "is_valid_telemetry",
    "parse_control",
]

TELEMETRY_TYPES = frozenset({"request", "metric", "probe"})
_MODELS: dict[str, type[BaseModel]] = {
    "request": RequestSample,
    "metric": MetricSample,
    "probe": ProbeResult,
}
_MAX_NAME = 256


_NUMBER = frozenset({int, float})  # exact types: bool is an int subclass and is rejected
_OPTIONAL_NAMES = ("instance", "endpoint", "dependency", "zone")

RequestFields = tuple[float, str, str, float, int]


def check_request(event: dict[str, Any]) -> RequestFields | None:
    """The fields the engine needs from a valid request event, or None if it is invalid.

    The hot path of the whole service: every field is read once, by subscript, and handed on,
    so the engine does not read them again.

    >>> check_request({"type": "request", "ts": 1.79e9, "service": "s", "version": "v",
    ...                "latency_ms": 12.5, "status": 200})
    (1790000000.0, 's', 'v', 12.5, 200)
    """
    try:
        ts = event["ts"]
        service = event["service"]
        version = event["version"]
        latency = event["latency_ms"]
        status = event["status"]
    except KeyError:
        return None
    # NaN compares False with everything, so the range checks also reject it.
    if not (
        type(ts) in _NUMBER
        and MIN_TS <= ts <= MAX_TS
        and type(service) is str
        and 0 < len(service) <= _MAX_NAME
        and type(version) is str
        and 0 < len(version) <= _MAX_NAME
        and type(latency) in _NUMBER
        and 0.0 <= latency <= MAX_LATENCY_MS
        and type(status) is int
        and 100 <= status <= 599
    ):
        return None
    for key in _OPTIONAL_NAMES:
        if key in event:
            value = event[key]
            if value is not None and not (type(value) is str and 0 < len(value) <= _MAX_NAME):
                return None
    return ts, service, version, latency, status


def is_valid_telemetry(event: dict[str, Any]) -> bool:
    """Whether a decoded telemetry object satisfies its contract model (fast, no allocation).

    >>> is_valid_telemetry({"type": "request", "ts": 1.79e9, "service": "s", "version": "v",
    ...                     "latency_ms": 12.5, "status": 200})
    True
    >>> is_valid_telemetry({"type": "request", "ts": 1.79e9, "service": "s", "version": "v",
    ...                     "latency_ms": float("nan"), "status": 200})
    False
    """
    kind = event.get("type")
    if kind == "request":
        return check_request(event) is not None
    get = event.get
    ts: Any = get("ts")  # unvalidated JSON values: their types are checked below
    service = get("service")
    version = get("version")
    instance = get("instance")
    if not (
        type(ts) in _NUMBER
        and MIN_TS <= ts <= MAX_TS
        and type(service) is str
        and 0 < len(service) <= _MAX_NAME
        and type(version) is str
        and 0 < len(version) <= _MAX_NAME
        and (instance is None or (type(instance) is str and 0 < len(instance) <= _MAX_NAME))
    ):
        return False
    if kind == "metric":
        name = get("name")
        value: Any = get("value")
        return (
            type(name) is str
            and 0 < len(name) <= _MAX_NAME
            and type(value) in _NUMBER
            and -MAX_METRIC_ABS <= value <= MAX_METRIC_ABS
        )
    if kind == "probe":
        probe = get("probe")
        latency = get("latency_ms")
        return (
            type(probe) is str
            and 0 < len(probe) <= _MAX_NAME
            and type(get("ok")) is bool
            and (latency is None or (type(latency) in _NUMBER and 0.0 <= latency <= MAX_LATENCY_MS))
        )
    return False


def explain_invalid(event: Any) -> ContractError:
    """Build the error for an object the fast check rejected, naming the offending field."""
    if not isinstance(event, dict):
        return ContractError(
            f"expected a JSON object, got {type(event).__name__}", reason="not_an_object"
        )
    kind = event.get("type")
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        try:
            input_event_adapter.validate_python(event)
        except ValidationError as exc:
            return _from_validation(exc, reason="unknown_type" if kind is not None else "no_type")
        return ContractError(f"unexpected event type {kind!r}", reason="unknown_type")
    try:
        model.model_validate(event)
    except ValidationError as exc:
        return _from_validation(exc, reason="invalid_field")
    return ContractError("event rejected by the fast check", reason="invalid_field")


def parse_control(event: dict[str, Any]) -> DeploymentStarted | Any:
    """Validate a deployment or control event with its model (rare; full pydantic)."""
    try:
        return input_event_adapter.validate_python(event)
    except ValidationError as exc:
        raise _from_validation(exc, reason="invalid_field") from exc


def decode_events(raw: bytes | str) -> tuple[list[Any], bool]:
    """The values of one message or line, and whether it was a JSON array (a batch).

    The one decoder from bytes to events (replay, the worker's processor and the tools use
    it). The values are unvalidated; raises ContractError(malformed_json) if the JSON is
    malformed.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"malformed JSON: {exc}", reason="malformed_json") from exc
    return (value, True) if type(value) is list else ([value], False)


def decode_telemetry(raw: bytes | str) -> tuple[list[Any], bool]:
    """:func:`decode_events` for a telemetry message, which nearly always holds requests only.

    A message of one valid request or an array of valid requests is decoded and checked in
    one pass: its values are :class:`WireRequest` structs. Any other message is decoded as
    :func:`decode_events` does (dicts, unvalidated).
    """
    try:
        value = MESSAGE_DECODER.decode(raw)
    except msgspec.DecodeError:
        return decode_events(raw)
    return (value, True) if type(value) is list else ([value], False)


def decode_objects(lines: Sequence[bytes]) -> list[dict[str, Any] | WireRequest] | None:
    """Each line's value if every line is one JSON object (nearly always), decoded at once.

    A line holding one valid request (nearly every line) comes back as a checked
    :class:`WireRequest`, decoded and validated in one pass; any other object as its dict,
    unvalidated. None if any line is not an object (malformed, blank, an array or a scalar):
    its caller then decodes line by line with :func:`decode_events` to say which line and why.
    """
    decode = REQUEST_DECODER.decode
    loads = orjson.loads
    values: list[dict[str, Any] | WireRequest] = []
    append = values.append
    for raw in lines:
        try:
            append(decode(raw))
            continue
        except msgspec.DecodeError:
            pass
        try:
            value = loads(raw)
        except orjson.JSONDecodeError:
            return None
        if type(value) is not dict:
            return None
        append(value)
    return values


def decode_message(raw: bytes | str) -> Iterator[Any]:
    """Parse one message or line: a JSON object, or a JSON array of them (a batch).

    Yields the decoded objects unvalidated; raises ContractError if the JSON is malformed.
    """
    yield from decode_events(raw)[0]


def _from_validation(exc: ValidationError, *, reason: str) -> ContractError:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "<event>"
    message = f"{where}: {first['msg']}"
    if len(exc.errors()) > 1:
        message += f" (and {len(exc.errors()) - 1} more)"
    return ContractError(message, reason=reason)


def encode_decision(decision: Decision) -> bytes:
    """A decision as the JSON bytes published on the decisions topic and written by replay."""
    return orjson.dumps(decision.model_dump(mode="json"))


def decode_decision(raw: bytes | str) -> Decision:
    """Parse a decision message; ContractError naming the field if it is not one."""
    try:
        return Decision.model_validate_json(raw)
    except ValidationError as exc:
        raise _from_validation(exc, reason="invalid_decision") from exc
