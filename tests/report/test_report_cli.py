"""``canarystream report``: replay's engine and decisions, one HTML file, replay's exit codes."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from canarystream.cli import app
from canarystream.contracts.codec import decode_decision

runner = CliRunner()


def _run(*args: Any) -> Any:
    return runner.invoke(app, list(map(str, args)))


def test_the_report_holds_exactly_the_decisions_replay_writes(
    recorded: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    result = _run("report", recorded, "--out", out, "--title", "Friday's rollouts")
    assert result.exit_code == 0, result.output
    replayed = _run("replay", recorded, "--quiet")
    assert replayed.exit_code == 0, replayed.output
    decisions = [decode_decision(line) for line in replayed.stdout.encode().splitlines()]
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<title>Friday&#x27;s rollouts</title>" in page
    rows = re.findall(r'<tr><td class="num">\+[^<]*<div class="detail">([^<]*)</div>', page)
    assert len(rows) == len(decisions) > 4  # one row per decision, with its ISO time
    for decision in decisions:
        assert escape(decision.summary) in page
    events = sum(1 for _ in recorded.open("rb"))
    assert f"Replayed {events:,} events from 1 file." in page
    assert "report written to" in result.stderr


def test_standard_output_and_a_default_title(recorded: Path) -> None:
    result = _run("report", recorded, "--out", "-", "--quiet")
    assert result.exit_code == 0
    assert f"<title>Rollout report: {recorded.name}</title>" in result.stdout
    assert result.stderr == ""


def test_nothing_judged_leaves_the_output_as_it_was(tmp_path: Path) -> None:
    events = tmp_path / "telemetry.jsonl"
    event = {"type": "request", "ts": 1.0, "service": "s", "version": "v", "latency_ms": 1.0}
    events.write_bytes(orjson.dumps({**event, "status": 200}) + b"\n")
    out = tmp_path / "report.html"
    out.write_text("old")
    result = _run("report", events, "--out", out)
    assert result.exit_code == 3 and "nothing judged" in result.stderr
    assert out.read_text() == "old"


def test_usage_errors_write_nothing(recorded: Path, tmp_path: Path) -> None:
    assert _run("report", recorded, "--out", recorded).exit_code == 2  # never an input
    assert recorded.read_bytes().startswith(b"{")
    missing = _run("report", tmp_path / "missing.jsonl", "--out", tmp_path / "r.html")
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    assert not (tmp_path / "r.html").exists()
    assert _run("report", recorded).exit_code == 2  # --out is required
