"""``canarystream simulate``: JSON Lines out, clear errors in."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner

import canarystream.cli.simulate_cmd  # noqa: F401  (registers the command)
from canarystream.cli.app import app
from canarystream.contracts.events import input_event_adapter
from canarystream.simulate.presets import preset_names

runner = CliRunner()


def lines(output: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in output.splitlines()]


def test_writes_valid_json_lines_to_stdout() -> None:
    result = runner.invoke(app, ["simulate", "healthy", "--duration", "20", "--share", "10"])
    assert result.exit_code == 0, result.output
    events = lines(result.stdout)
    assert [e["type"] for e in events[:2]] == ["deployment_started", "traffic_shifted"]
    assert len(events) > 3000
    for event in events:
        input_event_adapter.validate_python(event)
    assert {e.get("version") for e in events[2:]} == {"v1", "v2"}


def test_the_seed_makes_runs_reproducible() -> None:
    def run(seed: str) -> str:
        args = ["simulate", "errors-x3", "--duration", "5", "--share", "50", "--seed", seed]
        return runner.invoke(app, args).stdout

    assert run("3") == run("3")
    assert run("3") != run("4")


def test_writes_to_a_file_with_overrides(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    args = ["simulate", "healthy", "healthy", "low-traffic", "--duration", "10", "--rps", "50"]
    result = runner.invoke(app, [*args, "--share", "50", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    events = lines(out.read_text())
    assert f"wrote {len(events)} events" in result.stderr
    starts = [e for e in events if e["type"] == "deployment_started"]
    # a preset named twice runs again as another service
    assert [(e["deployment"], e["service"]) for e in starts] == [
        ("healthy", "healthy"),
        ("healthy-2-healthy", "healthy-2"),
        ("low-traffic", "low-traffic"),
    ]
    requests = [e for e in events if e["type"] == "request"]
    assert max(e["ts"] for e in events) < starts[0]["ts"] + 10
    per_service = {s: sum(e["service"] == s for e in requests) for s in ("healthy", "low-traffic")}
    assert 350 < per_service["low-traffic"] < 650  # --rps 50 for every scenario


def test_runs_scenario_files(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "deployment": "pay-1",
                "service": "payments",
                "duration": "8s",
                "traffic": {"total_rps": 100},
                "regression": {"kind": "errors_add", "add": 0.5},
            }
        )
    )
    result = runner.invoke(app, ["simulate", "--scenario", str(path), "--share", "50"])
    assert result.exit_code == 0, result.output
    events = lines(result.stdout)
    assert events[0]["deployment"] == "pay-1"
    canary = [e for e in events if e["type"] == "request" and e["version"] == "v2"]
    assert sum(e["status"] >= 500 for e in canary) > 0.3 * len(canary)


def test_an_unknown_preset_is_refused_with_the_known_ones() -> None:
    result = runner.invoke(app, ["simulate", "healthy", "nope", "--share", "5"])
    assert result.exit_code == 2
    assert "unknown preset 'nope'" in result.output
    assert all(name in result.output.replace("\n", " ") for name in ("healthy", "diurnal"))


def test_an_invalid_scenario_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("deployment: d\nservice: s\ntraffic:\n  total_rps: -4\n")
    result = runner.invoke(app, ["simulate", "--scenario", str(path), "--share", "5"])
    assert result.exit_code == 2
    assert "traffic.total_rps" in result.output


def test_nothing_to_run_and_bad_durations_are_refused() -> None:
    result = runner.invoke(app, ["simulate"])
    assert result.exit_code == 2 and "healthy" in result.output
    result = runner.invoke(app, ["simulate", "healthy", "--duration", "soon"])
    assert result.exit_code == 2 and "duration" in result.output


def test_lists_the_presets() -> None:
    result = runner.invoke(app, ["simulate", "--list"])
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == preset_names()


@dataclass(frozen=True)
class _Decision:
    deployment: str
    traffic_percent: float
    phase: str
    ts: float
    summary: str


class _Engine:
    def __init__(self, policies: Any = None) -> None:
        self.policies = policies

    def process(self, event: dict[str, Any]) -> list[_Decision]:
        if event["type"] == "deployment_started":
            return [_Decision(event["deployment"], 20.0, "running", event["ts"], "stage 0")]
        return []


def test_closed_loop_by_default_with_a_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("canarystream.engine")
    module.Engine = _Engine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "canarystream.engine", module)
    result = runner.invoke(app, ["simulate", "gauge-only", "--duration", "10"])
    assert result.exit_code == 0, result.output
    events = lines(result.stdout)
    canary = [e for e in events if e.get("version") == "v2" and e["type"] == "request"]
    assert 0.1 < len(canary) / sum(e["type"] == "request" for e in events) < 0.3
    assert "gauge-only: running at 20 % (+0s): stage 0" in result.stderr
