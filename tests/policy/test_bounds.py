"""Policy bounds: every number has a range, and an out-of-range one is refused by name.

Each case gives a value just inside its range and one just outside; the error must name the
field. Cross-field bounds (every window and duration at least one tick, at most 10,000 ticks
per window) are checked on the whole policy and name the field's path too.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from canarystream.analysis import checks
from canarystream.cli import app
from canarystream.engine import Engine
from canarystream.errors import ContractError, PolicyError
from canarystream.policy import Policy, load_policy, policy_from_mapping
from canarystream.policy.model import MAX_UNITS_PER_CHECK
from canarystream.replay import Rejection, replay_files

DAYS_30 = 30 * 86_400.0
T0 = 1_790_000_000.0

BASE: dict[str, Any] = {
    "tick": 5,
    "stages": [
        {"traffic_percent": 10, "min_duration": 60},
        {"traffic_percent": 50, "min_duration": 60},
    ],
    "checks": [
        {"kind": "error_rate"},  # 0
        {"kind": "latency", "quantile": 0.9},  # 1
        {"kind": "latency_shift"},  # 2
        {"kind": "gauge", "metric": "cpu"},  # 3
        {"kind": "probe"},  # 4
        {"kind": "slo_error_rate"},  # 5
        {"kind": "slo_latency", "max_ms": 500},  # 6
    ],
}


def _with(changes: dict[str, Any]) -> dict[str, Any]:
    """BASE with each dotted path set (intermediate mappings are created)."""
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        node: Any = data
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


def _stages(count: int) -> list[dict[str, Any]]:
    return [{"traffic_percent": 100 * (i + 1) / count, "min_duration": 60} for i in range(count)]


def _gauges(count: int) -> list[dict[str, Any]]:
    return [{"kind": "gauge", "metric": f"m{i}"} for i in range(count)]


def _by_endpoint(count: int) -> list[dict[str, Any]]:
    return [{"kind": "error_rate", "name": f"e{i}", "breakdown": "endpoint"} for i in range(count)]


DEFAULT_CHECKS = [check.model_dump(mode="json") for check in Policy().checks]

LONG_TICK = {
    "stages.0.min_duration": 300,
    "stages.1.min_duration": 300,
    "checks.3.window": 300,
    "guards.no_data.hold_after": 300,
    "guards.no_data.rollback_after": 600,
    "admission.max_skew": 600,
    "admission.idle_after": 300,
}

# (id, changes just inside the range, changes just outside, what the error must say)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("tick-low", {"tick": 0.1}, {"tick": 0.099}, "tick"),
    ("tick-low-string", {"tick": "100ms"}, {"tick": "99ms"}, "tick"),
    ("tick-high", {**LONG_TICK, "tick": 300}, {**LONG_TICK, "tick": 300.5}, "tick"),
    ("stages-count", {"stages": _stages(100)}, {"stages": _stages(101)}, "stages"),
    ("checks-count", {"checks": _gauges(32)}, {"checks": _gauges(33)}, "checks"),
    (
        "units-per-second",
        {"tick": 1, "checks": _by_endpoint(15) + _gauges(10)},
        {"tick": 1, "checks": _by_endpoint(15) + _gauges(11)},
        "checks: up to 251 check units",
    ),
    (
        "units-default-checks",
        {"tick": 0.1, "checks": DEFAULT_CHECKS},
        {"tick": 0.1, "checks": DEFAULT_CHECKS + _gauges(5)},
        "tick",
    ),
    ("description", {"description": "x" * 4096}, {"description": "x" * 4097}, "description"),
    ("alpha", {"alpha": 1e-6}, {"alpha": 0.9e-6}, "alpha"),
    (
        "advance-confidence",
        {"advance_confidence": 0.9999, "promote_confidence": 0.9999},
        {"advance_confidence": 0.99991, "promote_confidence": 0.99991},
        "advance_confidence",
    ),
    (
        "promote-confidence",
        {"promote_confidence": 0.9999},
        {"promote_confidence": 0.99991},
        "promote_confidence",
    ),
    (
        "min-duration-tick",
        {"stages.0.min_duration": 5},
        {"stages.0.min_duration": 4.9},
        "stages.0.min_duration: 4.9 s is shorter than tick (5 s)",
    ),
    (
        "min-duration-high",
        {"stages.0.min_duration": DAYS_30},
        {"stages.0.min_duration": DAYS_30 + 1},
        "stages.0.min_duration",
    ),
    (
        "max-duration-high",
        {"stages.1.max_duration": "720h"},
        {"stages.1.max_duration": DAYS_30 + 1},
        "stages.1.max_duration",
    ),
    (
        "min-samples",
        {"stages.0.min_samples": 10**9},
        {"stages.0.min_samples": 10**9 + 1},
        "stages.0.min_samples",
    ),
    ("deadline-tick", {"deadline": 5}, {"deadline": 4.9}, "deadline: 4.9 s is shorter than"),
    ("deadline-high", {"deadline": DAYS_30}, {"deadline": DAYS_30 + 1}, "deadline"),
    (
        "weight-low",
        {"checks.0.weight": 0.001},
        {"checks.0.weight": 0.0009},
        "checks.0.error_rate.weight",
    ),
    ("weight-high", {"checks.0.weight": 1000}, {"checks.0.weight": 1000.5}, "weight"),
    (
        "error-ratio-tolerance",
        {"checks.0.tolerance": 50, "checks.0.advance_tolerance": 50},
        {"checks.0.tolerance": 50, "checks.0.advance_tolerance": 50.5},
        "checks.0.error_rate.advance_tolerance",
    ),
    (
        "error-ratio-promote",
        {"checks.0.promote_tolerance": 1.5},
        {"checks.0.advance_tolerance": 60, "checks.0.promote_tolerance": 55},
        "checks.0.error_rate.promote_tolerance",
    ),
    (
        "error-statuses-count",
        {"checks.0.error_statuses": list(range(500, 600))},
        {"checks.0.error_statuses": list(range(499, 600))},
        "checks.0.error_rate.error_statuses",
    ),
    (
        "latency-quantile-low",
        {"checks.1.quantile": 0.001},
        {"checks.1.quantile": 0.0009},
        "checks.1.latency.quantile",
    ),
    (
        "latency-quantile-high",
        {"checks.1.quantile": 0.9999},
        {"checks.1.quantile": 0.99991},
        "checks.1.latency.quantile",
    ),
    (
        "latency-margin",
        {"checks.1.advance_abs_margin": 1},
        {"checks.1.advance_abs_margin": 1.01},
        "advance_abs_margin",
    ),
    (
        "latency-shift-min-ticks",
        {"checks.2.min_ticks": 10_000},
        {"checks.2.min_ticks": 10_001},
        "checks.2.latency_shift.min_ticks",
    ),
    (
        "gauge-window-tick",
        {"checks.3.window": 5},
        {"checks.3.window": 1e-9},
        "checks.3.window: 1e-09 s is shorter than tick (5 s)",
    ),
    (
        "gauge-window-ticks",
        {"checks.3.window": 50_000},
        {"checks.3.window": 50_005},
        "checks.3.window: 50005 s is more than 10,000 ticks",
    ),
    (
        "gauge-window-ticks-small-tick",
        {"tick": 0.1, "checks.3.window": 1000},
        {"tick": 0.1, "checks.3.window": 1000.1},
        "checks.3.window",
    ),
    (
        "gauge-tolerance",
        {"checks.3.tolerance": 1e12, "checks.3.advance_tolerance": 1e12},
        {"checks.3.tolerance": 1e12, "checks.3.advance_tolerance": 1.1e12},
        "checks.3.gauge.advance_tolerance",
    ),
    (
        "gauge-min-windows",
        {"checks.3.min_windows": 10_000},
        {"checks.3.min_windows": 10_001},
        "checks.3.gauge.min_windows",
    ),
    ("gauge-metric", {"checks.3.metric": "m" * 256}, {"checks.3.metric": "m" * 257}, "metric"),
    ("probe-name", {"checks.4.probe": "p" * 256}, {"checks.4.probe": "p" * 257}, "probe"),
    (
        "probe-tolerance",
        {"checks.4.tolerance": 50, "checks.4.advance_tolerance": 50},
        {"checks.4.tolerance": 50.5, "checks.4.advance_tolerance": 50.5},
        "checks.4.probe.tolerance",
    ),
    (
        "slo-error-rate",
        {"checks.5.max_error_rate": 0.999},
        {"checks.5.max_error_rate": 1.0},
        "checks.5.slo_error_rate.max_error_rate",
    ),
    (
        "slo-latency-budget",
        {"checks.6.max_ms": 3_600_000},
        {"checks.6.max_ms": 3_600_001},
        "checks.6.slo_latency.max_ms",
    ),
    (
        "drift-threshold",
        {"guards.baseline_drift.threshold": 1e6},
        {"guards.baseline_drift.threshold": 1.1e6},
        "guards.baseline_drift.threshold",
    ),
    (
        "drift-allowance",
        {"guards.baseline_drift.allowance": 1000},
        {"guards.baseline_drift.allowance": 1001},
        "guards.baseline_drift.allowance",
    ),
    (
        "drift-cooldown",
        {"guards.baseline_drift.cooldown": DAYS_30},
        {"guards.baseline_drift.cooldown": DAYS_30 + 1},
        "guards.baseline_drift.cooldown",
    ),
    (
        "ratio-alpha",
        {"guards.sample_ratio.alpha": 1e-6},
        {"guards.sample_ratio.alpha": 0.9e-6},
        "guards.sample_ratio.alpha",
    ),
    (
        "ratio-settle",
        {"guards.sample_ratio.settle": DAYS_30},
        {"guards.sample_ratio.settle": DAYS_30 + 1},
        "guards.sample_ratio.settle",
    ),
    (
        "no-data-hold",
        {"guards.no_data.hold_after": 5},
        {"guards.no_data.hold_after": 4},
        "guards.no_data.hold_after: 4 s is shorter than tick (5 s)",
    ),
    (
        "no-data-rollback",
        {"guards.no_data.rollback_after": DAYS_30},
        {"guards.no_data.rollback_after": DAYS_30 + 1},
        "guards.no_data.rollback_after",
    ),
    (
        "verification-window-tick",
        {"rollback_verification.window": 5},
        {"rollback_verification.window": 4},
        "rollback_verification.window: 4 s is shorter than tick (5 s)",
    ),
    (
        "verification-window-ticks",
        {"rollback_verification.window": 50_000},
        {"rollback_verification.window": 50_005},
        "rollback_verification.window: 50005 s is more than 10,000 ticks",
    ),
    (
        "verification-ratio",
        {"rollback_verification.error_ratio_tolerance": 50},
        {"rollback_verification.error_ratio_tolerance": 50.5},
        "rollback_verification.error_ratio_tolerance",
    ),
    (
        "verification-latency",
        {"rollback_verification.latency_tolerance": 10},
        {"rollback_verification.latency_tolerance": 10.5},
        "rollback_verification.latency_tolerance",
    ),
    (
        "verification-confidence",
        {"rollback_verification.confidence": 0.9999},
        {"rollback_verification.confidence": 0.99991},
        "rollback_verification.confidence",
    ),
    (
        "verification-min-requests",
        {"rollback_verification.min_requests": 10**9},
        {"rollback_verification.min_requests": 10**9 + 1},
        "rollback_verification.min_requests",
    ),
    ("admission-skew", {"admission.max_skew": 10}, {"admission.max_skew": 9}, "admission.max_skew"),
    (
        "admission-idle",
        {"admission.idle_after": 5},
        {"admission.idle_after": 4},
        "admission.idle_after: 4 s is shorter than tick (5 s)",
    ),
]


@pytest.mark.parametrize(
    ("inside", "outside", "said"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_bound_holds_just_inside_and_fails_just_outside(
    inside: dict[str, Any], outside: dict[str, Any], said: str
) -> None:
    assert isinstance(policy_from_mapping(_with(inside)), Policy)
    with pytest.raises(PolicyError) as caught:
        policy_from_mapping(_with(outside))
    assert said in str(caught.value)


@pytest.mark.parametrize(
    "path",
    [
        "tick",
        "alpha",
        "stages.0.traffic_percent",
        "stages.0.min_duration",
        "checks.0.tolerance",
        "checks.3.tolerance",
        "checks.3.window",
        "checks.6.max_ms",
        "guards.baseline_drift.threshold",
        "rollback_verification.latency_tolerance",
    ],
)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_numbers_are_finite(path: str, value: float) -> None:
    with pytest.raises(PolicyError, match=path.rsplit(".", maxsplit=1)[-1]):
        policy_from_mapping(_with({path: value}))


def test_durations_too_large_for_a_float_are_refused_by_name(tmp_path: Path) -> None:
    # YAML reads a long digit string as an int; float() of it overflows.
    path = tmp_path / "huge.yaml"
    path.write_text("tick: " + "9" * 400 + "\n")
    with pytest.raises(PolicyError, match="tick"):
        load_policy(path)
    with pytest.raises(PolicyError, match="min_duration"):
        policy_from_mapping(_with({"stages.0.min_duration": 10**400}))
    with pytest.raises(PolicyError, match="min_duration"):
        policy_from_mapping(_with({"stages.0.min_duration": "9" * 400}))


@pytest.mark.parametrize(
    "statuses", [[[None, 500]], [[500.5, 600.5]], [[float("inf"), 1]], [{}], ["5xx"], 500]
)
def test_status_sets_of_any_shape_are_refused_by_name(statuses: Any) -> None:
    with pytest.raises(PolicyError, match="error_statuses"):
        policy_from_mapping(_with({"checks.0.error_statuses": statuses}))


def test_the_unit_count_is_the_analysis_one() -> None:
    assert MAX_UNITS_PER_CHECK == checks.MAX_UNITS_PER_CHECK
    assert Policy().max_units() == 5 + MAX_UNITS_PER_CHECK  # gauges over every metric


def test_shipped_and_default_policies_stay_valid_and_unchanged() -> None:
    shipped = Path(__file__).parents[2] / "deploy" / "policies"
    for path in sorted(shipped.glob("*.yaml")):
        load_policy(path)
    assert Policy().tick == 5 and len(Policy().stages) == 5


def _announcement(policy: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "deployment_started",
        "ts": T0,
        "deployment": "checkout-42",
        "service": "checkout",
        "baseline_version": "v1",
        "canary_version": "v2",
        "policy": policy,
    }


OUT_OF_BOUNDS = [
    ({"tick": 1e-12}, "tick"),
    ({"checks": [{"kind": "gauge", "window": 1e-9}]}, "checks.0.window: 1e-09 s is shorter"),
]


@pytest.mark.parametrize(("policy", "said"), OUT_OF_BOUNDS)
def test_an_inline_policy_out_of_bounds_is_refused_at_announcement(
    policy: dict[str, Any], said: str
) -> None:
    engine = Engine()
    with pytest.raises(ContractError) as caught:
        engine.process(_announcement(policy))
    assert caught.value.reason == "invalid_policy"
    assert said in str(caught.value)
    assert not engine.rollouts


@pytest.mark.parametrize(("policy", "said"), OUT_OF_BOUNDS)
def test_replay_rejects_the_announcement_naming_the_field(
    tmp_path: Path, policy: dict[str, Any], said: str
) -> None:
    path = tmp_path / "events.jsonl"
    events = [_announcement(policy)] + [
        {
            "type": "metric",
            "ts": T0 + i,
            "service": "checkout",
            "version": version,
            "name": "cpu",
            "value": 0.5,
        }
        for i in range(1, 30)
        for version in ("v1", "v2")
    ]
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    rejected: list[Rejection] = []
    result = replay_files([path], on_reject=rejected.append)
    assert [(r.line, r.reason) for r in rejected] == [(1, "invalid_policy")]
    assert said in rejected[0].message
    assert not result.engine.rollouts

    cli = CliRunner().invoke(app, ["replay", str(path), "--quiet"])
    assert cli.exit_code == 3, cli.output
    assert said in cli.stderr.replace("\n", "")


def test_policy_validate_names_the_out_of_bounds_field(tmp_path: Path) -> None:
    path = tmp_path / "tiny-window.yaml"
    path.write_text("checks:\n  - {kind: gauge, window: 1.0e-9}\n")
    result = CliRunner().invoke(app, ["policy", "validate", str(path)])
    assert result.exit_code == 1
    assert "checks.0.window: 1e-09 s is shorter than tick (5 s)" in result.stderr.replace("\n", "")
