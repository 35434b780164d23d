"""The reader of stored state: every type and shape it accepts, and the exact refusal for the
rest, naming the field's path (what a dead letter of a damaged snapshot carries)."""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel

from canarystream.analysis.state import Reader, key_to_state, number, reader
from canarystream.errors import StateFormatError


class Colour(Enum):
    RED = "red"


class Point(BaseModel):
    x: int


def _read(method: str, value: Any, *args: Any, **kwargs: Any) -> Any:
    return getattr(Reader({"f": value}, "obj"), method)("f", *args, **kwargs)


@pytest.mark.parametrize(
    ("method", "value", "args", "expected"),
    [
        ("integer", 3, {}, 3),
        ("integer", None, {"none": True}, None),
        ("text", "a", {}, "a"),
        ("text", None, {"none": True}, None),
        ("flag", False, {}, False),
        ("real", 1.5, {}, 1.5),
        ("real", 2, {}, 2),
        ("real", None, {"none": True}, None),
        ("real", "inf", {}, math.inf),
        ("real", "-inf", {}, -math.inf),
        ("choice", "red", {"enum": Colour}, Colour.RED),
        ("key", None, {}, None),
        ("key", "cpu", {}, "cpu"),
        ("key", ["endpoint", "/cart"], {}, ("endpoint", "/cart")),
        ("items", [1, "a"], {"length": 2}, [1, "a"]),
        ("integers", [1, 2], {"length": 2}, [1, 2]),
        ("integers", [], {}, []),
        ("reals", [1, 2.5], {}, [1, 2.5]),
        ("texts", ["a"], {}, ["a"]),
        ("ranges", [[500, 599], [429, 429]], {}, ((500, 599), (429, 429))),
        ("counts", [[200, 3], [503, 1]], {}, {200: 3, 503: 1}),
        ("model", {"x": 1}, {"model": Point}, Point(x=1)),
        ("models", [{"x": 1}, {"x": 2}], {"model": Point}, [Point(x=1), Point(x=2)]),
    ],
)
def test_what_a_reader_accepts(
    method: str, value: Any, args: dict[str, Any], expected: Any
) -> None:
    read = _read(method, value, **args)
    assert read == expected
    assert type(read) is type(expected)


@pytest.mark.parametrize(
    ("method", "value", "args", "message"),
    [
        ("integer", 1.0, {}, "expected an integer, got float"),
        ("integer", None, {}, "expected an integer, got null"),
        ("integer", True, {"none": True}, "expected an integer or null, got bool"),
        ("text", 1, {}, "expected a string, got int"),
        ("flag", 1, {}, "expected a boolean, got int"),
        ("flag", None, {}, "expected a boolean, got null"),
        ("real", None, {}, "expected a number, got null"),
        ("real", "infinity", {}, "expected a number, got str"),
        ("real", True, {"none": True}, "expected a number or null, got bool"),
        ("choice", "blue", {"enum": Colour}, "unknown Colour 'blue'"),
        ("key", [], {}, "expected null, a string or a list of strings, got list"),
        ("key", ["a", 1], {}, "expected null, a string or a list of strings, got list"),
        ("key", 3, {}, "expected null, a string or a list of strings, got int"),
        ("items", {"a": 1}, {}, "expected a list, got dict"),
        ("items", [1], {"length": 2}, "expected 2 items, got 1"),
        ("integers", [1, 2.0], {}, "expected a list of integers"),
        ("reals", [1, "2"], {}, "expected a list of numbers"),
        ("texts", ["a", None], {}, "expected a list of strings"),
        ("array", [[1.0]], {}, "expected a list of numbers"),
        ("array", [1.0, "x"], {}, "expected a list of numbers"),
        ("array", [1.0, [2.0]], {}, "expected a list of numbers"),
        ("array", [1.0, 2.0], {"length": 3}, "expected 3 items, got 2"),
        ("ranges", [[500]], {}, "expected a list of [integer, integer] pairs"),
        ("ranges", [[500, 599.0]], {}, "expected a list of [integer, integer] pairs"),
        ("ranges", [["500", 599]], {}, "expected a list of [integer, integer] pairs"),
        ("ranges", [(500, 599)], {}, "expected a list of [integer, integer] pairs"),
    ],
)
def test_what_a_reader_refuses_naming_the_field(
    method: str, value: Any, args: dict[str, Any], message: str
) -> None:
    with pytest.raises(StateFormatError) as refused:
        _read(method, value, **args)
    assert str(refused.value) == f"obj.f: {message}"


def test_a_missing_field_and_a_state_that_is_no_object_are_named() -> None:
    with pytest.raises(StateFormatError, match=r"^obj\.g: missing$"):
        Reader({"f": 1}, "obj").integer("g")
    with pytest.raises(StateFormatError, match=r"^obj: expected an object, got list$"):
        Reader([1], "obj")
    with pytest.raises(StateFormatError, match=r"^obj: expected an object, got null$"):
        reader(None, "obj")  # type: ignore[arg-type]


def test_an_array_is_float64_whatever_numbers_it_was_written_with() -> None:
    array = _read("array", [1, 2])
    assert array.dtype == np.float64
    assert array.tolist() == [1.0, 2.0]


def test_nested_objects_and_models_carry_the_path_down() -> None:
    r = Reader({"inner": {"list": [{"x": 1}, {"x": "no"}]}}, "top")
    child = r.child("inner")
    assert child.path == "top.inner"
    assert reader(child, "ignored") is child
    first, second = child.children("list", 2)
    assert (first.path, second.path) == ("top.inner.list.0", "top.inner.list.1")
    assert first.fields() == ["x"]
    with pytest.raises(StateFormatError) as refused:
        child.models("list", Point)
    assert str(refused.value) == (
        "top.inner.list.1.x: Input should be a valid integer, unable to parse string as an integer"
    )
    with pytest.raises(StateFormatError) as whole:
        Reader({"p": 3}, "top").model("p", Point)
    assert str(whole.value) == "top.p: Input should be a valid dictionary or instance of Point"
    with pytest.raises(StateFormatError, match=r"^top\.inner\.list: expected 3 items, got 2$"):
        child.children("list", 3)


def test_lists_of_a_fixed_length_are_refused_at_any_other_length() -> None:
    for method in ("integers", "reals"):
        with pytest.raises(StateFormatError, match=r"^obj\.f: expected 2 items, got 1$"):
            _read(method, [1], 2)


def test_a_plain_state_is_read_under_the_path_given() -> None:
    r = reader({"a": 1}, "obj")
    assert (r.path, r.integer("a")) == ("obj", 1)
    assert key_to_state(("endpoint", "/cart")) == ["endpoint", "/cart"]
    assert (key_to_state("cpu"), key_to_state(None)) == ("cpu", None)


def test_a_non_finite_number_is_written_as_a_string_read_back() -> None:
    assert [number(v) for v in (1.5, math.inf, -math.inf)] == [1.5, "inf", "-inf"]
    assert number(math.nan) == "nan"
    assert math.isnan(_read("real", "nan"))
