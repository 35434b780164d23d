"""The run ``replay`` and ``backtest`` share: an interruption leaves ``--out`` as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canarystream import backtest, replay
from canarystream.cli import app
from tests.support.decisions import decision

runner = CliRunner()
OLD = b'{"previous": "decisions"}\n'


@pytest.mark.parametrize(
    ("command", "module", "name"),
    [("replay", replay, "replay_files"), ("backtest", backtest, "backtest_files")],
    ids=["replay", "backtest"],
)
def test_an_interruption_after_a_decision_leaves_the_old_out_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, module: Any, name: str
) -> None:
    def interrupted(*args: Any, on_decision: Any, **kwargs: Any) -> Any:
        on_decision(decision("payments-1", 0))
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, interrupted)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"{}\n")
    out = tmp_path / "decisions.jsonl"
    out.write_bytes(OLD)
    result = runner.invoke(app, [command, str(events), "--out", str(out), "--quiet"])
    assert result.exit_code != 0
    assert out.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decisions.jsonl", "events.jsonl"]
