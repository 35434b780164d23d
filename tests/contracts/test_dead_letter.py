"""Dead letters: bounded, identified, and readable by consumers of the older format."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from canarystream.contracts.actuation import MAX_DETAIL_CHARS, MAX_ORIGINAL_BYTES, DeadLetter
from tests.contracts.test_schemas import validator, wire


def letter(raw: bytes | str, detail: str = "") -> DeadLetter:
    return DeadLetter.for_message(
        raw, reason="malformed_json", detail=detail, source="canary.telemetry.v1/3@42", ts=1.0
    )


def test_a_small_message_is_kept_whole_with_its_size_hash_and_id() -> None:
    raw = b'{"type": "request"'
    x = letter(raw)
    assert (x.original, x.encoding, x.truncated) == (raw.decode(), "utf-8", False)
    assert x.size == len(raw) and x.sha256 == hashlib.sha256(raw).hexdigest()
    assert x.id == x.source == "canary.telemetry.v1/3@42"
    validator("dead-letter").validate(wire(x.model_dump(mode="json")))


def test_the_id_can_differ_from_the_source() -> None:
    x = DeadLetter.for_message(b"{", reason="r", detail="", source="in.jsonl", ts=0.0, id="a:7")
    assert (x.source, x.id) == ("in.jsonl", "a:7")


@pytest.mark.parametrize("unit", ["x", "é", "😀"], ids=["ascii", "two-byte", "four-byte"])
def test_a_long_text_is_cut_at_a_character_boundary(unit: str) -> None:
    raw = ("a" + unit * MAX_ORIGINAL_BYTES).encode()
    x = letter(raw)
    kept = x.original_bytes()
    assert x.truncated and x.encoding == "utf-8"
    assert raw.startswith(kept) and MAX_ORIGINAL_BYTES - 4 < len(kept) <= MAX_ORIGINAL_BYTES
    assert x.size == len(raw) and x.sha256 == hashlib.sha256(raw).hexdigest()


def test_bytes_that_are_not_utf8_are_cut_then_base64_encoded() -> None:
    raw = b"\xff" * (3 * MAX_ORIGINAL_BYTES)
    x = letter(raw)
    assert x.encoding == "base64" and x.truncated
    assert base64.b64decode(x.original) == raw[:MAX_ORIGINAL_BYTES]
    assert x.size == len(raw)


def test_a_message_valid_utf8_only_in_its_kept_part_is_base64() -> None:
    raw = b"x" * MAX_ORIGINAL_BYTES + b"\xff"
    x = letter(raw)
    assert x.encoding == "base64" and x.original_bytes() == raw[:MAX_ORIGINAL_BYTES]


def test_the_detail_is_capped() -> None:
    x = letter(b"{", detail="d" * 10_000)
    assert len(x.detail) == MAX_DETAIL_CHARS and x.detail.endswith("…")


def test_the_worst_letter_fits_the_topic() -> None:
    # Every kept byte a control character (six bytes as a JSON escape), and so is the detail.
    x = letter(b"\x01" * 2 * MAX_ORIGINAL_BYTES, detail="\x01" * 5000)
    assert len(orjson.dumps(x.model_dump(mode="json"))) < 410_000


def test_a_record_of_the_older_format_still_reads() -> None:
    old = {
        "type": "dead_letter",
        "reason": "malformed_json",
        "detail": "",
        "source": "canary.telemetry.v1",
        "ts": 1.0,
        "original": "{",
        "encoding": "utf-8",
    }
    validator("dead-letter").validate(old)
    x = DeadLetter.model_validate(old)
    assert (x.id, x.size, x.sha256, x.truncated) == (None, None, None, False)
    assert x.original_bytes() == b"{"


def test_a_malformed_hash_is_refused() -> None:
    with pytest.raises(ValueError, match="sha256"):
        DeadLetter(reason="r", source="s", ts=0.0, original="", sha256="XYZ")
