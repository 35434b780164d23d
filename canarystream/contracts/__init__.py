"""Public event contracts: inputs (deployments, control, telemetry) and decisions."""

from canarystream.contracts.actuation import ActuationReport, ActuationStatus, DeadLetter
from canarystream.contracts.codec import (
    TELEMETRY_TYPES,
    decode_message,
    explain_invalid,
    is_valid_telemetry,
    parse_control,
)
from canarystream.contracts.decision import (
    Action,
    CheckReason,
    Decision,
    Phase,
    Verdict,
    decision_id_for,
)
from canarystream.contracts.events import (
    ControlEvent,
    DeploymentAborted,
    DeploymentApproved,
    DeploymentEvent,
    DeploymentPaused,
    DeploymentResumed,
    DeploymentStarted,
    InputEvent,
    MetricSample,
    ProbeResult,
    RequestSample,
    TelemetryEvent,
    input_event_adapter,
)

__all__ = [
    "TELEMETRY_TYPES",
    "Action",
    "ActuationReport",
    "ActuationStatus",
    "CheckReason",
    "ControlEvent",
    "DeadLetter",
    "Decision",
    "DeploymentAborted",
    "DeploymentApproved",
    "DeploymentEvent",
    "DeploymentPaused",
    "DeploymentResumed",
    "DeploymentStarted",
    "InputEvent",
    "MetricSample",
    "Phase",
    "ProbeResult",
    "RequestSample",
    "TelemetryEvent",
    "Verdict",
    "decision_id_for",
    "decode_message",
    "explain_invalid",
    "input_event_adapter",
    "is_valid_telemetry",
    "parse_control",
]
