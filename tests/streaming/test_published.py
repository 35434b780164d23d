"""The index of published decisions counts only genuine (verified) decisions."""

from __future__ import annotations

import orjson

from canarystream.contracts.signing import SIGNATURE_HEADER, Signer
from canarystream.streaming.published import PublishedIndex

SIGNER = Signer.hmac(b"worker key")


def _decision(seq: int) -> bytes:
    return orjson.dumps({"type": "decision", "deployment": "d1", "seq": seq})


def test_signed_decisions_count_and_forged_or_unsigned_ones_do_not() -> None:
    index = PublishedIndex(SIGNER.verifier())
    genuine = _decision(0)
    index.add_message(genuine, [(SIGNATURE_HEADER, SIGNER.sign(genuine).encode())])
    forged = _decision(1)
    index.add_message(forged, [(SIGNATURE_HEADER, Signer.hmac(b"other").sign(forged).encode())])
    index.add_message(_decision(2), [])
    tampered = _decision(3)
    index.add_message(_decision(4), [(SIGNATURE_HEADER, SIGNER.sign(tampered).encode())])
    assert index.seen("d1", 0)
    assert not index.seen("d1", 1), "a forged decision must not silence the genuine seq 1"
    assert index.unverified == 3


def test_without_signing_every_decision_counts() -> None:
    index = PublishedIndex()
    index.add_message(_decision(5))
    assert index.seen("d1", 5) and not index.seen("d1", 6)
