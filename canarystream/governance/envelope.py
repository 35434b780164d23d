"""The signed envelope of replay files: a message's exact bytes with who signed them.

On the broker, a signed announcement or command carries its principal and signature in Kafka
headers (:mod:`canarystream.contracts.authn`). A JSON Lines recording keeps them in one line
around the message's exact value::

    {"type": "signed", "principal": "alice", "signature": "ed25519:...",
     "payload": "{\\"type\\":\\"deployment_approved\\",...}"}

``payload`` is the message value as text (UTF-8, as produced, not re-encoded), so the
signature verifies over ``payload.encode()`` exactly as over the Kafka message. A recorder
writes :func:`recorded_line` for each consumed message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from canarystream.contracts.authn import message_credentials
from canarystream.errors import ContractError

__all__ = ["ENVELOPE", "is_envelope", "open_envelope", "recorded_line"]

ENVELOPE = "signed"
"""The ``type`` of an envelope line."""
_FIELDS = frozenset({"type", "principal", "signature", "payload"})


def is_envelope(value: Any) -> bool:
    """Whether a decoded line is an envelope (judged by its type alone)."""
    return type(value) is dict and value.get("type") == ENVELOPE


def open_envelope(value: dict[str, Any]) -> tuple[bytes, str, str]:
    """An envelope's payload bytes, principal and signature; ContractError if malformed."""
    if set(value) != _FIELDS or not all(type(value[f]) is str for f in _FIELDS):
        raise ContractError(
            "a signed envelope has exactly the string fields type, principal, signature and "
            "payload",
            reason="invalid_envelope",
        )
    try:
        payload = value["payload"].encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escaped in the JSON text
        raise ContractError(
            f"envelope payload is not UTF-8 text: {exc}", reason="invalid_envelope"
        ) from None
    return payload, value["principal"], value["signature"]


def recorded_line(value: bytes, headers: Iterable[tuple[str, bytes | None]] | None) -> bytes:
    """The replay line of a consumed message: an envelope when it came signed, else its value.

    A value that is not UTF-8 cannot be enveloped and is recorded as it is.
    """
    principal, signature = message_credentials(headers)
    if principal is None and signature is None:
        return value
    try:
        payload = value.decode("utf-8")
    except UnicodeDecodeError:
        return value
    return orjson.dumps(
        {
            "type": ENVELOPE,
            "principal": principal or "",
            "signature": signature or "",
            "payload": payload,
        }
    )
