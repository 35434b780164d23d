"""The generated `topics/` directory: current, valid JSON Schemas that agree with the models."""

from __future__ import annotations

import json
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from canarystream.contracts import (
    TELEMETRY_TYPES,
    ActuationReport,
    DeadLetter,
    Decision,
    input_event_adapter,
)
from canarystream.contracts.schemas import (
    DURATION_PATTERN,
    SCHEMA_DIALECT,
    STATUS_SET_PATTERN,
    check_topics,
    json_schemas,
    main,
    write_topics,
)
from canarystream.contracts.topics import (
    DEPLOYMENTS_TOPIC,
    TELEMETRY_TOPIC,
    TOPICS,
    TopicSpec,
    topic_spec,
)
from canarystream.policy import Policy, load_policy, parse_duration
from canarystream.policy.model import parse_status_set

ROOT = Path(__file__).parents[2]
TOPICS_DIR = ROOT / "topics"
TS = 1_790_000_000.0


@cache
def validator(name: str) -> Draft202012Validator:
    """Validator for a committed schema file (the artefact users get, not a fresh render)."""
    schema = json.loads((TOPICS_DIR / "schemas" / f"{name}.schema.json").read_text("utf-8"))
    return Draft202012Validator(schema)


def wire(value: Any) -> Any:
    """The object a consumer decodes after the value went through orjson (NaN becomes null)."""
    return orjson.loads(orjson.dumps(value))


# --- the directory is generated and current ---------------------------------------------------


def test_topics_directory_matches_the_generator(tmp_path: Path) -> None:
    write_topics(tmp_path)
    generated = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {p.relative_to(TOPICS_DIR).as_posix() for p in TOPICS_DIR.rglob("*") if p.is_file()}
    assert committed == generated, "regenerate: python -m canarystream.contracts.schemas topics"
    for relative in sorted(generated):
        assert (TOPICS_DIR / relative).read_text("utf-8") == (tmp_path / relative).read_text(
            "utf-8"
        ), f"topics/{relative} is stale: python -m canarystream.contracts.schemas topics"


def test_check_and_write_handle_missing_changed_and_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--check", str(TOPICS_DIR)]) == 0
    assert main(["--check", str(tmp_path)]) == 1
    assert "canary.telemetry.v1.yaml: missing" in capsys.readouterr().err
    write_topics(tmp_path)
    assert check_topics(tmp_path) == []
    (tmp_path / "canary.telemetry.v1.yaml").write_text("partitions: 1\n")
    stale = (tmp_path / "canary.decisions.v1.yaml").read_text().replace("decisions", "old")
    (tmp_path / "canary.old.v0.yaml").write_text(stale)
    (tmp_path / "kept.yaml").write_text("not generated: left alone\n")
    assert check_topics(tmp_path) == [
        "canary.telemetry.v1.yaml: differs",
        "canary.old.v0.yaml: stale",
    ]
    changed = write_topics(tmp_path)
    assert sorted(p.name for p in changed) == ["canary.old.v0.yaml", "canary.telemetry.v1.yaml"]
    assert check_topics(tmp_path) == []
    assert (tmp_path / "kept.yaml").exists()


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = validator(name).schema
    assert schema["$schema"] == SCHEMA_DIALECT
    Draft202012Validator.check_schema(schema)


# --- topic specs ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", TOPICS, ids=[spec.name for spec in TOPICS])
def test_topic_file_holds_the_spec_and_points_to_its_schema(spec: TopicSpec) -> None:
    path = TOPICS_DIR / f"{spec.name}.yaml"
    document = yaml.safe_load(path.read_text("utf-8"))
    assert document == spec.document()
    assert (path.parent / document["schema"]).is_file()


def test_telemetry_and_deployments_are_co_partitioned() -> None:
    telemetry, deployments = topic_spec(TELEMETRY_TOPIC), topic_spec(DEPLOYMENTS_TOPIC)
    assert telemetry.partitions == deployments.partitions
    assert telemetry.key == deployments.key == "service"
    assert deployments.cleanup_policy == "delete"  # several events per key all matter


def test_unknown_topic_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        topic_spec("canary.nope.v1")


def _event_branches(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: definition
        for name, definition in schema.get("$defs", {}).items()
        if "const" in definition.get("properties", {}).get("type", {})
    } or {"message": schema}


# Control events name only their deployment (the contract's minimum); they may carry the
# service, and producers key them by it so they land on the rollout's partition.
_KEY_OPTIONAL = {"DeploymentAborted", "DeploymentPaused", "DeploymentResumed", "DeploymentApproved"}


@pytest.mark.parametrize(
    "spec", [spec for spec in TOPICS if spec.key is not None], ids=lambda spec: spec.name
)
def test_topic_key_is_a_field_of_every_message(spec: TopicSpec) -> None:
    for name, branch in _event_branches(validator(spec.schema_name).schema).items():
        if name in _KEY_OPTIONAL:
            assert spec.key in branch.get("properties", {}), f"{name} cannot carry {spec.key}"
        else:
            assert spec.key in branch.get("required", []), f"{name} lacks {spec.key}"


# --- examples against the schemas and the models ----------------------------------------------

REQUEST = {
    "type": "request",
    "ts": TS,
    "service": "checkout",
    "version": "v2",
    "latency_ms": 12.5,
    "status": 200,
}
METRIC = {
    "type": "metric",
    "ts": TS,
    "service": "checkout",
    "version": "v1",
    "name": "cpu_utilization",
    "value": 0.5,
}
PROBE = {
    "type": "probe",
    "ts": TS,
    "service": "checkout",
    "version": "v2",
    "probe": "login",
    "ok": True,
}
STARTED = {
    "type": "deployment_started",
    "ts": TS,
    "deployment": "checkout-42",
    "service": "checkout",
    "baseline_version": "v1",
    "canary_version": "v2",
}
ABORTED = {"type": "deployment_aborted", "ts": TS, "deployment": "checkout-42", "actor": "alice"}
DECISION = {
    "type": "decision",
    "decision_id": "d",
    "deployment": "checkout-42",
    "service": "checkout",
    "seq": 0,
    "action": "advance",
    "ts": TS,
    "stage": 1,
    "traffic_percent": 5.0,
    "phase": "running",
    "baseline_version": "v1",
    "canary_version": "v2",
    "policy": "default",
    "summary": "all checks pass",
    "reasons": [{"check": "error_rate", "kind": "error_rate", "verdict": "pass"}],
}
ACTUATION = {
    "type": "actuation",
    "actuation_id": "a",
    "decision_id": "d",
    "deployment": "checkout-42",
    "service": "checkout",
    "seq": 0,
    "action": "advance",
    "backend": "nop",
    "status": "applied",
    "ts": TS,
    "traffic_percent_requested": 5.0,
    "dry_run": True,
}
DEAD_LETTER = {
    "type": "dead_letter",
    "reason": "malformed_json",
    "source": "canary.telemetry.v1",
    "ts": TS,
    "original": "/w==",
    "encoding": "base64",
}


def _input_ok(topic: str | None):
    """Model check for an input message; ``topic`` limits the event types it may carry."""

    def accepts(value: Any) -> bool:
        events = value if isinstance(value, list) else [value]
        try:
            kinds = {input_event_adapter.validate_python(event).type for event in events}
        except ValidationError:
            return False
        if topic == "telemetry":
            return kinds <= TELEMETRY_TYPES
        if topic == "deployment":
            return not kinds & TELEMETRY_TYPES
        return True

    return accepts


def _model_ok(model: type[BaseModel]):
    def accepts(value: Any) -> bool:
        try:
            model.model_validate(value)
        except ValidationError:
            return False
        return True

    return accepts


MODEL_CHECK = {
    "telemetry": _input_ok("telemetry"),
    "deployment": _input_ok("deployment"),
    "input": _input_ok(None),
    "decision": _model_ok(Decision),
    "actuation": _model_ok(ActuationReport),
    "dead-letter": _model_ok(DeadLetter),
}

VALID = [
    ("telemetry", REQUEST),
    ("telemetry", METRIC),
    ("telemetry", PROBE),
    ("telemetry", {**PROBE, "latency_ms": None, "instance": None}),
    ("telemetry", {**REQUEST, "status": 599, "latency_ms": 0, "trace_id": "extra fields kept"}),
    ("telemetry", [REQUEST, METRIC, PROBE]),
    ("telemetry", []),
    ("deployment", STARTED),
    ("deployment", {**STARTED, "policy": {"alpha": 0.01}}),
    ("deployment", [ABORTED, {**ABORTED, "type": "deployment_approved", "reason": "ok"}]),
    ("input", [STARTED, REQUEST]),
    ("input", ABORTED),
    ("decision", DECISION),
    ("actuation", ACTUATION),
    ("actuation", {**ACTUATION, "traffic_percent_observed": 5.0, "status": "rejected"}),
    ("dead-letter", DEAD_LETTER),
    ("dead-letter", {**DEAD_LETTER, "original": "{", "encoding": "utf-8"}),
]

INVALID = [
    ("nan-latency", "telemetry", {**REQUEST, "latency_ms": math.nan}),
    ("inf-value", "telemetry", {**METRIC, "value": math.inf}),
    ("status-as-string", "telemetry", {**REQUEST, "status": "200"}),
    ("status-700", "telemetry", {**REQUEST, "status": 700}),
    ("status-bool", "telemetry", {**REQUEST, "status": True}),
    ("latency-negative", "telemetry", {**REQUEST, "latency_ms": -1}),
    ("latency-as-string", "telemetry", {**REQUEST, "latency_ms": "12.5"}),
    ("missing-version", "telemetry", {k: v for k, v in REQUEST.items() if k != "version"}),
    ("missing-type", "telemetry", {k: v for k, v in REQUEST.items() if k != "type"}),
    ("unknown-type", "telemetry", {**REQUEST, "type": "span"}),
    ("ts-in-milliseconds", "telemetry", {**REQUEST, "ts": TS * 1000}),
    ("empty-service", "telemetry", {**REQUEST, "service": ""}),
    ("long-version", "telemetry", {**REQUEST, "version": "v" * 257}),
    ("metric-too-large", "telemetry", {**METRIC, "value": 1e16}),
    ("probe-ok-as-string", "telemetry", {**PROBE, "ok": "true"}),
    ("one-bad-in-batch", "telemetry", [REQUEST, {**REQUEST, "status": 0}]),
    ("deployment-on-telemetry", "telemetry", STARTED),
    ("telemetry-on-deployments", "deployment", REQUEST),
    ("missing-canary", "deployment", {k: v for k, v in STARTED.items() if k != "canary_version"}),
    ("control-without-actor", "deployment", {k: v for k, v in ABORTED.items() if k != "actor"}),
    ("not-an-object", "input", "request"),
    ("decision-traffic-150", "decision", {**DECISION, "traffic_percent": 150}),
    ("decision-unknown-action", "decision", {**DECISION, "action": "advance_now"}),
    ("decision-bad-verdict", "decision", {**DECISION, "reasons": [{"check": "x", "kind": "x"}]}),
    ("actuation-status-done", "actuation", {**ACTUATION, "status": "done"}),
    ("actuation-observed-101", "actuation", {**ACTUATION, "traffic_percent_observed": 101}),
    ("actuation-no-backend", "actuation", {k: v for k, v in ACTUATION.items() if k != "backend"}),
    ("dead-letter-hex", "dead-letter", {**DEAD_LETTER, "encoding": "hex"}),
    ("dead-letter-no-original", "dead-letter", {**DEAD_LETTER, "original": None}),
]


@pytest.mark.parametrize(("schema", "value"), VALID)
def test_valid_examples_pass_schema_and_model(schema: str, value: Any) -> None:
    validator(schema).validate(wire(value))
    assert MODEL_CHECK[schema](wire(value))


@pytest.mark.parametrize(
    ("schema", "value"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_examples_fail_schema_and_model(schema: str, value: Any) -> None:
    assert not validator(schema).is_valid(wire(value))
    assert not MODEL_CHECK[schema](wire(value))


def test_nan_cannot_reach_a_consumer_as_a_number() -> None:
    # JSON has no NaN: orjson writes null, which the schema refuses, and a NaN literal is
    # malformed JSON (see test_codec).
    assert wire({"latency_ms": math.nan}) == {"latency_ms": None}


@pytest.mark.parametrize("model", [Decision, ActuationReport, DeadLetter])
def test_output_schema_lists_every_model_field(model: type[BaseModel]) -> None:
    name = {Decision: "decision", ActuationReport: "actuation", DeadLetter: "dead-letter"}[model]
    assert set(validator(name).schema["properties"]) == set(model.model_fields)


def test_every_tagged_branch_requires_its_tag() -> None:
    # Otherwise an untagged object could match one branch of the schema while the models,
    # which pick the branch by tag, refuse it.
    for name in ("input", "policy"):
        schema = validator(name).schema
        for definition in schema["$defs"].values():
            for tag in ("type", "kind"):
                if "const" in definition.get("properties", {}).get(tag, {}):
                    assert tag in definition["required"], (name, definition["title"])


# --- policies ---------------------------------------------------------------------------------

POLICY_YAML = """
name: careful
alpha: 0.01
tick: 10s
deadline: 2h
stages:
  - {traffic_percent: 1, min_duration: 6m}
  - {traffic_percent: 10, min_duration: 600, max_duration: "30 m", approval: true}
  - {traffic_percent: 50, min_duration: 1.5h}
checks:
  - {kind: error_rate, error_statuses: "429, 500-599", breakdown: endpoint}
  - {kind: slo_error_rate, error_statuses: [429, "500-599", [502, 504]]}
  - {kind: latency, quantile: 0.99, tolerance: 0.1, advance_tolerance: 0.2}
  - {kind: gauge, metric: cpu_utilization, window: 1m, critical: true}
  - {kind: slo_latency, max_ms: 250}
  - {kind: probe}
guards:
  baseline_drift: {cooldown: 5m}
  no_data: {hold_after: 2m, rollback_after: 10m}
"""


def test_default_policy_validates_against_the_policy_schema() -> None:
    validator("policy").validate(wire(Policy().model_dump(mode="json")))


def test_policy_file_with_duration_and_status_strings_validates() -> None:
    data = yaml.safe_load(POLICY_YAML)
    validator("policy").validate(data)
    Policy.model_validate(data)


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("tick", "10 minutes"),
        ("tick", -5),
        ("alpha", 0.5),
        ("stages", []),
        ("stages", [{"traffic_percent": 0}]),
        ("stages", [{"traffic_percent": 5, "min_duration": "-1m"}]),
        ("checks", [{"tolerance": 1.2}]),  # no kind
        ("checks", [{"kind": "error_rate", "error_statuses": "5xx"}]),
        ("checks", [{"kind": "error_rate", "error_statuses": [700]}]),
        ("checks", [{"kind": "error_rate", "error_statuses": ""}]),
        ("checks", [{"kind": "slo_latency"}]),  # max_ms is required
        ("surprise", 1),  # unknown fields are refused
    ],
)
def test_invalid_policy_fails_schema_and_model(change: str, value: Any) -> None:
    data = {**yaml.safe_load(POLICY_YAML), change: value}
    assert not validator("policy").is_valid(data)
    with pytest.raises(ValidationError):
        Policy.model_validate(data)


POLICY_FILES = sorted((ROOT / "deploy" / "policies").glob("*.y*ml"))


@pytest.mark.skipif(not POLICY_FILES, reason="no policy files in deploy/policies")
@pytest.mark.parametrize("path", POLICY_FILES, ids=[path.name for path in POLICY_FILES])
def test_deployed_policy_files_validate(path: Path) -> None:
    validator("policy").validate(yaml.safe_load(path.read_text("utf-8")))
    load_policy(path)


@pytest.mark.parametrize(
    "text",
    ["6m", "90s", "1.5h", "250ms", " 6 m ", "360", "0", "6 min", "-1s", "1e3", "m", "", "1.h"],
)
def test_duration_pattern_agrees_with_the_parser(text: str) -> None:
    try:
        parse_duration(text)
        parsed = True
    except ValueError:
        parsed = False
    assert (re.search(DURATION_PATTERN, text) is not None) == parsed


@pytest.mark.parametrize(
    "text",
    ["500-599", "429,500-599", " 429 , 503 ", ",,500,", "500 502", "5000", "5xx", "", "099", "600"],
)
def test_status_set_pattern_agrees_with_the_parser(text: str) -> None:
    try:
        parse_status_set(text)
        parsed = True
    except ValueError:
        parsed = False
    assert (re.search(STATUS_SET_PATTERN, text) is not None) == parsed
