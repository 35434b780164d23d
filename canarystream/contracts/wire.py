"""A request event decoded and checked in one pass, in C: the hot path's form of a request.

:class:`~canarystream.contracts.events.RequestSample` (pydantic) stays the contract and the
schema's source. :class:`WireRequest` mirrors it as a ``msgspec`` struct, so a line or message
holding one plain request is parsed and validated together, with no dict built and no field
checked again in Python. A property test holds the two to agreement: whatever
:func:`decode_request` accepts, the contract accepts with the same fields.

The mirror is stricter in one way only: an object with a field the contract does not name is
not decoded here (the general path takes it, as it takes every other event).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from canarystream.contracts.events import MAX_LATENCY_MS, MAX_TS, MIN_TS

__all__ = ["MESSAGE_DECODER", "REQUEST_DECODER", "WireRequest", "decode_request"]

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class WireRequest(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One valid request event (see ``RequestSample`` for the meaning of each field)."""

    type: Literal["request"]  # required: a struct's tag would let an object leave it out
    ts: Annotated[float, msgspec.Meta(ge=MIN_TS, le=MAX_TS)]
    service: _Name
    version: _Name
    latency_ms: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_LATENCY_MS)]
    status: Annotated[int, msgspec.Meta(ge=100, le=599)]
    instance: _Name | None = None
    endpoint: _Name | None = None
    dependency: _Name | None = None
    zone: _Name | None = None

    def get(self, field: str, default: Any = None) -> Any:
        """A field's value, as ``dict.get`` on the decoded object gives it (an optional field
        left out reads as None)."""
        return getattr(self, field) if field in _FIELDS else default

    def as_event(self) -> dict[str, Any]:
        """The event as the JSON object it came from (absent optional fields left out)."""
        event: dict[str, Any] = {}
        for field in self.__struct_fields__:
            value = getattr(self, field)
            if value is not None:
                event[field] = value
        return event


_FIELDS = frozenset(WireRequest.__struct_fields__)

REQUEST_DECODER = msgspec.json.Decoder(WireRequest)
"""Decodes one JSON request into a :class:`WireRequest`; raises ``msgspec.DecodeError`` on
anything else (loops on the hot path call its ``decode`` directly)."""

MESSAGE_DECODER = msgspec.json.Decoder(WireRequest | list[WireRequest])
"""Decodes a message of one request or an array of requests only; raises on anything else."""


def decode_request(raw: bytes | str) -> WireRequest | None:
    """``raw`` as a valid request, or None if it is anything else (valid or not).

    >>> decode_request(b'{"type":"request","ts":1.79e9,"service":"s","version":"v",'
    ...                b'"latency_ms":12.5,"status":200}').status
    200
    >>> decode_request(b'{"type":"request","ts":1.79e9,"service":"s","version":"v",'
    ...                b'"latency_ms":12.5,"status":200.0}') is None
    True
    """
    try:
        return REQUEST_DECODER.decode(raw)
    except msgspec.DecodeError:  # ValidationError included
        return None
