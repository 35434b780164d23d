"""The scenario file format: its generated JSON Schema, the example file, and the loader agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator

from canarystream.errors import ConfigError
from canarystream.simulate.presets import build_preset, preset_names
from canarystream.simulate.scenario import load_scenarios

ROOT = Path(__file__).parents[2]
SCHEMA = ROOT / "topics" / "schemas" / "scenario.schema.json"
EXAMPLE = ROOT / "deploy" / "scenario.example.yaml"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(orjson.loads(SCHEMA.read_bytes()))


def test_the_example_file_is_valid_and_loads(validator: Draft202012Validator) -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    assert list(validator.iter_errors(document)) == []
    scenarios = load_scenarios(EXAMPLE)
    assert [s.deployment for s in scenarios] == ["checkout-2026-12-01", "payments-2026-12-01"]
    assert scenarios[0].regression is not None and scenarios[0].duration == 2400


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_written_out_is_valid(validator: Draft202012Validator, preset: str) -> None:
    document = build_preset(preset).model_dump(mode="json")
    assert list(validator.iter_errors(document)) == []
    assert list(validator.iter_errors([document, document])) == []


@pytest.mark.parametrize(
    "change",
    [
        {"regression": {"kind": "errors_squared", "factor": 2}},
        {"traffic": {"total_rps": -1}},
        {"duration": "forty minutes"},
        {"unknown_key": 1},
    ],
    ids=["unknown regression", "negative rate", "bad duration", "unknown key"],
)
def test_schema_and_loader_refuse_the_same_mistakes(
    validator: Draft202012Validator, tmp_path: Path, change: dict[str, Any]
) -> None:
    document = {"deployment": "d", "service": "s", **change}
    assert list(validator.iter_errors(document)), "the schema should refuse it"
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError):
        load_scenarios(path)


def test_an_empty_list_is_refused_by_both(validator: Draft202012Validator, tmp_path: Path) -> None:
    assert list(validator.iter_errors([]))
    path = tmp_path / "scenarios.yaml"
    path.write_text("[]\n")
    with pytest.raises(ConfigError, match="empty"):
        load_scenarios(path)
