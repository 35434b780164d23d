"""Output events: decisions of the engine and the reasons behind them."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from canarystream.contracts.events import CompensationHook

__all__ = [
    "Action",
    "CheckReason",
    "Decision",
    "Phase",
    "Verdict",
    "decision_id_for",
]

_DECISION_NAMESPACE = uuid.UUID("6f1c3e0a-9b7d-5c1e-8f2a-4d6b8e0c1a3f")


class Action(StrEnum):
    """What the actuators must do with the canary's traffic."""

    ADVANCE = "advance"
    HOLD = "hold"
    ROLLBACK = "rollback"
    PROMOTE = "promote"
    # A regression past the rollout's rollback-unsafe stage: keep traffic as it is, page.
    FREEZE = "freeze"
    # After a rollback: did the service return to its baseline levels? Traffic stays at 0.
    ROLLBACK_VERIFIED = "rollback_verified"
    ROLLBACK_NOT_RECOVERING = "rollback_not_recovering"

    @property
    def changes_traffic(self) -> bool:
        """True if actuators must set the decision's traffic share (else they keep it)."""
        return self in (Action.ADVANCE, Action.ROLLBACK, Action.PROMOTE)


class Phase(StrEnum):
    """Phase of a rollout in the decision state machine."""

    RUNNING = "running"
    HELD = "held"
    FROZEN = "frozen"  # waiting for a person: rolling back would be unsafe for data
    ROLLED_BACK = "rolled_back"
    PROMOTED = "promoted"
    ABORTED = "aborted"

    @property
    def is_terminal(self) -> bool:
        """True once the rollout can take no further decision."""
        return self in (Phase.ROLLED_BACK, Phase.PROMOTED, Phase.ABORTED)


class Verdict(StrEnum):
    """Outcome of one check or guard at one evaluation."""

    PASS = "pass"  # evidence of no harm: upper bound within the advance tolerance
    FAIL = "fail"  # evidence of a regression: the e-value crossed 1/alpha
    INCONCLUSIVE = "inconclusive"  # neither yet
    NO_DATA = "no_data"  # a cohort has no samples for this check


class CheckReason(BaseModel):
    """Why one check or guard voted as it did: enough for a person to audit the decision."""

    model_config = ConfigDict(frozen=True)

    check: str = Field(description="Check or guard name from the policy.")
    kind: str = Field(description="error_rate, latency, gauge, probe, slo_*, or a guard kind.")
    verdict: Verdict
    critical: bool = Field(
        default=True,
        description="A failure rolls back at once: the check is critical, or this failure is "
        "far past its tolerance (a gauge's critical_margin).",
    )
    canary_samples: int = Field(default=0, ge=0, description="Canary observations used.")
    baseline_samples: int = Field(default=0, ge=0, description="Baseline observations used.")
    estimate: float | None = Field(
        default=None, description="Point estimate of the compared quantity (ratio or difference)."
    )
    lower: float | None = Field(default=None, description="Anytime-valid lower confidence bound.")
    upper: float | None = Field(default=None, description="Anytime-valid upper confidence bound.")
    e_value: float | None = Field(
        default=None, description="E-process value against 'no regression beyond tolerance'."
    )
    threshold: float | None = Field(
        default=None, description="E-value that rejects (1/alpha for this check)."
    )
    tolerance: float | None = Field(default=None, description="Regression margin of the check.")
    advance_tolerance: float | None = Field(
        default=None, description="Bound the upper confidence limit must be under to advance."
    )
    ruled_out: float | None = Field(
        default=None,
        description="The guarantee at promotion: the upper confidence bound at the promote "
        "confidence, in the tolerance's units (a ratio, a relative increase, a difference, a "
        "rate); a regression beyond it is ruled out. Null until the last stage is judged.",
    )
    more_samples: int | None = Field(
        default=None,
        ge=0,
        description="For an inconclusive check: estimated further canary samples before its "
        "upper bound reaches the bound in force (its width taken to shrink as 1/sqrt(n)); "
        "null if none can be estimated.",
    )
    risk: Literal["ruled_out", "waived", "not_leaning"] | None = Field(
        default=None,
        description="Set when the decision moved on under the policy's low-traffic rule with "
        "this check not shown to pass: ruled_out (at promotion: its upper and "
        "advance_tolerance are the wider bound the rule asks, ruled out), waived (at "
        "promotion: a latency quantile with no baseline threshold, covered by a lower "
        "quantile named in the message), not_leaning (an intermediate stage: inconclusive, "
        "nothing pointing to harm).",
    )
    message: str = Field(default="", description="One readable sentence.")


class Decision(BaseModel):
    """One decision of the engine, published on the decisions topic."""

    model_config = ConfigDict(frozen=True)

    type: Literal["decision"] = "decision"
    decision_id: str = Field(description="Deterministic id: the same input yields the same id.")
    deployment: str
    service: str
    seq: int = Field(ge=0, description="Per-deployment sequence number, monotonic from 0.")
    action: Action
    ts: float = Field(description="Event time at which the decision was taken (epoch s).")
    stage: int = Field(ge=0, description="Index of the stage the rollout is in after this.")
    traffic_percent: float = Field(
        ge=0.0, le=100.0, description="Share of traffic the canary must receive after this."
    )
    phase: Phase = Field(description="Phase of the rollout after this decision.")
    baseline_version: str
    canary_version: str
    policy: str = Field(description="Name of the policy in force.")
    summary: str = Field(description="One line a person reads first.")
    reasons: list[CheckReason] = Field(default_factory=list)
    page: bool = Field(
        default=False, description="A person must act now (a frozen rollout, a failed recovery)."
    )
    compensation: list[CompensationHook] = Field(
        default_factory=list,
        description="On a rollback: the rollout's compensation hooks, for the hook runner.",
    )


def decision_id_for(deployment: str, seq: int, action: str) -> str:
    """Deterministic decision id: a UUIDv5 of deployment, sequence number and action.

    >>> decision_id_for("d1", 0, "advance") == decision_id_for("d1", 0, "advance")
    True
    """
    return str(uuid.uuid5(_DECISION_NAMESPACE, f"{deployment}\x1f{seq}\x1f{action}"))
