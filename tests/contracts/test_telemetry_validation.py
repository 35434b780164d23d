"""The hand-written telemetry check, the pydantic models and the JSON Schema must agree.

Objects are generated near the contract's edges: mostly valid fields, with now and then a
wrong type, a bool, NaN or infinity, a number just out of range, an empty or over-long
string, a missing key or None in an optional field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from canarystream.contracts import TELEMETRY_TYPES, input_event_adapter, is_valid_telemetry
from canarystream.contracts.events import MAX_LATENCY_MS, MAX_METRIC_ABS, MAX_TS, MIN_TS

MISSING: Any = object()
"""Marks a key left out of the generated object."""

_WRONG_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(["", "12.5", "true", "null"]),
    st.lists(st.integers(0, 3), max_size=2),
    st.just({"value": 1}),
    st.just(MISSING),
)
_NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


def _mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy:
    """Valid four times in five: enough valid objects that acceptance is exercised too."""
    return st.integers(0, 4).flatmap(lambda roll: invalid if roll == 0 else valid)


def _number(low: float, high: float) -> st.SearchStrategy[Any]:
    valid = st.one_of(
        st.floats(low, high),
        st.integers(math.ceil(low), math.floor(high)),
        st.sampled_from([low, high, int(low), int(high)]),
    )
    invalid = st.one_of(
        _NON_FINITE,
        _WRONG_TYPES,
        st.sampled_from(
            [math.nextafter(low, -math.inf), math.nextafter(high, math.inf), int(high) + 1]
        ),
        st.floats(allow_nan=False),
        st.integers(),
        st.just(10**400),  # beyond any float
        st.floats(low, high).map(str),
    )
    return _mostly(valid, invalid)


_VALID_NAMES = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["a" * 256, "é" * 256, "\U0001d11e" * 256, " "]),
)
_BAD_NAMES = st.one_of(
    _WRONG_TYPES,
    st.sampled_from(["", "a" * 257, "\U0001d11e" * 257]),
    st.integers(),
    st.floats(),
)
NAME = _mostly(_VALID_NAMES, _BAD_NAMES)
OPTIONAL_NAME = _mostly(st.one_of(_VALID_NAMES, st.none(), st.just(MISSING)), _BAD_NAMES)
TS = _number(MIN_TS, MAX_TS)
LATENCY = _number(0.0, MAX_LATENCY_MS)
STATUS = _mostly(
    st.integers(100, 599),
    st.one_of(
        st.sampled_from([99, 600, 700, 0, -200, 200.0, 503.5, "200", True, False]),
        st.integers(),
        _NON_FINITE,
        _WRONG_TYPES,
    ),
)
OK = _mostly(st.booleans(), st.one_of(st.sampled_from([0, 1, 1.0, "true", "false"]), _WRONG_TYPES))
EXTRAS = st.dictionaries(
    st.sampled_from(["trace_id", "region", "_private", "model_config", "__dict__"]),
    st.one_of(st.none(), st.integers(), st.text(max_size=3), st.floats()),
    max_size=2,
)
OTHER_TYPES = st.sampled_from(
    ["request", "metric", "probe", "deployment_started", "REQUEST", "", "span", 1, None, MISSING]
)


def _of_type(kind: str, fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy:
    common = {
        "type": _mostly(st.just(kind), OTHER_TYPES),
        "ts": TS,
        "service": NAME,
        "version": NAME,
        "instance": OPTIONAL_NAME,
    }
    return st.builds(
        lambda extras, event: {
            **extras,
            **{key: value for key, value in event.items() if value is not MISSING},
        },
        EXTRAS,
        st.fixed_dictionaries({**common, **fields}),
    )


TELEMETRY_OBJECTS = st.one_of(
    _of_type(
        "request",
        {
            "latency_ms": LATENCY,
            "status": STATUS,
            "endpoint": OPTIONAL_NAME,
            "dependency": OPTIONAL_NAME,
            "zone": OPTIONAL_NAME,
        },
    ),
    _of_type("metric", {"name": NAME, "value": _number(-MAX_METRIC_ABS, MAX_METRIC_ABS)}),
    _of_type(
        "probe",
        {
            "probe": NAME,
            "ok": OK,
            "latency_ms": st.one_of(LATENCY, st.none(), st.just(MISSING)),
        },
    ),
)


def model_accepts(obj: dict[str, Any]) -> bool:
    """The reference: the discriminated union of the contract accepts it as telemetry."""
    try:
        event = input_event_adapter.validate_python(obj)
    except ValidationError:
        return False
    return event.type in TELEMETRY_TYPES


_PROPERTY = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(TELEMETRY_OBJECTS)
def test_fast_check_agrees_with_the_models(obj: dict[str, Any]) -> None:
    assert is_valid_telemetry(obj) == model_accepts(obj)


_TELEMETRY_SCHEMA = Draft202012Validator(
    json.loads(
        (Path(__file__).parents[2] / "topics/schemas/telemetry.schema.json").read_text("utf-8")
    )
)


@settings(max_examples=400, deadline=None)
@given(TELEMETRY_OBJECTS)
def test_telemetry_schema_agrees_with_the_models_on_the_wire(obj: dict[str, Any]) -> None:
    try:
        received = orjson.loads(orjson.dumps(obj))  # what a consumer sees (NaN becomes null)
    except orjson.JSONEncodeError:
        assume(False)  # integers beyond 64 bits cannot be produced with orjson
    # JSON Schema counts 200.0 as an integer; the models (strict) do not. Known and accepted.
    status = received.get("status")
    assume(not (type(status) is float and status.is_integer()))
    assert _TELEMETRY_SCHEMA.is_valid(received) == model_accepts(received)


# Edges worth pinning down explicitly, whatever hypothesis happens to draw.
_BASE = {
    "type": "request",
    "ts": MIN_TS,
    "service": "s",
    "version": "v",
    "latency_ms": 0,
    "status": 100,
}


@pytest.mark.parametrize(
    "obj",
    [
        _BASE,
        {**_BASE, "ts": MAX_TS, "latency_ms": MAX_LATENCY_MS, "status": 599},
        {**_BASE, "ts": int(MIN_TS)},
        {**_BASE, "ts": math.nextafter(MIN_TS, 0)},
        {**_BASE, "ts": math.nextafter(MAX_TS, math.inf)},
        {**_BASE, "latency_ms": -0.0},
        {**_BASE, "latency_ms": -1e-300},
        {**_BASE, "latency_ms": math.nan},
        {**_BASE, "latency_ms": math.inf},
        {**_BASE, "latency_ms": False},
        {**_BASE, "status": 100.0},
        {**_BASE, "status": True},
        {**_BASE, "status": 2**70},
        {**_BASE, "service": "x" * 256},
        {**_BASE, "service": "x" * 257},
        {**_BASE, "instance": None},
        {**_BASE, "instance": ""},
        {**_BASE, "zone": None, "endpoint": "/", "dependency": "db"},
        {**_BASE, "type": "metric", "name": "m", "value": -MAX_METRIC_ABS},
        {**_BASE, "type": "metric", "name": "m", "value": 10**15 + 1},
        {**_BASE, "type": "metric", "name": "m", "value": -math.inf},
        {**_BASE, "type": "metric", "name": "", "value": 0},
        {**_BASE, "type": "probe", "probe": "p", "ok": False},
        {**_BASE, "type": "probe", "probe": "p", "ok": True, "latency_ms": None},
        {**_BASE, "type": "probe", "probe": "p", "ok": 1},
        {**_BASE, "type": "probe", "probe": "p", "ok": True, "latency_ms": -1},
        {**_BASE, "type": "deployment_started"},
        {key: value for key, value in _BASE.items() if key != "type"},
    ],
)
def test_fast_check_agrees_with_the_models_at_the_edges(obj: dict[str, Any]) -> None:
    assert is_valid_telemetry(obj) == model_accepts(obj)
