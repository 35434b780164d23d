"""Authentication: which principal, if any, signed a message's exact bytes.

Pure (no I/O, no clock): the caller hands over the bytes as they were produced and the
credentials they came with (Kafka headers live, an envelope line in replay), and gets an
:class:`Origin`. Authentication happens where the bytes are known, the worker's processor and
the replay reader; what an authenticated principal may do is decided later, against rollout
state, by :func:`canarystream.governance.rules.authorize`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from canarystream.contracts.authn import message_credentials
from canarystream.governance.access import Access

__all__ = ["Origin", "authenticate", "authenticate_headers"]


@dataclass(frozen=True, slots=True)
class Origin:
    """Who sent one message: the authenticated principal, or why none could be."""

    sha256: str  # hex SHA-256 of the exact message bytes
    principal: str | None  # None: not authenticated (see problem)
    problem: str | None = None  # why not, for the dead letter's detail


def authenticate(
    access: Access, principal: str | None, signature: str | None, value: bytes
) -> Origin:
    """Check that ``principal``'s key made ``signature`` over ``value``.

    Unsigned, an unknown principal and a bad signature all give an origin without principal.
    """
    digest = hashlib.sha256(value).hexdigest()
    if principal is None and signature is None:
        return Origin(digest, None, "unsigned: no principal and signature")
    if principal is None or signature is None:
        missing = "principal" if principal is None else "signature"
        return Origin(digest, None, f"unsigned: no single {missing} (absent or repeated)")
    verifier = access.verifier(principal)
    if verifier is None:
        return Origin(digest, None, f"unknown principal {principal[:100]!r}")
    if not verifier.verify(value, signature):
        return Origin(digest, None, f"bad signature for principal {principal!r}")
    return Origin(digest, principal)


def authenticate_headers(
    access: Access, headers: Iterable[tuple[str, bytes | None]] | None, value: bytes
) -> Origin:
    """:func:`authenticate` with the credentials of a Kafka message's headers."""
    principal, signature = message_credentials(headers)
    return authenticate(access, principal, signature, value)
