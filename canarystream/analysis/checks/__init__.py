"""Checks: one module per kind, each owning its policy model, its unit, its evidence.

See :mod:`~canarystream.analysis.checks.base` for the verdicts and the shared shapes, and
:mod:`~canarystream.analysis.checks.registry` for the kinds.
"""

from canarystream.analysis.checks.base import (
    MAX_UNITS_PER_CHECK,
    CheckGroup,
    CheckModel,
    Evidence,
    Gate,
    Tick,
    Trackers,
    Unit,
)
from canarystream.analysis.checks.error_rate import ErrorRateCheck, ErrorRateUnit
from canarystream.analysis.checks.gauge import Direction, GaugeCheck, GaugeUnit
from canarystream.analysis.checks.latency import LatencyCheck, LatencyQuantileUnit, LatencyTracker
from canarystream.analysis.checks.latency_shift import LatencyShiftCheck, LatencyShiftUnit
from canarystream.analysis.checks.probe import ProbeCheck, ProbeUnit
from canarystream.analysis.checks.registry import (
    KINDS,
    UNIT_CLASSES,
    Check,
    CheckKind,
    check_name,
    model_for,
)
from canarystream.analysis.checks.slo import (
    SloErrorRateCheck,
    SloErrorRateUnit,
    SloLatencyCheck,
    SloLatencyUnit,
)

__all__ = [
    "KINDS",
    "MAX_UNITS_PER_CHECK",
    "UNIT_CLASSES",
    "Check",
    "CheckGroup",
    "CheckKind",
    "CheckModel",
    "Direction",
    "ErrorRateCheck",
    "ErrorRateUnit",
    "Evidence",
    "Gate",
    "GaugeCheck",
    "GaugeUnit",
    "LatencyCheck",
    "LatencyQuantileUnit",
    "LatencyShiftCheck",
    "LatencyShiftUnit",
    "LatencyTracker",
    "ProbeCheck",
    "ProbeUnit",
    "SloErrorRateCheck",
    "SloErrorRateUnit",
    "SloLatencyCheck",
    "SloLatencyUnit",
    "Tick",
    "Trackers",
    "Unit",
    "check_name",
    "model_for",
]
