"""Reading OTLP attributes (``KeyValue`` lists) by semantic-convention name."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["Attributes", "attributes"]

_MAX_NAME = 256  # the contract's longest name


class Attributes:
    """An attribute list as a lookup; the first of a repeated key wins."""

    __slots__ = ("_values",)

    def __init__(self, pairs: Iterable[KeyValue]) -> None:
        self._values: dict[str, AnyValue] = {}
        for pair in pairs:
            self._values.setdefault(pair.key, pair.value)

    def name(self, key: str) -> str | None:
        """A string attribute that fits the contract's names (1 to 256 characters), else None."""
        value = self._values.get(key)
        if value is None or value.WhichOneof("value") != "string_value":
            return None
        text = value.string_value
        return text if 0 < len(text) <= _MAX_NAME else None

    def integer(self, key: str) -> int | None:
        """An integer attribute (or a string of decimal digits, as some SDKs send), else None.

        Present but not an integer: ``-1``, which no range of the contract accepts.
        """
        value = self._values.get(key)
        if value is None:
            return None
        kind = value.WhichOneof("value")
        if kind == "int_value":
            return value.int_value
        text = value.string_value
        if kind == "string_value" and text.isascii() and text.isdecimal() and len(text) <= 6:
            return int(text)
        return -1

    def first_name(self, *keys: str) -> str | None:
        """The first of ``keys`` that is a usable name."""
        for key in keys:
            if (found := self.name(key)) is not None:
                return found
        return None


def attributes(pairs: Iterable[KeyValue]) -> Attributes:
    """Shorthand for :class:`Attributes`."""
    return Attributes(pairs)
