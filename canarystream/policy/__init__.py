"""Rollout policies: model, defaults and loading."""

from canarystream.policy.loading import PolicyRegistry, load_policy, policy_from_mapping
from canarystream.policy.model import (
    Check,
    CheckKind,
    Direction,
    ErrorRateCheck,
    GaugeCheck,
    Guards,
    LatencyCheck,
    LatencyShiftCheck,
    Policy,
    ProbeCheck,
    SloErrorRateCheck,
    SloLatencyCheck,
    Stage,
    check_name,
    parse_duration,
)

__all__ = [
    "Check",
    "CheckKind",
    "Direction",
    "ErrorRateCheck",
    "GaugeCheck",
    "Guards",
    "LatencyCheck",
    "LatencyShiftCheck",
    "Policy",
    "PolicyRegistry",
    "ProbeCheck",
    "SloErrorRateCheck",
    "SloLatencyCheck",
    "Stage",
    "check_name",
    "load_policy",
    "parse_duration",
    "policy_from_mapping",
]
