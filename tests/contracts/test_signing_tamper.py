"""Signed decisions against tampering, for both schemes: every signed field, every character of
the signature and of the message, truncation, extension, wrong schemes, and a compare that
looks at the whole value.

The HMAC scheme compares hex digests; the Ed25519 one base64 of 64 raw bytes, whose last
data character carries 2 unused bits: a flip there that leaves the decoded bytes unchanged
names the same signature and is accepted (the signed bytes are what counts, never the text).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import string
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from canarystream.contracts import signing
from canarystream.contracts.decision import Action, CheckReason, Decision, Phase, Verdict
from canarystream.contracts.events import CompensationHook
from canarystream.contracts.signing import (
    ED25519,
    HMAC_SHA256,
    Signer,
    Verifier,
    canonical_bytes,
    generate_ed25519_key,
)
from canarystream.errors import ConfigError
from canarystream.security import actuator_verifier, worker_signer

HMAC_KEY = b"a shared secret of the worker and the actuators"
PRIVATE_PEM, PUBLIC_PEM = generate_ed25519_key()
HEX = "0123456789abcdef"
B64 = string.ascii_letters + string.digits + "+/"


def full_decision() -> Decision:
    """A decision with every field set away from its default, so each one is signed."""
    return Decision(
        decision_id="5f0c6c1e-2f8e-5d43-9a55-6d1b3c2b0a11",
        deployment="checkout-42",
        service="checkout",
        seq=7,
        action=Action.ROLLBACK,
        ts=1_790_000_120.0,
        stage=2,
        traffic_percent=25.0,
        phase=Phase.ROLLED_BACK,
        baseline_version="v1",
        canary_version="v2",
        policy="default",
        summary="critical regression: error_rate",
        reasons=[
            CheckReason(
                check="error_rate",
                kind="error_rate",
                verdict=Verdict.FAIL,
                critical=True,
                canary_samples=4_000,
                baseline_samples=40_000,
                estimate=3.1,
                lower=2.2,
                upper=4.4,
                e_value=125.0,
                threshold=120.0,
                tolerance=1.1,
                advance_tolerance=1.5,
                ruled_out=4.4,
                more_samples=1_200,
                message="rate canary 0.031 vs baseline 0.01",
            )
        ],
        page=True,
        compensation=[CompensationHook(name="drain-queue", command=["drain", "--all"])],
    )


# A different valid value for every field of a decision: a new field fails the completeness
# test below until it is listed here (and so shown to be signed).
DECISION_TAMPERS: dict[str, Any] = {
    "type": "decisionx",
    "decision_id": "5f0c6c1e-2f8e-5d43-9a55-6d1b3c2b0a12",
    "deployment": "checkout-43",
    "service": "payments",
    "seq": 8,
    "action": Action.PROMOTE,
    "ts": 1_790_000_125.0,
    "stage": 3,
    "traffic_percent": 100.0,
    "phase": Phase.PROMOTED,
    "baseline_version": "v0",
    "canary_version": "v3",
    "policy": "lenient",
    "summary": "no harm shown",
    "reasons": [],
    "page": False,
    "compensation": [],
}

REASON_TAMPERS: dict[str, Any] = {
    "check": "latency-p99",
    "kind": "latency",
    "verdict": Verdict.PASS,
    "critical": False,
    "canary_samples": 4_001,
    "baseline_samples": 40_001,
    "estimate": 1.0,
    "lower": 0.5,
    "upper": 1.05,
    "e_value": 1.0,
    "threshold": 40.0,
    "tolerance": 2.0,
    "advance_tolerance": 3.0,
    "ruled_out": 1.3,
    "more_samples": 0,
    "risk": "waived",
    "message": "fine",
}

HOOK_TAMPERS: dict[str, Any] = {
    "name": "purge-cache",
    "command": ["drain", "--none"],
    "url": "https://hooks.example/undo",
    "timeout_seconds": 5.0,
}


def signer_for(scheme: str) -> Signer:
    return Signer.hmac(HMAC_KEY) if scheme == HMAC_SHA256 else Signer.ed25519(PRIVATE_PEM)


def verifier_for(scheme: str) -> Verifier:
    if scheme == HMAC_SHA256:
        return Verifier(hmac_keys=[HMAC_KEY])
    return Verifier(ed25519_keys=[PUBLIC_PEM])


SCHEMES = pytest.mark.parametrize("scheme", [HMAC_SHA256, ED25519])


def other_char(alphabet: str, char: str) -> str:
    """A character of ``alphabet`` other than ``char`` (the next one, cyclically)."""
    return alphabet[(alphabet.index(char) + 1) % len(alphabet)]


def decoded(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


# ------------------------------------------------------------------ every signed field


def test_every_decision_field_has_a_tampered_value() -> None:
    assert set(DECISION_TAMPERS) == set(Decision.model_fields)
    assert set(REASON_TAMPERS) == set(CheckReason.model_fields)
    assert set(HOOK_TAMPERS) == set(CompensationHook.model_fields)


def _tampered(decision: Decision, field: str, value: Any) -> Decision:
    assert getattr(decision, field) != value, field
    return decision.model_copy(update={field: value})


def _tampered_reason(decision: Decision, field: str, value: Any) -> Decision:
    (reason,) = decision.reasons
    assert getattr(reason, field) != value, field
    return decision.model_copy(update={"reasons": [reason.model_copy(update={field: value})]})


def _tampered_hook(decision: Decision, field: str, value: Any) -> Decision:
    (hook,) = decision.compensation
    assert getattr(hook, field) != value, field
    return decision.model_copy(update={"compensation": [hook.model_copy(update={field: value})]})


TAMPERED: list[tuple[str, Callable[[Decision], Decision]]] = [
    *((f, lambda d, f=f, v=v: _tampered(d, f, v)) for f, v in DECISION_TAMPERS.items()),
    *(
        (f"reasons.0.{f}", lambda d, f=f, v=v: _tampered_reason(d, f, v))
        for f, v in REASON_TAMPERS.items()
    ),
    *(
        (f"compensation.0.{f}", lambda d, f=f, v=v: _tampered_hook(d, f, v))
        for f, v in HOOK_TAMPERS.items()
    ),
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # "type" is serialised off its Literal
@pytest.mark.parametrize(("field", "tamper"), TAMPERED, ids=[name for name, _ in TAMPERED])
def test_each_field_tampered_alone_changes_the_signed_bytes(
    field: str, tamper: Callable[[Decision], Decision]
) -> None:
    decision = full_decision()
    changed = tamper(decision)
    assert canonical_bytes(changed) != canonical_bytes(decision), field


@pytest.mark.filterwarnings("ignore::UserWarning")
@SCHEMES
@pytest.mark.parametrize(("field", "tamper"), TAMPERED, ids=[name for name, _ in TAMPERED])
def test_each_field_tampered_alone_breaks_the_signature(
    scheme: str, field: str, tamper: Callable[[Decision], Decision]
) -> None:
    decision = full_decision()
    signature = signer_for(scheme).sign_decision(decision)
    verifier = verifier_for(scheme)
    assert verifier.verify_decision(decision, signature)
    assert not verifier.verify_decision(tamper(decision), signature), field
    assert verifier.check(canonical_bytes(tamper(decision)), signature) == "bad_signature"


def test_traffic_percent_is_in_the_signed_bytes() -> None:
    decision = full_decision()
    signed = canonical_bytes(decision)
    assert b'"traffic_percent":25.0' in signed
    assert b'"traffic_percent":50.0' in canonical_bytes(
        decision.model_copy(update={"traffic_percent": 50.0})
    )


def test_canonical_bytes_are_the_sorted_json_of_every_field() -> None:
    import orjson  # noqa: PLC0415

    decision = full_decision()
    signed = canonical_bytes(decision)
    assert orjson.loads(signed) == decision.model_dump(mode="json")
    assert signed == orjson.dumps(decision.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    assert list(orjson.loads(signed)) == sorted(Decision.model_fields)


# ------------------------------------------------------- one character of the signature


@SCHEMES
def test_one_character_flipped_anywhere_in_the_signature_is_rejected(scheme: str) -> None:
    payload = canonical_bytes(full_decision())
    signature = signer_for(scheme).sign(payload)
    verifier = verifier_for(scheme)
    prefix, value = signature.split(":", 1)
    alphabet = HEX if scheme == HMAC_SHA256 else B64 + "="
    accepted = []
    for index, char in enumerate(value):
        for replacement in (other_char(alphabet, char), "!" if char != "!" else "?"):
            forged = f"{prefix}:{value[:index]}{replacement}{value[index + 1 :]}"
            if verifier.check(payload, forged) is None:
                accepted.append((index, replacement))
                # Only a base64 spelling of the very same 64 bytes may pass.
                assert scheme == ED25519
                assert decoded(forged.split(":", 1)[1]) == decoded(value)
    assert len(accepted) <= 1, accepted


@SCHEMES
def test_one_character_flipped_in_the_scheme_prefix_is_rejected(scheme: str) -> None:
    payload = canonical_bytes(full_decision())
    signature = signer_for(scheme).sign(payload)
    verifier = verifier_for(scheme)
    colon = signature.index(":")
    for index in range(colon + 1):
        char = signature[index]
        flipped = "x" if char != "x" else "y"
        forged = signature[:index] + flipped + signature[index + 1 :]
        assert verifier.check(payload, forged) == "bad_signature", forged


# --------------------------------------------------------- one character of the message


@SCHEMES
def test_one_byte_flipped_anywhere_in_the_message_is_rejected(scheme: str) -> None:
    payload = canonical_bytes(full_decision())
    signature = signer_for(scheme).sign(payload)
    verifier = verifier_for(scheme)
    for index in range(len(payload)):
        forged = bytearray(payload)
        forged[index] ^= 0x01
        assert not verifier.verify(bytes(forged), signature), index
    assert not verifier.verify(payload + b" ", signature)
    assert not verifier.verify(payload[:-1], signature)
    assert not verifier.verify(b"", signature)
    assert verifier.verify(payload, signature)


# ------------------------------------------------------------ truncated and extended


@SCHEMES
def test_every_truncation_of_the_signature_is_rejected(scheme: str) -> None:
    payload = canonical_bytes(full_decision())
    signature = signer_for(scheme).sign(payload)
    verifier = verifier_for(scheme)
    for length in range(len(signature)):
        expected = "unsigned" if length == 0 else "bad_signature"
        assert verifier.check(payload, signature[:length]) == expected, length
        assert verifier.check(payload, signature[:length].encode()) == expected, length


@SCHEMES
@pytest.mark.parametrize("tail", ["0", "00", "a", "=", "==", "AAAA", " ", "\n", "\x00", ":"])
def test_an_extended_signature_is_rejected(scheme: str, tail: str) -> None:
    payload = canonical_bytes(full_decision())
    signature = signer_for(scheme).sign(payload)
    assert verifier_for(scheme).check(payload, signature + tail) == "bad_signature"


def test_an_hmac_value_doubled_is_rejected() -> None:
    signature = Signer.hmac(HMAC_KEY).sign(b"payload")
    value = signature.split(":", 1)[1]
    assert not Verifier(hmac_keys=[HMAC_KEY]).verify(b"payload", signature + value)


# ------------------------------------------------------------------- schemes and empties


@pytest.mark.parametrize(
    "prefix", ["ed25519", "HMAC-SHA256", "hmac-sha256 ", " hmac-sha256", "hmac", "sha256", ""]
)
def test_an_hmac_value_under_another_prefix_is_rejected(prefix: str) -> None:
    signature = Signer.hmac(HMAC_KEY).sign(b"payload")
    value = signature.split(":", 1)[1]
    verifier = Verifier(hmac_keys=[HMAC_KEY], ed25519_keys=[PUBLIC_PEM])
    assert verifier.check(b"payload", f"{prefix}:{value}") == "bad_signature"
    assert verifier.check(b"payload", value) == "bad_signature"  # no prefix at all


@pytest.mark.parametrize("prefix", ["hmac-sha256", "ED25519", "ed25519 ", "ed", ""])
def test_an_ed25519_value_under_another_prefix_is_rejected(prefix: str) -> None:
    signature = Signer.ed25519(PRIVATE_PEM).sign(b"payload")
    value = signature.split(":", 1)[1]
    verifier = Verifier(hmac_keys=[HMAC_KEY], ed25519_keys=[PUBLIC_PEM])
    assert verifier.check(b"payload", f"{prefix}:{value}") == "bad_signature"
    assert verifier.check(b"payload", value) == "bad_signature"


def test_a_verifier_for_both_schemes_accepts_each_by_its_prefix() -> None:
    verifier = Verifier(hmac_keys=[HMAC_KEY], ed25519_keys=[PUBLIC_PEM])
    assert verifier.check(b"p", Signer.hmac(HMAC_KEY).sign(b"p")) is None
    assert verifier.check(b"p", Signer.ed25519(PRIVATE_PEM).sign(b"p")) is None


@SCHEMES
@pytest.mark.parametrize(
    ("signature", "why"),
    [
        (None, "unsigned"),
        ("", "unsigned"),
        (b"", "unsigned"),
        (":", "bad_signature"),
        ("hmac-sha256:", "bad_signature"),
        ("ed25519:", "bad_signature"),
        (b"hmac-sha256:", "bad_signature"),
        (b"\xc3\xa9d25519:AAAA", "bad_signature"),  # not ASCII
    ],
)
def test_empty_and_bare_signatures_are_rejected(
    scheme: str, signature: str | bytes | None, why: str
) -> None:
    assert verifier_for(scheme).check(b"payload", signature) == why
    assert not verifier_for(scheme).verify(b"payload", signature)


def test_an_empty_payload_is_signed_and_checked_like_any_other() -> None:
    signer = Signer.hmac(HMAC_KEY)
    assert Verifier(hmac_keys=[HMAC_KEY]).verify(b"", signer.sign(b""))
    assert not Verifier(hmac_keys=[HMAC_KEY]).verify(b"x", signer.sign(b""))


# --------------------------------------------------------------- the compare, in full


def test_an_hmac_equal_but_for_its_last_hex_character_is_rejected() -> None:
    payload = canonical_bytes(full_decision())
    signature = Signer.hmac(HMAC_KEY).sign(payload)
    prefix, value = signature.split(":", 1)
    assert len(value) == 64
    verifier = Verifier(hmac_keys=[HMAC_KEY])
    for char in HEX:
        if char != value[-1]:
            assert not verifier.verify(payload, f"{prefix}:{value[:63]}{char}")
    assert not verifier.verify(payload, f"{prefix}:{value[:63]}")
    assert not verifier.verify(payload, f"{prefix}:{value[:16]}{'0' * 48}")


def test_the_hmac_is_compared_in_full_and_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    payload = b"payload"
    signature = Signer.hmac(b"new").sign(payload)
    value = signature.split(":", 1)[1]
    verifier = Verifier(hmac_keys=[b"old", b"new", b"newer"])

    assert verifier.verify(payload, signature)
    # Every key is tried, whichever matched, and each compare sees both whole digests.
    assert len(calls) == 3
    assert all(len(a) == 64 and len(b) == 64 for a, b in calls)
    assert value.encode() in [b for _, b in calls]
    assert [a for a, _ in calls] == [
        hmac.new(key, payload, "sha256").hexdigest().encode() for key in (b"old", b"new", b"newer")
    ]

    calls.clear()
    assert not verifier.verify(payload, f"hmac-sha256:{value[:63]}")
    assert len(calls) == 3 and all(b == value[:63].encode() for _, b in calls)


def test_an_uppercase_hmac_is_the_same_signature() -> None:
    signature = Signer.hmac(HMAC_KEY).sign(b"payload")
    prefix, value = signature.split(":", 1)
    assert Verifier(hmac_keys=[HMAC_KEY]).verify(b"payload", f"{prefix}:{value.upper()}")


def test_an_ed25519_signature_equal_but_for_one_byte_is_rejected() -> None:
    payload = canonical_bytes(full_decision())
    signature = Signer.ed25519(PRIVATE_PEM).sign(payload)
    raw = base64.b64decode(signature.split(":", 1)[1])
    verifier = Verifier(ed25519_keys=[PUBLIC_PEM])
    for index in (0, 31, 32, 63):
        forged = bytearray(raw)
        forged[index] ^= 0x80
        text = base64.b64encode(bytes(forged)).decode()
        assert not verifier.verify(payload, f"ed25519:{text}"), index
    assert not verifier.verify(payload, "ed25519:" + base64.b64encode(raw[:63]).decode())
    assert not verifier.verify(payload, "ed25519:" + base64.b64encode(raw + b"\0").decode())


# ------------------------------------------------------------------ keys and settings


def test_ed25519_signatures_are_base64_of_64_bytes_and_hmac_hex_of_32() -> None:
    hmac_value = Signer.hmac(HMAC_KEY).sign(b"p").split(":", 1)[1]
    assert len(bytes.fromhex(hmac_value)) == 32 and hmac_value == hmac_value.lower()
    ed_value = Signer.ed25519(PRIVATE_PEM).sign(b"p").split(":", 1)[1]
    assert len(base64.b64decode(ed_value, validate=True)) == 64


def test_generated_keys_are_pem_of_a_matching_pair() -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415

    assert PRIVATE_PEM.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert PUBLIC_PEM.startswith(b"-----BEGIN PUBLIC KEY-----")
    private = serialization.load_pem_private_key(PRIVATE_PEM, password=None)
    public = serialization.load_pem_public_key(PUBLIC_PEM)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    assert isinstance(public, ed25519.Ed25519PublicKey)
    raw = serialization.Encoding.Raw
    assert private.public_key().public_bytes(raw, serialization.PublicFormat.Raw) == (
        public.public_bytes(raw, serialization.PublicFormat.Raw)
    )
    assert generate_ed25519_key()[0] != PRIVATE_PEM  # fresh each time


def test_keys_of_another_algorithm_are_config_errors() -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ConfigError, match=r"^signing key: the PEM key is not an Ed25519 private"):
        Signer.ed25519(private_pem)
    with pytest.raises(ConfigError, match=r"^verify key: the PEM key is not an Ed25519 public"):
        Verifier(ed25519_keys=[public_pem])
    # Leading blanks before the PEM armour are allowed; a public key is no private key.
    with pytest.raises(ConfigError, match=r"^signing key: not an Ed25519 private key"):
        Signer.ed25519(b"\n  " + PUBLIC_PEM)
    with pytest.raises(ConfigError, match=r"^verify key: not an Ed25519 public key"):
        Verifier(ed25519_keys=[b"\n  " + PRIVATE_PEM])


def test_raw_keys_of_32_bytes_are_taken_as_they_are_and_others_as_base64() -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    raw = serialization.Encoding.Raw
    private = serialization.load_pem_private_key(PRIVATE_PEM, password=None)
    private_raw = private.private_bytes(  # type: ignore[union-attr]
        raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public_raw = private.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    signature = Signer.ed25519(private_raw).sign(b"p")
    assert Verifier(ed25519_keys=[public_raw]).verify(b"p", signature)
    text_key = base64.b64encode(public_raw).decode()  # a str key is UTF-8 base64
    assert Verifier(ed25519_keys=[text_key]).verify(b"p", signature)
    assert Signer.ed25519(base64.b64encode(private_raw).decode()).sign(b"p") == signature
    assert Signer.ed25519("\n" + PRIVATE_PEM.decode()).sign(b"p") == signature
    for bad in (b"A" * 31, b"!" * 44, base64.b64encode(b"x" * 31)):
        with pytest.raises(ConfigError, match=r"^signing key: not an Ed25519 private key: "):
            Signer.ed25519(bad)
        with pytest.raises(ConfigError, match=r"^verify key: not an Ed25519 public key: "):
            Verifier(ed25519_keys=[bad])


def test_signers_and_verifiers_by_scheme() -> None:
    with pytest.raises(ConfigError, match=r"^signing scheme: unknown 'rsa' \(hmac-sha256 or"):
        Signer("rsa", b"k")
    with pytest.raises(ConfigError, match=r"^signing scheme: unknown 'none' \(hmac-sha256 or"):
        Signer.from_settings("none", "k")
    with pytest.raises(ConfigError, match=r"^signing scheme: unknown 'none' \(hmac-sha256 or"):
        Verifier.from_settings("none", ["k"])
    with pytest.raises(ConfigError, match=r"^signing key: an HMAC key must not be empty$"):
        Signer.hmac("")
    with pytest.raises(ConfigError, match=r"^verify key: an HMAC key must not be empty$"):
        Verifier(hmac_keys=[b"k", b""])
    ed = Signer.from_settings(ED25519, PRIVATE_PEM.decode())
    assert ed.scheme == ED25519
    assert ed.verifier().verify(b"p", ed.sign(b"p"))
    assert not ed.verifier().verify(b"p", Signer.hmac(HMAC_KEY).sign(b"p"))
    mac = Signer.from_settings(HMAC_SHA256, "secret")
    assert mac.scheme == HMAC_SHA256
    assert mac.verifier().verify(b"p", Signer.hmac(b"secret").sign(b"p"))
    assert not mac.verifier().verify(b"p", ed.sign(b"p"))
    assert Verifier.from_settings(HMAC_SHA256, ["secret"]).verify(b"p", mac.sign(b"p"))
    assert not Verifier.from_settings(HMAC_SHA256, ["secret"]).verify(b"p", ed.sign(b"p"))
    assert Verifier.from_settings(ED25519, [PUBLIC_PEM]).verify(b"p", ed.sign(b"p"))


def _settings(
    scheme: str, key: str | None, verify: list[str] | None = None, *, insecure: bool = False
) -> Any:
    return SimpleNamespace(
        insecure=insecure,
        signing_scheme=scheme,
        signing_key=None if key is None else SecretStr(key),
        verify_keys=[SecretStr(k) for k in verify or []],
    )


def test_signer_and_verifier_from_settings() -> None:
    assert worker_signer(_settings("none", "k", insecure=True)) is None
    assert actuator_verifier(_settings("none", None, insecure=True)) is None
    with pytest.raises(ConfigError, match=r"CANARYSTREAM_SIGNING_KEY \(signing_key\) is not set"):
        worker_signer(_settings(HMAC_SHA256, None))
    with pytest.raises(ConfigError, match=r"CANARYSTREAM_VERIFY_KEYS \(verify_keys\) is empty"):
        actuator_verifier(_settings(HMAC_SHA256, None))
    with pytest.raises(ConfigError, match=r"CANARYSTREAM_VERIFY_KEYS \(verify_keys\) is empty"):
        actuator_verifier(_settings(ED25519, PRIVATE_PEM.decode()))  # no public key to verify with

    signer = worker_signer(_settings(HMAC_SHA256, "shared"))
    assert signer is not None and signer.scheme == HMAC_SHA256
    signature = signer.sign(b"p")
    # One shared secret serves both ends; listed verify keys replace it.
    shared = actuator_verifier(_settings(HMAC_SHA256, "shared"))
    assert shared is not None and shared.verify(b"p", signature)
    rotated = actuator_verifier(_settings(HMAC_SHA256, "shared", ["next"]))
    assert rotated is not None and not rotated.verify(b"p", signature)
    assert rotated.verify(b"p", Signer.hmac("next").sign(b"p"))

    ed = worker_signer(_settings(ED25519, PRIVATE_PEM.decode()))
    assert ed is not None and ed.scheme == ED25519
    ed_verifier = actuator_verifier(_settings(ED25519, None, [PUBLIC_PEM.decode()]))
    assert ed_verifier is not None and ed_verifier.verify(b"p", ed.sign(b"p"))
    assert not ed_verifier.verify(b"p", signature)


# ------------------------------------------------------------- strict decoding of text


def _with_junk(text: str) -> str:
    """``text`` with a character outside base64 inside it, which a lax decoder would skip."""
    return text[:10] + "!" + text[10:]


def test_base64_with_a_foreign_character_is_refused_everywhere() -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    raw = serialization.Encoding.Raw
    private = serialization.load_pem_private_key(PRIVATE_PEM, password=None)
    private_raw = private.private_bytes(  # type: ignore[union-attr]
        raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public_raw = private.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    with pytest.raises(ConfigError, match=r"^signing key: not an Ed25519 private key: "):
        Signer.ed25519(_with_junk(base64.b64encode(private_raw).decode()))
    with pytest.raises(ConfigError, match=r"^verify key: not an Ed25519 public key: "):
        Verifier(ed25519_keys=[_with_junk(base64.b64encode(public_raw).decode())])

    signature = Signer.ed25519(PRIVATE_PEM).sign(b"p")
    prefix, value = signature.split(":", 1)
    verifier = Verifier(ed25519_keys=[PUBLIC_PEM])
    assert verifier.check(b"p", f"{prefix}:{_with_junk(value)}") == "bad_signature"
    assert verifier.check(b"p", f"{prefix}:{value[:40]}\n{value[40:]}") == "bad_signature"


def test_a_pem_key_may_follow_blank_lines() -> None:
    signature = Signer.ed25519(b"\n \n" + PRIVATE_PEM).sign(b"p")
    assert Verifier(ed25519_keys=[b"\n \n" + PUBLIC_PEM]).verify(b"p", signature)
    assert Verifier(ed25519_keys=["\n" + PUBLIC_PEM.decode()]).verify(b"p", signature)


@pytest.mark.parametrize("value", ["é" * 64, "0" * 63 + "é", "\udcff" * 64, "０" * 64])
def test_a_non_ascii_hmac_value_is_a_bad_signature_not_an_error(value: str) -> None:
    verifier = Verifier(hmac_keys=[HMAC_KEY])
    assert verifier.check(b"payload", f"hmac-sha256:{value}") == "bad_signature"


def test_without_the_cryptography_package_ed25519_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric", None)
    message = r"^ed25519 signatures need the 'cryptography' package$"
    with pytest.raises(ConfigError, match=message):
        Signer.ed25519(PRIVATE_PEM)
    with pytest.raises(ConfigError, match=message):
        Verifier(ed25519_keys=[PUBLIC_PEM])
    with pytest.raises(ConfigError, match=message):
        generate_ed25519_key()
    # HMAC needs nothing beyond the standard library.
    assert Verifier(hmac_keys=[HMAC_KEY]).verify(b"p", Signer.hmac(HMAC_KEY).sign(b"p"))
