"""Signatures on decisions, so that actuators act only on what the engine decided.

The signed bytes are the decision's canonical form (:func:`canonical_bytes`): its JSON dump,
keys sorted, without any ``signature`` field. The signature travels beside the decision (an
envelope field or a Kafka header) as ``"<scheme>:<value>"``:

* ``hmac-sha256:<hex>`` -- a key shared by the engine and the actuators;
* ``ed25519:<base64>`` -- the engine holds the private key, actuators only the public one,
  so a compromised actuator cannot forge decisions (needs the ``cryptography`` package).

>>> signer = Signer.hmac(b"k")
>>> signature = signer.sign(b"payload")
>>> signature.startswith("hmac-sha256:")
True
>>> verifier = Verifier(hmac_keys=[b"k"])
>>> verifier.verify(b"payload", signature), verifier.verify(b"payl0ad", signature)
(True, False)
>>> verifier.check(b"payload", None)
'unsigned'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

import orjson

from canarystream.contracts.decision import Decision
from canarystream.errors import ConfigError

__all__ = [
    "ED25519",
    "HMAC_SHA256",
    "SIGNATURE_HEADER",
    "Signer",
    "Verifier",
    "canonical_bytes",
    "generate_ed25519_key",
]

SIGNATURE_HEADER = "canarystream-signature"  # Kafka header of a decision message
HMAC_SHA256 = "hmac-sha256"
ED25519 = "ed25519"


def canonical_bytes(decision: Decision) -> bytes:
    """The bytes that are signed: the decision as JSON with sorted keys, signature excluded."""
    data = decision.model_dump(mode="json")
    data.pop("signature", None)
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def _as_bytes(key: bytes | str) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError("ed25519 signatures need the 'cryptography' package") from exc
    return ed25519, serialization


def _ed25519_private(key: bytes | str) -> Any:
    """A private key from PEM, 32 raw bytes, or base64 of the raw bytes."""
    ed25519, serialization = _crypto()
    raw = _as_bytes(key)
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            loaded = serialization.load_pem_private_key(raw, password=None)
            if not isinstance(loaded, ed25519.Ed25519PrivateKey):
                raise ConfigError("signing key: the PEM key is not an Ed25519 private key")
            return loaded
        if len(raw) != 32:
            raw = base64.b64decode(raw, validate=True)
        return ed25519.Ed25519PrivateKey.from_private_bytes(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"signing key: not an Ed25519 private key: {exc}") from exc


def _ed25519_public(key: bytes | str) -> Any:
    """A public key from PEM, 32 raw bytes, or base64 of the raw bytes."""
    ed25519, serialization = _crypto()
    raw = _as_bytes(key)
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            loaded = serialization.load_pem_public_key(raw)
            if not isinstance(loaded, ed25519.Ed25519PublicKey):
                raise ConfigError("verify key: the PEM key is not an Ed25519 public key")
            return loaded
        if len(raw) != 32:
            raw = base64.b64decode(raw, validate=True)
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"verify key: not an Ed25519 public key: {exc}") from exc


def generate_ed25519_key() -> tuple[bytes, bytes]:
    """A fresh ``(private_pem, public_pem)`` Ed25519 key pair."""
    ed25519, serialization = _crypto()
    private = ed25519.Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


class Signer:
    """Signs payloads with one key of one scheme; build it with :meth:`hmac`,
    :meth:`ed25519` or :meth:`from_settings`."""

    def __init__(self, scheme: str, key: Any) -> None:
        if scheme not in (HMAC_SHA256, ED25519):
            raise ConfigError(f"signing scheme: unknown {scheme!r} (hmac-sha256 or ed25519)")
        self.scheme = scheme
        self._key = key

    @classmethod
    def hmac(cls, key: bytes | str) -> Signer:
        """An HMAC-SHA256 signer with a shared secret (a str is taken as UTF-8)."""
        secret = _as_bytes(key)
        if not secret:
            raise ConfigError("signing key: an HMAC key must not be empty")
        return cls(HMAC_SHA256, secret)

    @classmethod
    def ed25519(cls, private_key: bytes | str) -> Signer:
        """An Ed25519 signer from a private key (PEM, raw 32 bytes or their base64)."""
        return cls(ED25519, _ed25519_private(private_key))

    @classmethod
    def from_settings(cls, scheme: str, key: bytes | str) -> Signer:
        """A signer from a scheme name and a key as settings hold them."""
        if scheme == HMAC_SHA256:
            return cls.hmac(key)
        if scheme == ED25519:
            return cls.ed25519(key)
        raise ConfigError(f"signing scheme: unknown {scheme!r} (hmac-sha256 or ed25519)")

    def sign(self, payload: bytes) -> str:
        """The signature of ``payload`` as ``"<scheme>:<value>"``."""
        if self.scheme == HMAC_SHA256:
            return f"{HMAC_SHA256}:{hmac.new(self._key, payload, hashlib.sha256).hexdigest()}"
        value = base64.b64encode(self._key.sign(payload)).decode("ascii")
        return f"{ED25519}:{value}"

    def sign_decision(self, decision: Decision) -> str:
        """The signature of a decision's canonical bytes."""
        return self.sign(canonical_bytes(decision))

    def verifier(self) -> Verifier:
        """A verifier that accepts this signer's signatures."""
        if self.scheme == HMAC_SHA256:
            return Verifier(hmac_keys=[self._key])
        return Verifier(ed25519_keys=[self._key.public_key()])


class Verifier:
    """Checks signatures against trusted keys; several keys per scheme allow rotation.

    A scheme without keys accepts nothing: a verifier for HMAC rejects every Ed25519
    signature, and one with no keys at all rejects everything.
    """

    def __init__(
        self, *, hmac_keys: Iterable[bytes | str] = (), ed25519_keys: Iterable[Any] = ()
    ) -> None:
        self._hmac_keys = [_as_bytes(key) for key in hmac_keys]
        if any(not key for key in self._hmac_keys):
            raise ConfigError("verify key: an HMAC key must not be empty")
        self._ed25519_keys = [
            key if hasattr(key, "verify") else _ed25519_public(key) for key in ed25519_keys
        ]

    @classmethod
    def from_settings(cls, scheme: str, keys: Iterable[bytes | str]) -> Verifier:
        """A verifier from a scheme name and its trusted keys as settings hold them
        (for ed25519, public keys)."""
        if scheme == HMAC_SHA256:
            return cls(hmac_keys=keys)
        if scheme == ED25519:
            return cls(ed25519_keys=keys)
        raise ConfigError(f"signing scheme: unknown {scheme!r} (hmac-sha256 or ed25519)")

    def check(self, payload: bytes, signature: str | bytes | None) -> str | None:
        """None when the signature is valid, else why not: ``unsigned`` or ``bad_signature``."""
        if not signature:
            return "unsigned"
        if isinstance(signature, bytes):
            try:
                signature = signature.decode("ascii")
            except UnicodeDecodeError:
                return "bad_signature"
        scheme, _, value = signature.partition(":")
        if scheme == HMAC_SHA256:
            ok = self._check_hmac(payload, value)
        elif scheme == ED25519:
            ok = self._check_ed25519(payload, value)
        else:
            ok = False
        return None if ok else "bad_signature"

    def verify(self, payload: bytes, signature: str | bytes | None) -> bool:
        """Whether ``signature`` is a valid signature of ``payload`` by a trusted key."""
        return self.check(payload, signature) is None

    def verify_decision(self, decision: Decision, signature: str | bytes | None) -> bool:
        """Whether ``signature`` signs the decision's canonical bytes."""
        return self.verify(canonical_bytes(decision), signature)

    def _check_hmac(self, payload: bytes, value: str) -> bool:
        given = value.lower().encode("ascii", "replace")
        ok = False
        for key in self._hmac_keys:
            expected = hmac.new(key, payload, hashlib.sha256).hexdigest().encode("ascii")
            # Every key is tried, so timing does not tell which one matched.
            ok |= hmac.compare_digest(expected, given)
        return ok

    def _check_ed25519(self, payload: bytes, value: str) -> bool:
        if not self._ed25519_keys:
            return False
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

        for key in self._ed25519_keys:
            try:
                key.verify(raw, payload)
            except InvalidSignature:
                continue
            return True
        return False
