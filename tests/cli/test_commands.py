"""The console commands: replay, policy validate/show, settings errors."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from canarystream.cli import app
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset

runner = CliRunner()
T0 = 1_790_000_000.0
POLICIES = Path(__file__).parents[2] / "deploy" / "policies"


def _recording(tmp_path: Path) -> Path:
    scenario = build_preset("errors-x3", service="payments", rps=300, duration=900, start_ts=T0)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in simulate([scenario], seed=1)))
    return path


def test_replay_writes_decisions_as_json_lines(tmp_path: Path) -> None:
    events = _recording(tmp_path)
    out = tmp_path / "decisions.jsonl"
    result = runner.invoke(app, ["replay", str(events), "--out", str(out)])
    assert result.exit_code == 0, result.output
    decisions = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert decisions[0]["action"] == "advance" and decisions[0]["seq"] == 0
    assert decisions[-1]["action"] in ("rollback", "rollback_verified")
    assert "rollback" in [d["action"] for d in decisions]
    assert [d["seq"] for d in decisions] == list(range(len(decisions)))
    assert "rollback=1" in result.stderr


def test_replay_strict_exits_1_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type":"deployment_started"}\n')
    result = runner.invoke(app, ["replay", str(bad), "--strict", "--quiet"])
    assert result.exit_code == 1
    assert f"{bad}:1: invalid_field" in result.stderr.replace("\n", "")


def test_replay_with_a_policy_file_uses_it_as_default(tmp_path: Path) -> None:
    events = _recording(tmp_path)
    result = runner.invoke(
        app, ["replay", str(events), "--policy", str(POLICIES / "fast-paired.yaml"), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    first = orjson.loads(result.stdout.splitlines()[0])
    assert first["policy"] == "fast-paired" and first["traffic_percent"] == 5.0


def test_replay_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["replay", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_policy_validate_accepts_shipped_policies() -> None:
    for path in sorted(POLICIES.glob("*.yaml")):
        result = runner.invoke(app, ["policy", "validate", str(path)])
        assert result.exit_code == 0, result.output
        assert "valid" in result.stdout


def test_policy_validate_names_the_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - {traffic_percent: 10}\n  - {traffic_percent: 5}\n")
    result = runner.invoke(app, ["policy", "validate", str(bad)])
    assert result.exit_code == 1
    assert "stages" in result.stderr and "greater than stage 0" in result.stderr


def test_policy_show_prints_the_default_policy() -> None:
    result = runner.invoke(app, ["policy", "show"])
    assert result.exit_code == 0
    assert "traffic_percent: 50.0" in result.stdout and "alpha: 0.05" in result.stdout


def test_bad_settings_are_reported_by_variable(tmp_path: Path, monkeypatch) -> None:
    events = _recording(tmp_path)
    monkeypatch.setenv("CANARYSTREAM_POLICIES", "not json")
    result = runner.invoke(app, ["replay", str(events), "--quiet"])
    assert result.exit_code == 2
    assert "CANARYSTREAM_POLICIES" in result.stderr.replace("\n", "")
