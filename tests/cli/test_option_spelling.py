"""One spelling per option across commands; the old spellings still work, hidden, with a
warning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer.main
from typer.testing import CliRunner

from canarystream.cli import app

runner = CliRunner()
POLICIES = Path(__file__).parents[2] / "deploy" / "policies"


def _commands(command: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    command = command or typer.main.get_command(app)
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def _visible_options() -> dict[str, dict[str, set[str]]]:
    """command -> long option -> its other names, for options shown in help."""
    found: dict[str, dict[str, set[str]]] = {}
    for name, command in _commands():
        for param in command.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            longs = [o for o in param.opts if o.startswith("--")]
            found.setdefault(name, {})[longs[0]] = set(param.opts)
    return found


def test_each_concept_has_one_spelling_everywhere() -> None:
    options = _visible_options()
    spelled = {option for by_command in options.values() for option in by_command}
    assert not spelled & {
        "--policies",
        "--output",
        "--output-file",
        "--policy-file",
        "--from-beginning",
    }
    for command in ("actuate", "notify"):  # consumer groups: where a new one starts
        assert "--start-from" in options[command], command
    for command in ("replay", "simulate", "worker"):
        assert "--policy" in options[command], command
    for command, by_name in options.items():
        if "--out" in by_name:
            assert "-o" in by_name["--out"], f"{command} --out has no -o"


def test_simulate_takes_policy_and_the_old_policies_with_a_warning() -> None:
    args = ["simulate", "healthy", "--duration", "60", "--rps", "20"]
    new = runner.invoke(app, [*args, "--policy", str(POLICIES)])
    old = runner.invoke(app, [*args, "--policies", str(POLICIES)])
    assert new.exit_code == 0 and old.exit_code == 0, new.output + old.output
    assert new.stdout == old.stdout and orjson.loads(new.stdout.splitlines()[0])
    assert "deprecated" not in new.stderr
    assert "warning: --policies is deprecated; use --policy" in old.stderr


def test_the_old_spelling_is_not_shown_in_help() -> None:
    result = runner.invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert "--policy" in result.stdout and "--policies" not in result.stdout
    result = runner.invoke(app, ["audit", "export", "--help"], env={"COLUMNS": "200"})
    assert "--out" in result.stdout and "--output" not in result.stdout


@pytest.mark.parametrize("flag", ["--out", "-o"])
def test_replay_out_has_a_short_form(tmp_path: Path, flag: str) -> None:
    events = tmp_path / "events.jsonl"
    made = runner.invoke(app, ["simulate", "healthy", "--duration", "120", "-o", str(events)])
    assert made.exit_code == 0, made.output
    out = tmp_path / "decisions.jsonl"
    result = runner.invoke(app, ["replay", str(events), flag, str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().count(b"\n") >= 1
