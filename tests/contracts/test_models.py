"""Contract models: JSON round trips and the rules of actuation reports and dead letters."""

from __future__ import annotations

import math

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from canarystream.contracts import (
    Action,
    ActuationReport,
    ActuationStatus,
    CheckReason,
    DeadLetter,
    Decision,
    DeploymentAborted,
    DeploymentApproved,
    DeploymentPaused,
    DeploymentResumed,
    DeploymentStarted,
    MetricSample,
    Phase,
    ProbeResult,
    RequestSample,
    Verdict,
    decision_id_for,
    input_event_adapter,
)
from canarystream.errors import ContractError

TS = 1_790_000_000.0

INPUT_EVENTS: list[BaseModel] = [
    DeploymentStarted(
        ts=TS,
        deployment="checkout-42",
        service="checkout",
        baseline_version="v1",
        canary_version="v2",
    ),
    DeploymentStarted(
        ts=TS,
        deployment="checkout-43",
        service="checkout",
        baseline_version="v1",
        canary_version="v2",
        policy={"name": "strict", "alpha": 0.01},
        team="payments",  # extra fields are kept
    ),
    DeploymentStarted(
        ts=TS,
        deployment="checkout-44",
        service="checkout",
        baseline_version="v1",
        canary_version="v2",
        policy="strict",
    ),
    DeploymentAborted(ts=TS, deployment="checkout-42", actor="alice", reason="bad smell"),
    DeploymentPaused(ts=TS, deployment="checkout-42", actor="ci"),
    DeploymentResumed(ts=TS, deployment="checkout-42", actor="ci"),
    DeploymentApproved(ts=TS, deployment="checkout-42", actor="bob"),
    RequestSample(ts=TS + 0.25, service="checkout", version="v2", latency_ms=12.5, status=200),
    RequestSample(
        ts=TS,
        service="checkout",
        version="v2",
        instance="checkout-v2-0",
        latency_ms=0,
        status=503,
        endpoint="/cart",
        dependency="postgres",
        zone="eu-west-1a",
        trace_id="abc",
    ),
    MetricSample(ts=TS, service="checkout", version="v1", name="cpu_utilization", value=-0.5),
    ProbeResult(ts=TS, service="checkout", version="v2", probe="login", ok=True),
    ProbeResult(ts=TS, service="checkout", version="v2", probe="login", ok=False, latency_ms=3e3),
]

DECISION = Decision(
    decision_id=decision_id_for("checkout-42", 3, "rollback"),
    deployment="checkout-42",
    service="checkout",
    seq=3,
    action=Action.ROLLBACK,
    ts=TS + 600,
    stage=2,
    traffic_percent=0.0,
    phase=Phase.ROLLED_BACK,
    baseline_version="v1",
    canary_version="v2",
    policy="default",
    summary="error rate x3.1 on the canary",
    reasons=[
        CheckReason(
            check="error_rate",
            kind="error_rate",
            verdict=Verdict.FAIL,
            canary_samples=812,
            baseline_samples=8120,
            estimate=3.1,
            lower=1.9,
            upper=5.2,
            e_value=412.0,
            threshold=100.0,
            tolerance=1.1,
            advance_tolerance=1.5,
            message="canary errors 3.1x baseline",
        ),
        CheckReason(check="gauges", kind="gauge", verdict=Verdict.NO_DATA, critical=False),
    ],
)

ACTUATION = ActuationReport(
    actuation_id="a1b2",
    decision_id=DECISION.decision_id,
    deployment="checkout-42",
    service="checkout",
    seq=3,
    action=Action.ROLLBACK,
    backend="ingress",
    status=ActuationStatus.APPLIED,
    ts=1_790_000_601.5,
    traffic_percent_requested=0.0,
    traffic_percent_observed=0.0,
    attempts=2,
    detail="weight set to 0 after one retry",
)

OUTPUTS: list[BaseModel] = [
    DECISION,
    Decision(**{**DECISION.model_dump(), "reasons": []}),
    ACTUATION,
    ActuationReport(
        **{
            **ACTUATION.model_dump(),
            "status": "failed",
            "traffic_percent_observed": None,
            "dry_run": True,
        }
    ),
    DeadLetter.for_message(
        b'{"type": "request", "status": "200"}',
        reason="invalid_field",
        detail="status: Input should be a valid integer",
        source="canary.telemetry.v1",
        ts=1_790_000_000.0,
    ),
    DeadLetter.for_message(
        b"\xff\xfe{", reason="malformed_json", detail="", source="rollout.jsonl:17", ts=1.0
    ),
]


def _ids(models: list[BaseModel]) -> list[str]:
    return [f"{type(model).__name__}-{index}" for index, model in enumerate(models)]


@pytest.mark.parametrize("model", INPUT_EVENTS + OUTPUTS, ids=_ids(INPUT_EVENTS + OUTPUTS))
def test_json_round_trip(model: BaseModel) -> None:
    raw = orjson.dumps(model.model_dump(mode="json"))
    assert type(model).model_validate_json(raw) == model
    assert type(model).model_validate(orjson.loads(raw)) == model


@pytest.mark.parametrize("event", INPUT_EVENTS, ids=_ids(INPUT_EVENTS))
def test_input_events_round_trip_through_the_union(event: BaseModel) -> None:
    raw = orjson.dumps(event.model_dump(mode="json"))
    assert input_event_adapter.validate_json(raw) == event


def test_dead_letter_keeps_utf8_text_as_is() -> None:
    letter = DeadLetter.for_message(
        '{"service": "café"'.encode(), reason="malformed_json", detail="", source="t", ts=1.0
    )
    assert letter.encoding == "utf-8"
    assert letter.original == '{"service": "café"'
    assert letter.original_bytes() == '{"service": "café"'.encode()


def test_dead_letter_base64_encodes_bytes_that_are_not_utf8() -> None:
    raw = b"\x00\xff\xfe garbage \xc3"
    letter = DeadLetter.for_message(raw, reason="malformed_json", detail="", source="t", ts=1.0)
    assert letter.encoding == "base64"
    assert letter.original.isascii()
    parsed = DeadLetter.model_validate_json(orjson.dumps(letter.model_dump(mode="json")))
    assert parsed.original_bytes() == raw


def test_dead_letter_accepts_text_input() -> None:
    letter = DeadLetter.for_message(
        "not json", reason="malformed_json", detail="", source="t", ts=1
    )
    assert (letter.encoding, letter.original_bytes()) == ("utf-8", b"not json")


def test_dead_letter_with_corrupt_base64_is_a_contract_error() -> None:
    letter = DeadLetter(reason="x", source="t", ts=1.0, original="***", encoding="base64")
    with pytest.raises(ContractError, match="original") as caught:
        letter.original_bytes()
    assert caught.value.reason == "invalid_field"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "done"),
        ("traffic_percent_requested", 100.5),
        ("traffic_percent_observed", -1.0),
        ("attempts", 0),
        ("ts", math.nan),
        ("backend", ""),
        ("action", "abort"),
        ("seq", -1),
    ],
)
def test_actuation_report_rejects(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        ActuationReport(**{**ACTUATION.model_dump(), field: value})
    assert caught.value.errors()[0]["loc"][0] == field


def test_actuation_status_values_are_the_wire_strings() -> None:
    statuses = {status.value for status in ActuationStatus}
    assert statuses == {"applied", "failed", "rejected", "started"}


def test_dead_letter_rejects_unknown_encoding() -> None:
    with pytest.raises(ValidationError, match="encoding"):
        DeadLetter(reason="x", source="t", ts=1.0, original="", encoding="hex")
