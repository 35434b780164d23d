"""Scenario validation, overrides and scenario files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

from canarystream.errors import ConfigError
from canarystream.simulate.scenario import (
    LoadPattern,
    Scenario,
    TailOnly,
    load_scenarios,
    scenario_from_mapping,
)

NAMES = {"deployment": "d1", "service": "shop"}


def invalid(**fields: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        scenario_from_mapping({**NAMES, **fields})
    return str(caught.value)


def test_defaults_describe_a_plausible_service() -> None:
    scenario = Scenario(**NAMES)
    assert scenario.traffic.baseline_mode == "stable"
    assert scenario.end_ts == scenario.start_ts + scenario.duration
    assert {e.name for e in scenario.endpoints} == {"/browse", "/cart", "/pay"}
    assert {g.name for g in scenario.gauges} == {"cpu_utilization", "db_pool_saturation"}
    assert scenario.regression is None


def test_durations_accept_strings_and_regressions_are_told_apart_by_kind() -> None:
    scenario = scenario_from_mapping(
        {
            **NAMES,
            "duration": "30m",
            "regression": {"kind": "tail_only", "factor": 3, "onset": "2m"},
        }
    )
    assert scenario.duration == 1800.0
    assert isinstance(scenario.regression, TailOnly)
    assert (scenario.regression.onset, scenario.regression.fraction) == (120.0, 0.05)


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"traffic": {"total_rps": -1}}, "traffic.total_rps"),
        ({"trafic": {}}, "trafic"),
        ({"regression": {"kind": "errors_mult"}}, "regression.errors_mult.factor"),
        ({"regression": {"kind": "explode"}}, "regression"),
        (
            {"regression": {"kind": "latency_mult", "factor": 2, "endpoint": "/x"}},
            "regression.endpoint",
        ),
        (
            {"regression": {"kind": "errors_mult", "factor": 2, "dependency": "redis"}},
            "regression.dependency",
        ),
        ({"regression": {"kind": "gauge_only", "gauge": "memory", "add": 1}}, "regression.gauge"),
        (
            {"endpoints": [{"name": "/a", "weight": 1, "dependencies": ["x"]}]},
            "endpoints.0.dependencies",
        ),
        ({"endpoints": [{"name": "/a", "weight": 1}, {"name": "/a", "weight": 2}]}, "endpoints.1"),
        ({"canary_version": "v1"}, "canary_version"),
        ({"error_rate": 1.5}, "error_rate"),
        ({"gauges": [{"name": "g", "mean": 1, "low": 2, "high": 1}]}, "gauges.0"),
        ({"traffic": {"baseline_mode": "paired"}}, "policy"),
        (
            {"traffic": {"baseline_mode": "paired"}, "policy": {"baseline_mode": "stable"}},
            "policy.baseline_mode",
        ),
        ({"policy": {"stages": [{"traffic_percent": 500}]}}, "policy.stages.0.traffic_percent"),
        ({"start_ts": 12.0}, "start_ts"),
    ],
)
def test_errors_name_the_offending_field(fields: dict, where: str) -> None:
    message = invalid(**fields)
    assert f"  {where}" in message or f"  {where}:" in message, message


def test_paired_traffic_accepts_a_named_or_paired_inline_policy() -> None:
    paired = {"baseline_mode": "paired", "cohort_rps": 10}
    assert scenario_from_mapping({**NAMES, "traffic": paired, "policy": "paired-policy"})
    inline = {"name": "p", "baseline_mode": "paired"}
    scenario = scenario_from_mapping({**NAMES, "traffic": paired, "policy": inline})
    assert scenario.policy == inline


def test_overrides_change_the_rate_of_the_mode_in_use() -> None:
    stable = Scenario(**NAMES).override(rps=42, duration="10m", service="other")
    assert (stable.traffic.total_rps, stable.duration, stable.service) == (42, 600, "other")
    paired = scenario_from_mapping(
        {**NAMES, "traffic": {"baseline_mode": "paired"}, "policy": "p"}
    ).override(rps=7)
    assert (paired.traffic.cohort_rps, paired.traffic.total_rps) == (7, 200)
    with pytest.raises(ConfigError, match=r"traffic\.total_rps"):
        Scenario(**NAMES).override(rps=-3)


def test_the_load_multiplier_combines_ramp_and_cycle() -> None:
    load = LoadPattern(ramp_factor=3.0, diurnal_amplitude=0.5, diurnal_period=400)
    t = np.array([0.0, 100.0, 300.0, 400.0])
    expected = (1 + 2 * t / 400) * (1 + 0.5 * np.sin(2 * np.pi * t / 400))
    assert np.allclose(load.multiplier(t, 400.0), expected)
    assert np.allclose(LoadPattern().multiplier(t, 400.0), 1.0)


def test_scenario_files_hold_one_scenario_or_a_list(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump({**NAMES, "traffic": {"total_rps": 5}}))
    assert [s.traffic.total_rps for s in load_scenarios(one)] == [5]
    many = tmp_path / "many.json"
    many.write_bytes(orjson.dumps([NAMES, {"deployment": "d2", "service": "b"}]))
    assert [s.deployment for s in load_scenarios(many)] == ["d1", "d2"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", "a: [1", "not valid YAML"),
        ("bad.json", "{", "not valid JSON"),
        ("list.yaml", "- deployment: d\n  service: s\n- 3\n", "scenarios.1"),
        ("empty.yaml", "[]", "empty"),
        ("field.yaml", "deployment: d\nservice: s\nduration: -5\n", "duration"),
    ],
)
def test_bad_scenario_files_are_reported(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_scenarios(path)
    assert str(path) in str(caught.value)


def test_a_missing_scenario_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenarios(tmp_path / "absent.yaml")
