"""Decoding raw messages and explaining rejected events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from canarystream.contracts import decode_message, explain_invalid, parse_control
from canarystream.contracts.codec import decode_events, decode_objects
from canarystream.contracts.events import DeploymentAborted
from canarystream.contracts.wire import WireRequest
from canarystream.errors import ContractError

REQUEST = {
    "type": "request",
    "ts": 1_790_000_000.0,
    "service": "checkout",
    "version": "v2",
    "latency_ms": 12.5,
    "status": 200,
}


@pytest.mark.parametrize("raw", [orjson.dumps(REQUEST), orjson.dumps(REQUEST).decode()])
def test_decode_one_object(raw: bytes | str) -> None:
    assert list(decode_message(raw)) == [REQUEST]


def test_decode_an_array_batch_yields_each_element_in_order() -> None:
    second = {**REQUEST, "status": 503}
    assert list(decode_message(orjson.dumps([REQUEST, second]))) == [REQUEST, second]
    assert list(decode_message(b"[]")) == []


def test_decode_yields_non_objects_unvalidated() -> None:
    # Only the top-level array is a batch; what is inside is checked afterwards.
    assert list(decode_message(b"[[1], 2, null]")) == [[1], 2, None]
    assert list(decode_message(b'"request"')) == ["request"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type": "request", "ts": 1',
        b"",
        b'{"latency_ms": NaN}',  # JSON has no NaN literal
        b'{"latency_ms": Infinity}',
        b"\xff\xfe",
        b'{"a": 1}{"b": 2}',  # two objects in one message
    ],
)
def test_decode_malformed_json_is_a_contract_error(raw: bytes) -> None:
    with pytest.raises(ContractError, match="malformed JSON") as caught:
        list(decode_message(raw))
    assert caught.value.reason == "malformed_json"
    assert isinstance(caught.value.__cause__, orjson.JSONDecodeError)


def test_decode_events_says_whether_the_message_was_a_batch() -> None:
    second = {**REQUEST, "status": 503}
    assert decode_events(orjson.dumps(REQUEST)) == ([REQUEST], False)
    assert decode_events(orjson.dumps([REQUEST, second])) == ([REQUEST, second], True)
    assert decode_events(b"[]") == ([], True)
    assert decode_events(b"null") == ([None], False)
    with pytest.raises(ContractError, match="malformed JSON") as caught:
        decode_events(b"{")
    assert caught.value.reason == "malformed_json"


def test_decode_objects_decodes_lines_of_one_object_each_or_gives_up() -> None:
    line = orjson.dumps(REQUEST)
    metric = {**REQUEST, "type": "metric", "name": "cpu", "value": 0.5}
    metric.pop("status")
    metric.pop("latency_ms")
    decoded = decode_objects([line, orjson.dumps(metric)])
    assert decoded is not None
    assert [value if type(value) is dict else value.as_event() for value in decoded] == [
        REQUEST,
        metric,
    ]
    assert type(decoded[0]) is WireRequest  # checked already, in one pass
    assert decode_objects([]) == []
    # Anything else (malformed, a batch, a scalar, a blank line) is for the general path.
    for odd in (b"{", b"[]", orjson.dumps([REQUEST]), b"1", b"null", b"", b"\n"):
        assert decode_objects([line, odd]) is None


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        ({**REQUEST, "status": "200"}, "status", "invalid_field"),
        ({**REQUEST, "status": 700}, "status", "invalid_field"),
        ({**REQUEST, "latency_ms": float("nan")}, "latency_ms", "invalid_field"),
        ({**REQUEST, "latency_ms": True}, "latency_ms", "invalid_field"),
        ({k: v for k, v in REQUEST.items() if k != "version"}, "version", "invalid_field"),
        ({**REQUEST, "service": ""}, "service", "invalid_field"),
        ({**REQUEST, "ts": 1.79e12}, "ts", "invalid_field"),
        ({**REQUEST, "instance": 7}, "instance", "invalid_field"),
        ({**REQUEST, "type": "metric"}, "name", "invalid_field"),
    ],
)
def test_explain_invalid_names_the_field(event: dict[str, Any], field: str, reason: str) -> None:
    error = explain_invalid(event)
    assert error.reason == reason
    assert str(error).startswith(f"{field}:"), str(error)


def test_explain_invalid_counts_further_errors() -> None:
    error = explain_invalid({**REQUEST, "status": "200", "latency_ms": -1})
    assert "(and 1 more)" in str(error)


def test_explain_invalid_without_type() -> None:
    error = explain_invalid({k: v for k, v in REQUEST.items() if k != "type"})
    assert error.reason == "no_type"
    assert "type" in str(error)


def test_explain_invalid_unknown_type() -> None:
    error = explain_invalid({**REQUEST, "type": "span"})
    assert error.reason == "unknown_type"
    assert "span" in str(error)


@pytest.mark.parametrize("value", [[REQUEST], "request", 3, None])
def test_explain_invalid_not_an_object(value: Any) -> None:
    error = explain_invalid(value)
    assert error.reason == "not_an_object"
    assert type(value).__name__ in str(error)


def test_parse_control_validates_and_names_the_field() -> None:
    event = {"type": "deployment_aborted", "ts": 1_790_000_000.0, "deployment": "d", "actor": "a"}
    assert isinstance(parse_control(event), DeploymentAborted)
    with pytest.raises(ContractError, match=r"^deployment_aborted\.actor:") as caught:
        parse_control({k: v for k, v in event.items() if k != "actor"})
    assert caught.value.reason == "invalid_field"
