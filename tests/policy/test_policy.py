"""Policy: the built-in default, parsing of durations and statuses, errors that name fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from canarystream.errors import PolicyError
from canarystream.policy import (
    ErrorRateCheck,
    GaugeCheck,
    LatencyCheck,
    Policy,
    PolicyRegistry,
    load_policy,
    policy_from_mapping,
)


def test_default_policy_is_the_documented_one() -> None:
    policy = Policy()
    assert [s.traffic_percent for s in policy.stages] == [1, 5, 10, 25, 50]
    assert all(s.min_duration == 360 for s in policy.stages)
    assert policy.alpha == 0.05
    errors = [c for c in policy.checks if isinstance(c, ErrorRateCheck)]
    assert [c.tolerance for c in errors] == [1.1]
    latency = [c for c in policy.checks if isinstance(c, LatencyCheck)]
    assert sorted(c.quantile for c in latency) == [0.5, 0.9, 0.99]
    assert all(c.tolerance == 0.05 for c in latency)
    gauges = [c for c in policy.checks if isinstance(c, GaugeCheck)]
    assert [(g.metric, g.tolerance) for g in gauges] == [("*", 0.05)]


def test_durations_and_status_ranges_are_parsed() -> None:
    policy = policy_from_mapping(
        {
            "stages": [{"traffic_percent": 10, "min_duration": "90s", "max_duration": "1h"}],
            "checks": [{"kind": "error_rate", "error_statuses": "429,500-599"}],
        }
    )
    assert policy.stages[0].min_duration == 90 and policy.stages[0].deadline == 3600
    assert policy.checks[0].error_statuses == ((429, 429), (500, 599))


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"stages": [{"traffic_percent": 0}]}, "stages.0.traffic_percent"),
        ({"stages": [{"traffic_percent": 5, "min_duration": "5x"}]}, "stages.0.min_duration"),
        ({"alpha": 0.9}, "alpha"),
        ({"checks": [{"kind": "latency", "quantile": 1.5}]}, "quantile"),
        ({"checks": [{"kind": "nope"}]}, "checks.0"),
        ({"checks": [{"kind": "error_rate"}, {"kind": "error_rate"}]}, "duplicate check name"),
        ({"checks": [{"kind": "error_rate", "error_statuses": "700"}]}, "error_statuses"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_errors_name_the_field(data: dict, where: str) -> None:
    with pytest.raises(PolicyError, match=where):
        policy_from_mapping(data)


def test_promote_bound_defaults_within_the_check_s_own_tolerances() -> None:
    assert LatencyCheck().promote_bound() == 0.075
    assert LatencyCheck(tolerance=0.1, advance_tolerance=0.3).promote_bound() == 0.1
    assert ErrorRateCheck().promote_bound() == 1.35
    assert ErrorRateCheck(tolerance=1.5, advance_tolerance=2.0).promote_bound() == 1.5
    with pytest.raises(ValueError, match="promote_tolerance"):
        LatencyCheck(promote_tolerance=0.2)


def test_registry_resolves_names_inline_objects_and_reports_unknown(tmp_path: Path) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text("name: slow\nstages:\n  - {traffic_percent: 50, min_duration: 30m}\n")
    registry = PolicyRegistry.from_paths([tmp_path])
    assert registry.resolve("slow").stages[0].min_duration == 1800
    assert registry.resolve(None).name == "default"
    assert registry.resolve({"name": "inline", "alpha": 0.01}).alpha == 0.01
    with pytest.raises(PolicyError, match="unknown policy 'fast'; known: default, slow"):
        registry.resolve("fast")
    assert load_policy(path).name == "slow"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PolicyError, match="not valid JSON"):
        load_policy(bad)
