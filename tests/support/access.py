"""Principals, keys and access files for tests: sign messages as someone, grant them things.

>>> alice = principal("alice")
>>> access = access_of([alice], [grant([alice], ["abort"])])
>>> access.allows("alice", "abort", "checkout")
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from canarystream.contracts.authn import signed_headers
from canarystream.contracts.signing import Signer, generate_ed25519_key
from canarystream.governance.access import Access, access_from_mapping
from canarystream.governance.identity import Origin, authenticate

__all__ = [
    "Principal",
    "access_document",
    "access_of",
    "envelope",
    "grant",
    "origin_of",
    "principal",
    "write_access",
]


@dataclass(frozen=True)
class Principal:
    """A principal with a fresh Ed25519 key pair."""

    name: str
    private_pem: bytes
    public_pem: bytes

    @property
    def signer(self) -> Signer:
        return Signer.ed25519(self.private_pem)

    def headers(self, value: bytes) -> list[tuple[str, bytes]]:
        """The Kafka headers that sign ``value`` as this principal."""
        return signed_headers(self.signer, self.name, value)

    def sign(self, value: bytes) -> str:
        return self.signer.sign(value)


def principal(name: str) -> Principal:
    """A principal named ``name`` with a new key pair."""
    private_pem, public_pem = generate_ed25519_key()
    return Principal(name, private_pem, public_pem)


def grant(
    who: Iterable[Principal | str],
    actions: Iterable[str],
    services: Iterable[str] = ("*",),
    *,
    policies: Iterable[str] = ("*",),
    inline: bool = False,
) -> dict[str, Any]:
    """One grant of an access document (any named policy unless ``policies`` says)."""
    return {
        "principals": [w if isinstance(w, str) else w.name for w in who],
        "actions": list(actions),
        "services": list(services),
        "policies": list(policies),
        "inline_policies": inline,
    }


def access_document(
    principals: Iterable[Principal], grants: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    """An access document listing ``principals`` (inline PEM keys) and ``grants``."""
    return {
        "version": 1,
        "principals": {p.name: {"public_key": p.public_pem.decode()} for p in principals},
        "grants": list(grants),
    }


def access_of(principals: Iterable[Principal], grants: Iterable[dict[str, Any]]) -> Access:
    """The loaded :class:`Access` of :func:`access_document`."""
    return access_from_mapping(access_document(principals, grants))


def write_access(
    path: Path, principals: Iterable[Principal], grants: Iterable[dict[str, Any]]
) -> Path:
    """Write :func:`access_document` as YAML to ``path``; return it."""
    path.write_text(yaml.safe_dump(access_document(principals, grants), sort_keys=False))
    return path


def origin_of(access: Access, who: Principal | None, value: bytes) -> Origin:
    """The origin authentication gives ``value`` signed by ``who`` (None: unsigned)."""
    if who is None:
        return authenticate(access, None, None, value)
    return authenticate(access, who.name, who.sign(value), value)


def envelope(who: Principal, value: bytes) -> bytes:
    """A replay file's signed envelope line around the exact bytes ``value``."""
    return orjson.dumps(
        {
            "type": "signed",
            "principal": who.name,
            "signature": who.sign(value),
            "payload": value.decode("utf-8"),
        }
    )
