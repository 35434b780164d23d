"""Input events of the public contract: rollout announcements, control and telemetry.

Every event is a JSON object with a ``type`` discriminator and an event time ``ts``
(epoch seconds, float). A message or a JSON Lines line may also hold an array of events.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

__all__ = [
    "MAX_LATENCY_MS",
    "MAX_METRIC_ABS",
    "MAX_TS",
    "MIN_TS",
    "CompensationHook",
    "ControlEvent",
    "DeploymentAborted",
    "DeploymentApproved",
    "DeploymentEvent",
    "DeploymentPaused",
    "DeploymentResumed",
    "DeploymentStarted",
    "Heartbeat",
    "InputEvent",
    "MetricSample",
    "ProbeResult",
    "RequestSample",
    "TelemetryEvent",
    "TrafficShifted",
    "input_event_adapter",
]

# Plausibility limits: values outside them are contract violations, not data.
MIN_TS = 946_684_800.0  # 2000-01-01T00:00:00Z
MAX_TS = 4_102_444_800.0  # 2100-01-01T00:00:00Z
MAX_LATENCY_MS = 3_600_000.0  # one hour
MAX_METRIC_ABS = 1e15

Name = Annotated[str, Field(min_length=1, max_length=256)]
EventTime = Annotated[
    float,
    Field(ge=MIN_TS, le=MAX_TS, description="Event time in epoch seconds (UTC)."),
]


class _Event(BaseModel):
    # strict: a JSON number must be a number (no "12.5" strings), a status an integer.
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False, strict=True)

    ts: EventTime


class CompensationHook(BaseModel):
    """A step that undoes a canary's side effects when it is rolled back.

    Exactly one of ``command`` (argv, run without a shell) or ``url`` (a webhook that receives
    the rollback decision as a JSON POST) is given. Hooks run once per rollback, in order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: Name = Field(description="Shown in reports and the audit trail.")
    command: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None, min_length=1, description="argv of a command to run."
    )
    url: Annotated[str, Field(pattern=r"^https?://", max_length=2048)] | None = Field(
        default=None, description="Webhook to POST the rollback decision to."
    )
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600, description="Per attempt.")

    @model_validator(mode="after")
    def _one_target(self) -> CompensationHook:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command or url")
        return self


class DeploymentStarted(_Event):
    """A deployment system announces a rollout of ``canary_version`` beside ``baseline_version``."""

    type: Literal["deployment_started"] = "deployment_started"
    deployment: Name = Field(description="Unique id of the rollout.")
    service: Name = Field(description="Service being rolled out; telemetry joins on it.")
    baseline_version: Name = Field(description="Version currently serving (the control cohort).")
    canary_version: Name = Field(description="Version being rolled out (the treatment cohort).")
    policy: Name | dict[str, Any] | None = Field(
        default=None,
        description="Policy name, or an inline policy object; absent means the default policy.",
    )
    rollback_unsafe_from_stage: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="From this stage index on, rolling back is unsafe for data (e.g. an "
        "expand/contract migration past its contract step): a regression then freezes "
        "traffic and pages a person instead of rolling back.",
    )
    compensation: list[CompensationHook] = Field(
        default_factory=list,
        description="Steps run on rollback (a migration's down step, compensating writes).",
    )

    @field_validator("canary_version")
    @classmethod
    def _versions_differ(cls, value: str, info: Any) -> str:
        if value == info.data.get("baseline_version"):
            raise ValueError("canary_version must differ from baseline_version")
        return value


class _Control(_Event):
    deployment: Name = Field(description="Id of the rollout this command applies to.")
    service: Name | None = Field(
        default=None,
        description="Service of the rollout; producers key the message by it so it reaches "
        "the partition that owns the rollout.",
    )
    actor: Name = Field(description="Who issued the command (person or system).")
    reason: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="Free text shown in the audit trail."
    )


class DeploymentAborted(_Control):
    """Stop the rollout now and restore all traffic to the baseline."""

    type: Literal["deployment_aborted"] = "deployment_aborted"


class DeploymentPaused(_Control):
    """Hold the rollout at its current stage until resumed."""

    type: Literal["deployment_paused"] = "deployment_paused"


class DeploymentResumed(_Control):
    """Continue a paused rollout."""

    type: Literal["deployment_resumed"] = "deployment_resumed"


class DeploymentApproved(_Control):
    """Let a rollout waiting at an approval gate (or held for lack of evidence) advance."""

    type: Literal["deployment_approved"] = "deployment_approved"


class Heartbeat(_Event):
    """Event time passes for a service whose telemetry has stopped.

    The worker sends one, keyed by the service, when a rollout has had no telemetry for a
    while, so that no-data deadlines are reached; recorded on the deployments topic, it makes
    replay decide exactly as live. It moves only an idle rollout's clock, and by a bounded
    step (see the policy's ``admission``); a rollout that receives telemetry ignores it.
    """

    type: Literal["heartbeat"] = "heartbeat"
    service: Name = Field(description="Service whose rollouts' event time moves on.")


class TrafficShifted(_Event):
    """The canary's share of the cohorts' requests, as routed from ``ts`` on.

    Actuators publish one after each change they applied, with the share read back from their
    backend (router weights, a flag's rollout percentage), keyed by the service on the
    deployments topic. The engine judges the sample ratio against the latest observed share,
    and holds a rollout whose decision is not observed as applied within the policy's
    ``actuation_deadline``. Recorded, it makes replay (and backtests of recordings whose
    routing something else set) follow the routing as it was.
    """

    type: Literal["traffic_shifted"] = "traffic_shifted"
    deployment: Name = Field(description="Id of the rollout whose routing changed.")
    service: Name = Field(description="Service of the rollout; producers key the message by it.")
    traffic_percent: float = Field(
        ge=0.0,
        le=100.0,
        description="The canary's share of the cohorts' requests, %, from ts on (read back).",
    )
    backend: Name | None = Field(
        default=None, description="What routes the traffic (a router or flag service kind)."
    )
    decision_id: Name | None = Field(
        default=None, description="The decision whose application this reports, if any."
    )


class _Telemetry(_Event):
    service: Name = Field(description="Service that produced the sample.")
    version: Name = Field(description="Version of the service; selects the cohort.")
    instance: Name | None = Field(default=None, description="Instance (pod, host) id.")


class RequestSample(_Telemetry):
    """One served request, from a trace span or an access-log line."""

    type: Literal["request"] = "request"
    latency_ms: float = Field(ge=0.0, le=MAX_LATENCY_MS, description="Latency in milliseconds.")
    status: int = Field(
        ge=100, le=599, description="HTTP-like status; >= 500 is an error by default."
    )
    endpoint: Name | None = Field(default=None, description="Route or RPC method.")
    dependency: Name | None = Field(
        default=None, description="Critical dependency on the request path (db, cache...)."
    )
    zone: Name | None = Field(default=None, description="Availability zone.")


class MetricSample(_Telemetry):
    """One gauge sample (cpu_utilization, db_pool_saturation, a business metric...)."""

    type: Literal["metric"] = "metric"
    name: Name = Field(description="Metric name; checks select gauges by it.")
    value: float = Field(ge=-MAX_METRIC_ABS, le=MAX_METRIC_ABS, description="Sample value.")


class ProbeResult(_Telemetry):
    """One synthetic-monitor result against a given version."""

    type: Literal["probe"] = "probe"
    probe: Name = Field(description="Probe (synthetic check) name.")
    ok: bool = Field(description="Whether the probe succeeded.")
    latency_ms: float | None = Field(default=None, ge=0.0, le=MAX_LATENCY_MS)


ControlEvent = DeploymentAborted | DeploymentPaused | DeploymentResumed | DeploymentApproved
DeploymentEvent = DeploymentStarted | ControlEvent | TrafficShifted
TelemetryEvent = RequestSample | MetricSample | ProbeResult
InputEvent = Annotated[
    DeploymentStarted
    | DeploymentAborted
    | DeploymentPaused
    | DeploymentResumed
    | DeploymentApproved
    | Heartbeat
    | TrafficShifted
    | RequestSample
    | MetricSample
    | ProbeResult,
    Field(discriminator="type"),
]

input_event_adapter: TypeAdapter[InputEvent] = TypeAdapter(InputEvent)
