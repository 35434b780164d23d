"""The hot path's one-pass request decoder must agree with the contract on the raw bytes.

Whatever :func:`decode_request` accepts, the pydantic model accepts (as a request, with the
same fields) once the same bytes are parsed as JSON; whatever the model accepts as a request
without fields it does not name, the decoder accepts too. Objects come from the contract
tests' generator (near every edge of every field); raw texts cover what a generator of
Python objects cannot write: numbers beyond 64 bits or beyond a float, duplicate keys, bad
UTF-8, lone surrogates, trailing bytes.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from pydantic import ValidationError

from canarystream.contracts import RequestSample, input_event_adapter
from canarystream.contracts.codec import check_request, decode_objects
from canarystream.contracts.events import MAX_LATENCY_MS, MAX_TS, MIN_TS
from canarystream.contracts.wire import WireRequest, decode_request
from tests.contracts.test_telemetry_validation import TELEMETRY_OBJECTS

_NAMED = frozenset(RequestSample.model_fields)


def _contract(raw: bytes) -> RequestSample | None:
    """The reference: the bytes parse as JSON and the contract takes them as a request."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    try:
        event = input_event_adapter.validate_python(value)
    except ValidationError:
        return None
    return event if isinstance(event, RequestSample) else None


def _agrees(raw: bytes) -> None:
    wire = decode_request(raw)
    reference = _contract(raw)
    if wire is not None:
        assert reference is not None, raw
        assert wire.as_event() == reference.model_dump(exclude_none=True), raw
        value = orjson.loads(raw)
        assert check_request(value) == (
            wire.ts,
            wire.service,
            wire.version,
            wire.latency_ms,
            wire.status,
        )
    elif reference is not None:
        # the one way the mirror is stricter: a field the contract does not name
        assert set(orjson.loads(raw)) - _NAMED, raw


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TELEMETRY_OBJECTS)
def test_the_wire_decoder_agrees_with_the_contract(obj: dict[str, Any]) -> None:
    try:
        raw = orjson.dumps(obj)
    except orjson.JSONEncodeError:
        assume(False)  # integers beyond 64 bits: written by hand below
    _agrees(raw)


_VALID = (
    b'"type":"request","ts":1790000000.5,"service":"s","version":"v","latency_ms":12.5,"status":200'
)


@pytest.mark.parametrize(
    "raw",
    [
        b"{" + _VALID + b"}",
        b"  {" + _VALID + b"}\n",
        b'{"status":200,"latency_ms":1,"version":"v","service":"s","ts":1790000000,'
        b'"type":"request"}',
        b"{" + _VALID + b',"status":600}',  # duplicate keys: the last one counts
        b"{" + _VALID + b',"status":404}',
        b"{" + _VALID + b',"type":"metric"}',
        b"{" + _VALID + b',"status":200.0}',
        b"{" + _VALID + b',"status":2e2}',
        b"{" + _VALID + b',"status":123456789012345678901234567890}',
        b"{" + _VALID + b',"ts":1790000000000000000000000000000000000}',
        b"{" + _VALID + b',"ts":1e400}',
        b"{" + _VALID + b',"latency_ms":-0.0}',
        b"{" + _VALID + b',"latency_ms":-1e-320}',
        b"{" + _VALID + b',"latency_ms":NaN}',
        b"{" + _VALID + b',"latency_ms":Infinity}',
        b"{" + _VALID + b',"latency_ms":"12.5"}',
        b"{" + _VALID + b',"service":"\\ud800"}',
        b"{" + _VALID + b',"service":"\\ud834\\udd1e"}',
        b"{" + _VALID + b',"service":"\xff"}',
        b"{" + _VALID + b',"service":"a\\u0000b"}',
        b"{" + _VALID + b',"service":"' + "\U0001d11e".encode() * 256 + b'"}',
        b"{" + _VALID + b',"service":"' + "\U0001d11e".encode() * 257 + b'"}',
        b"{" + _VALID + b',"instance":null,"endpoint":"/","dependency":"db","zone":"z"}',
        b"{" + _VALID + b',"zone":""}',
        b"{" + _VALID + b',"trace_id":"abc"}',
        b"{" + _VALID + b',"extra":123456789012345678901234567890}',
        b"{" + _VALID + b"} trailing",
        b"{" + _VALID + b"}{}",
        b"{" + _VALID,
        b"[{" + _VALID + b"}]",
        b"{" + _VALID + b',"ts":true}',
        b"{" + _VALID + b',"version":["v"]}',
        b'{"type":"request"}',
        _VALID.replace(b'"type":"request",', b"{") + b"}",  # no type at all
        _VALID.replace(b'"type":"request"', b'{"type":null') + b"}",
        _VALID.replace(b'"type":"request"', b'{"type":"REQUEST"') + b"}",
        _VALID.replace(b'"type":"request"', b'{"type":"metric"') + b"}",
        b"",
        b"null",
    ],
)
def test_the_wire_decoder_agrees_with_the_contract_on_raw_text(raw: bytes) -> None:
    _agrees(raw)


_EDGE_BASE: dict[str, Any] = orjson.loads(b"{" + _VALID + b"}")


@pytest.mark.parametrize(
    "change",
    [
        {"status": 99},
        {"status": 100},
        {"status": 599},
        {"status": 600},
        {"ts": MIN_TS},
        {"ts": math.nextafter(MIN_TS, 0.0)},
        {"ts": MAX_TS},
        {"ts": math.nextafter(MAX_TS, math.inf)},
        {"ts": int(MAX_TS) + 1},
        {"latency_ms": 0},
        {"latency_ms": MAX_LATENCY_MS},
        {"latency_ms": math.nextafter(MAX_LATENCY_MS, math.inf)},
        {"service": "a" * 256},
        {"service": "a" * 257},
        {"version": ""},
        {"endpoint": "e" * 257},
    ],
    ids=repr,
)
def test_the_wire_decoder_agrees_with_the_contract_at_every_bound(change: dict[str, Any]) -> None:
    _agrees(orjson.dumps({**_EDGE_BASE, **change}))


def test_only_requests_with_named_fields_take_the_one_pass_decoder() -> None:
    valid = b"{" + _VALID + b"}"
    extra = b"{" + _VALID + b',"trace_id":"abc"}'
    metric = b'{"type":"metric","ts":1790000000,"service":"s","version":"v","name":"m","value":1}'
    values = decode_objects([valid, extra, metric])
    assert values is not None
    assert [type(value) for value in values] == [WireRequest, dict, dict]
    assert decode_objects([valid, b"[]"]) is None
    assert decode_objects([valid, b"{"]) is None


def test_a_wire_request_reads_like_its_object() -> None:
    wire = decode_request(b"{" + _VALID + b',"endpoint":"/a"}')
    assert wire is not None
    assert wire.get("endpoint") == "/a"
    assert wire.get("dependency") is None
    assert wire.get("nonexistent", "default") == "default"
    assert wire.get("get") is None
    assert wire.get("type") == "request"
    assert wire.get("instance", "default") is None  # a named field left out reads as None
    assert wire.as_event() == {
        "type": "request",
        "ts": 1790000000.5,
        "service": "s",
        "version": "v",
        "latency_ms": 12.5,
        "status": 200,
        "endpoint": "/a",
    }
    assert not math.isnan(wire.latency_ms)
