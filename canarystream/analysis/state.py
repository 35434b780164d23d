"""Plain-data state: what every ``to_state`` / ``from_state`` pair shares.

``to_state()`` returns JSON-ready plain data only: dicts with string keys, lists, str, int,
float, bool and None. Tuples become lists; numpy arrays become lists of floats; a mapping
with other keys (None, tuples) becomes a list of ``{"key": ..., ...}`` objects, in order;
a float that may be infinite is written with :func:`number` (JSON has no infinity, and
orjson would write ``null``). ``from_state`` reads through a :class:`Reader`, which checks
every type and shape and names the path of the first problem in a
:class:`~canarystream.errors.StateFormatError`, so damaged or foreign state is refused, never
restored wrongly. Configuration objects (policy checks and guards) are not repeated in each
object's state: the rollout stores its policy once and hands each part its own.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from canarystream.errors import StateFormatError, field_errors

__all__ = ["Key", "Reader", "State", "key_to_state", "number", "reader"]

State = dict[str, Any]
"""What ``to_state()`` returns: one object's state as plain data."""

Key = str | tuple[str, ...] | None
"""Keys of check units and latency trackers: none, a gauge name, or ``(field, value)``."""

_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
E = TypeVar("E", bound=Enum)
M = TypeVar("M", bound=BaseModel)


def number(value: float) -> float | str:
    """A float as plain data: itself when finite, else ``"inf"``, ``"-inf"`` or ``"nan"``.

    >>> number(1.5), number(float("-inf"))
    (1.5, '-inf')
    """
    return value if math.isfinite(value) else str(value)


def key_to_state(key: Key) -> str | list[str] | None:
    """A unit or tracker key as plain data (a tuple becomes a list).

    >>> key_to_state(("endpoint", "/cart")), key_to_state(None)
    (['endpoint', '/cart'], None)
    """
    return list(key) if isinstance(key, tuple) else key


def _what(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class Reader:
    """Typed reads from one object's state; every error names the field's path.

    >>> r = reader({"seq": 3, "mean": "inf", "key": ["endpoint", "/cart"]}, "rollout")
    >>> r.integer("seq"), r.real("mean"), r.key("key")
    (3, inf, ('endpoint', '/cart'))
    >>> r.text("phase")
    Traceback (most recent call last):
    ...
    canarystream.errors.StateFormatError: rollout.phase: missing
    """

    __slots__ = ("path", "state")

    def __init__(self, state: Any, path: str) -> None:
        if type(state) is not dict:
            raise StateFormatError(f"{path}: expected an object, got {_what(state)}")
        self.state: dict[str, Any] = state
        self.path = path

    def fail(self, name: str, problem: str) -> StateFormatError:
        """The error for field ``name``."""
        return StateFormatError(f"{self.path}.{name}: {problem}")

    def raw(self, name: str) -> Any:
        """The field's value, unchecked."""
        try:
            return self.state[name]
        except KeyError:
            raise self.fail(name, "missing") from None

    def _typed(self, name: str, kinds: tuple[type, ...], what: str, none: bool) -> Any:
        value = self.raw(name)
        if (value is None and none) or type(value) in kinds:
            return value
        raise self.fail(name, f"expected {what}{' or null' if none else ''}, got {_what(value)}")

    def integer(self, name: str, *, none: bool = False) -> Any:
        """An int (``none``: or None)."""
        return self._typed(name, (int,), "an integer", none)

    def text(self, name: str, *, none: bool = False) -> Any:
        """A str (``none``: or None)."""
        return self._typed(name, (str,), "a string", none)

    def flag(self, name: str) -> bool:
        """A bool."""
        flag: bool = self._typed(name, (bool,), "a boolean", False)
        return flag

    def real(self, name: str, *, none: bool = False) -> Any:
        """A number: a JSON number or a :func:`number` string (``none``: or None)."""
        value = self.raw(name)
        kind = type(value)
        if kind is float or kind is int:
            return value  # an int stays one, as it was written
        if value is None and none:
            return None
        if kind is str and value in _NON_FINITE:
            return _NON_FINITE[value]
        raise self.fail(name, f"expected a number{' or null' if none else ''}, got {_what(value)}")

    def choice(self, name: str, enum: type[E]) -> E:
        """A member of ``enum`` by value."""
        value = self.text(name)
        try:
            return enum(value)
        except ValueError:
            raise self.fail(name, f"unknown {enum.__name__} {value!r}") from None

    def key(self, name: str) -> Key:
        """A key written by :func:`key_to_state`."""
        value = self.raw(name)
        if value is None or type(value) is str:
            return value
        if type(value) is list and value and all(type(part) is str for part in value):
            return tuple(value)
        raise self.fail(name, f"expected null, a string or a list of strings, got {_what(value)}")

    def items(self, name: str, length: int | None = None) -> list[Any]:
        """A list, its items unchecked."""
        value = self.raw(name)
        if type(value) is not list:
            raise self.fail(name, f"expected a list, got {_what(value)}")
        if length is not None and len(value) != length:
            raise self.fail(name, f"expected {length} items, got {len(value)}")
        return value

    def integers(self, name: str, length: int | None = None) -> list[int]:
        """A list of ints."""
        value = self.items(name, length)
        if not set(map(type, value)) <= {int}:
            raise self.fail(name, "expected a list of integers")
        return value

    def reals(self, name: str, length: int | None = None) -> list[float]:
        """A list of JSON numbers, ints kept as they were (no infinities)."""
        value = self.items(name, length)
        if not set(map(type, value)) <= {int, float}:
            raise self.fail(name, "expected a list of numbers")
        return value

    def texts(self, name: str) -> list[str]:
        """A list of strings."""
        value = self.items(name, None)
        if not set(map(type, value)) <= {str}:
            raise self.fail(name, "expected a list of strings")
        return value

    def array(self, name: str, length: int | None = None) -> np.ndarray:
        """A list of numbers as a float64 numpy array."""
        value = self.items(name, length)
        try:
            array = np.array(value)  # numbers only give an int or float array of one dimension
        except (ValueError, TypeError, OverflowError):
            array = None
        if array is None or array.ndim != 1 or array.dtype.kind not in "fi":
            raise self.fail(name, "expected a list of numbers")
        return array.astype(np.float64, copy=False)

    def ranges(self, name: str) -> tuple[tuple[int, int], ...]:
        """Inclusive status ranges, ``[[low, high], ...]``."""
        value = self.items(name, None)
        if not all(
            type(pair) is list and len(pair) == 2 and type(pair[0]) is int and type(pair[1]) is int
            for pair in value
        ):
            raise self.fail(name, "expected a list of [integer, integer] pairs")
        return tuple((low, high) for low, high in value)

    def counts(self, name: str) -> dict[int, int]:
        """An int -> int mapping written as ``[[key, count], ...]``."""
        return dict(self.ranges(name))

    def model(self, name: str, model: type[M]) -> M:
        """A pydantic model, validated again."""
        return self._validate(name, model, self.raw(name))

    def models(self, name: str, model: type[M]) -> list[M]:
        """A list of pydantic models, each validated again."""
        items = self.items(name, None)
        return [self._validate(f"{name}.{i}", model, item) for i, item in enumerate(items)]

    def _validate(self, name: str, model: type[M], value: Any) -> M:
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            where, problem = field_errors(exc)[0]
            raise self.fail(f"{name}.{where}" if where else name, problem) from None

    def child(self, name: str) -> Reader:
        """The nested object ``name``."""
        return Reader(self.raw(name), f"{self.path}.{name}")

    def children(self, name: str, length: int | None = None) -> list[Reader]:
        """The list of objects ``name``."""
        return [
            Reader(item, f"{self.path}.{name}.{index}")
            for index, item in enumerate(self.items(name, length))
        ]

    def fields(self) -> list[str]:
        """The names in this object (for mappings with string keys)."""
        return list(self.state)


def reader(state: State | Reader, path: str) -> Reader:
    """``state`` to read from; a :class:`Reader` passed down by a parent keeps its path."""
    return state if isinstance(state, Reader) else Reader(state, path)
