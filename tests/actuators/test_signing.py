"""Signatures on decisions: round trips, and every way a decision can fail to verify."""

from __future__ import annotations

import base64

import pytest

from canarystream.contracts.decision import Action, Decision
from canarystream.contracts.signing import (
    Signer,
    Verifier,
    canonical_bytes,
    generate_ed25519_key,
)
from canarystream.errors import ConfigError
from tests.support.actuators import make_decision
from tests.support.services import require_module


def test_canonical_bytes_survive_a_json_round_trip() -> None:
    decision = make_decision(3, traffic_percent=12.5)
    again = Decision.model_validate_json(decision.model_dump_json())
    assert canonical_bytes(again) == canonical_bytes(decision)
    assert canonical_bytes(decision).startswith(b'{"action":"advance"')  # sorted keys


def test_hmac_round_trip() -> None:
    decision = make_decision(1)
    signer = Signer.hmac(b"shared secret")
    signature = signer.sign_decision(decision)
    assert signature.startswith("hmac-sha256:") and len(signature) == len("hmac-sha256:") + 64
    verifier = Verifier(hmac_keys=[b"shared secret"])
    assert verifier.verify_decision(decision, signature)
    assert verifier.verify_decision(decision, signature.encode())  # as a Kafka header value
    assert signer.verifier().verify_decision(decision, signature)


def test_tampered_decision_is_rejected() -> None:
    decision = make_decision(1, traffic_percent=10.0)
    signature = Signer.hmac(b"k").sign_decision(decision)
    tampered = decision.model_copy(update={"traffic_percent": 100.0, "action": Action.PROMOTE})
    verifier = Verifier(hmac_keys=[b"k"])
    assert not verifier.verify_decision(tampered, signature)
    assert verifier.check(canonical_bytes(tampered), signature) == "bad_signature"


@pytest.mark.parametrize("signature", [None, "", b""])
def test_unsigned_is_rejected(signature: str | bytes | None) -> None:
    verifier = Verifier(hmac_keys=[b"k"])
    assert verifier.check(b"payload", signature) == "unsigned"
    assert not verifier.verify(b"payload", signature)


@pytest.mark.parametrize(
    "signature",
    [
        "hmac-sha256:" + "0" * 64,  # well-formed, wrong
        "hmac-sha256:not hex",
        "hmac-sha256:",
        "sha1:abcdef",  # unknown scheme
        "no scheme at all",
        "ed25519:" + base64.b64encode(b"x" * 64).decode(),  # scheme with no trusted key
        b"\xff\xfe",
    ],
)
def test_forged_or_malformed_is_rejected(signature: str | bytes) -> None:
    assert Verifier(hmac_keys=[b"k"]).check(b"payload", signature) == "bad_signature"


def test_a_signature_by_another_key_is_rejected() -> None:
    signature = Signer.hmac(b"attacker").sign(b"payload")
    assert not Verifier(hmac_keys=[b"k"]).verify(b"payload", signature)
    assert not Verifier().verify(b"payload", signature)  # no keys: nothing is trusted


def test_key_rotation_accepts_either_key() -> None:
    verifier = Verifier(hmac_keys=["old", "new"])  # str keys are UTF-8
    assert verifier.verify(b"p", Signer.hmac(b"old").sign(b"p"))
    assert verifier.verify(b"p", Signer.hmac("new").sign(b"p"))
    assert not verifier.verify(b"p", Signer.hmac(b"other").sign(b"p"))


def test_settings_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="unknown 'rsa'"):
        Signer.from_settings("rsa", "k")
    with pytest.raises(ConfigError, match="unknown 'rsa'"):
        Verifier.from_settings("rsa", ["k"])
    with pytest.raises(ConfigError, match="must not be empty"):
        Signer.hmac(b"")
    with pytest.raises(ConfigError, match="must not be empty"):
        Verifier(hmac_keys=[""])
    assert Signer.from_settings("hmac-sha256", "k").scheme == "hmac-sha256"


def test_ed25519_round_trip_with_pem_keys() -> None:
    require_module("cryptography")
    private_pem, public_pem = generate_ed25519_key()
    decision = make_decision(2, Action.ROLLBACK, 0.0)
    signature = Signer.ed25519(private_pem).sign_decision(decision)
    assert signature.startswith("ed25519:")
    verifier = Verifier.from_settings("ed25519", [public_pem])
    assert verifier.verify_decision(decision, signature)
    assert not verifier.verify_decision(decision.model_copy(update={"seq": 3}), signature)
    assert Verifier(hmac_keys=[b"k"]).check(canonical_bytes(decision), signature) == (
        "bad_signature"
    )


def test_ed25519_raw_and_base64_keys_and_wrong_key() -> None:
    require_module("cryptography")
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415

    raw = serialization.Encoding.Raw
    key = ed25519.Ed25519PrivateKey.generate()
    private_raw = key.private_bytes(
        raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public_raw = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    signer = Signer.from_settings("ed25519", base64.b64encode(private_raw).decode())
    signature = signer.sign(b"payload")
    assert Verifier(ed25519_keys=[public_raw]).verify(b"payload", signature)
    assert Verifier(ed25519_keys=[base64.b64encode(public_raw)]).verify(b"payload", signature)
    assert signer.verifier().verify(b"payload", signature)
    _, other_public = generate_ed25519_key()
    assert not Verifier(ed25519_keys=[other_public]).verify(b"payload", signature)
    assert Verifier(ed25519_keys=[other_public, public_raw]).verify(b"payload", signature)
    assert not Verifier(ed25519_keys=[public_raw]).verify(b"payload", "ed25519:%%%")


def test_ed25519_bad_keys_are_config_errors() -> None:
    require_module("cryptography")
    with pytest.raises(ConfigError, match="not an Ed25519 private key"):
        Signer.ed25519(b"short")
    with pytest.raises(ConfigError, match="not an Ed25519 public key"):
        Verifier(ed25519_keys=[b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"])
