"""The shared sample rollout follows the contract, line by line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator

from canarystream.contracts import (
    TELEMETRY_TYPES,
    decode_message,
    input_event_adapter,
    is_valid_telemetry,
)

SAMPLE = Path(__file__).parents[2].parent / "shared/samples/regressed-rollout.jsonl"
INPUT_SCHEMA = Path(__file__).parents[2] / "topics/schemas/input.schema.json"


@pytest.fixture(scope="module")
def sample_lines() -> list[bytes]:
    if not SAMPLE.is_file():
        message = f"shared sample missing: {SAMPLE}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SAMPLE.read_bytes().splitlines()


def test_every_line_validates_with_the_models(sample_lines: list[bytes]) -> None:
    kinds: set[str] = set()
    for number, line in enumerate(sample_lines, start=1):
        for obj in decode_message(line):
            event = input_event_adapter.validate_python(obj)
            kinds.add(event.type)
            # The hot path must agree with the models on real traffic too.
            assert is_valid_telemetry(obj) == (event.type in TELEMETRY_TYPES), f"line {number}"
    assert "deployment_started" in kinds
    assert kinds & TELEMETRY_TYPES


def test_lines_validate_against_the_input_schema(sample_lines: list[bytes]) -> None:
    validator = Draft202012Validator(json.loads(INPUT_SCHEMA.read_text("utf-8")))
    # jsonschema is slow (~0.6 ms a line): every event that is not a request, and a fixed
    # stride of the requests, keep this test under a second.
    for number, line in enumerate(sample_lines, start=1):
        obj = orjson.loads(line)
        if number % 25 and isinstance(obj, dict) and obj.get("type") == "request":
            continue
        errors = list(validator.iter_errors(obj))
        assert not errors, f"line {number}: {errors[0].message}"
