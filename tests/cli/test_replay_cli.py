"""``canarystream replay`` keeps its data safe and says by its exit code what happened.

Exit codes: 0 decisions written, 1 ``--strict`` found a bad line, 2 usage or unreadable
input (nothing is written), 3 nothing could be judged (no rollout started, or every line
was rejected). ``--out`` is never one of the inputs and is replaced only when the replay
succeeds.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from canarystream import replay
from canarystream.cli import app
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset

runner = CliRunner()
T0 = 1_790_000_000.0
OLD = b'{"previous": "decisions"}\n'


@pytest.fixture(scope="module")
def recorded() -> bytes:
    scenario = build_preset("errors-x3", service="payments", rps=100, duration=600, start_ts=T0)
    return b"".join(orjson.dumps(e) + b"\n" for e in simulate([scenario], seed=1))


@pytest.fixture
def events(tmp_path: Path, recorded: bytes) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(recorded)
    return path


def _replay(*args: Any, stdin: bytes | None = None) -> Any:
    return runner.invoke(app, ["replay", *map(str, args)], input=stdin)


def _expected(events: Path) -> bytes:
    result = _replay(events, "--quiet")
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_out_equal_to_an_input_is_refused_before_anything_is_written(events: Path) -> None:
    before = events.read_bytes()
    result = _replay(events, "--out", events)
    assert result.exit_code == 2
    assert "is one of the inputs" in result.stderr
    assert events.read_bytes() == before


@pytest.mark.parametrize("alias", ["relative", "symlink", "hardlink", "second-input"])
def test_out_naming_an_input_by_another_path_is_refused(
    events: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alias: str
) -> None:
    before = events.read_bytes()
    inputs: list[Any] = [events]
    out: Any
    if alias == "relative":
        monkeypatch.chdir(tmp_path)
        out = Path("sub", "..", events.name)
        (tmp_path / "sub").mkdir()
    elif alias == "symlink":
        out = tmp_path / "link.jsonl"
        out.symlink_to(events)
    elif alias == "hardlink":
        out = tmp_path / "hard.jsonl"
        os.link(events, out)
    else:
        other = tmp_path / "other.jsonl"
        other.write_bytes(b"")
        inputs = [other, events]
        out = events
    result = _replay(*inputs, "--out", out, "--quiet")
    assert result.exit_code == 2, result.output
    assert "is one of the inputs" in result.stderr
    assert events.read_bytes() == before


def test_out_is_written_through_a_temporary_file_and_a_rename(events: Path, tmp_path: Path) -> None:
    out = tmp_path / "decisions.jsonl"
    out.write_bytes(OLD)
    out.chmod(0o640)
    result = _replay(events, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == _expected(events)
    assert out.stat().st_mode & 0o777 == 0o640
    assert _leftovers(tmp_path) == []


def test_out_through_a_symlink_replaces_the_file_it_points_to(events: Path, tmp_path: Path) -> None:
    target = tmp_path / "real.jsonl"
    target.write_bytes(OLD)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert _replay(events, "--out", link, "--quiet").exit_code == 0
    assert link.is_symlink() and target.read_bytes() == _expected(events)


def test_an_interrupted_replay_leaves_the_old_out_intact(
    events: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = replay.replay_files

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        seen = 0

        def on_decision(decision: Any) -> None:
            nonlocal seen
            kwargs_decision(decision)
            seen += 1
            if seen == 1:  # right after the rollout starts, with events still to read
                raise KeyboardInterrupt

        kwargs_decision = kwargs["on_decision"]
        return real(*args, **{**kwargs, "on_decision": on_decision})

    monkeypatch.setattr(replay, "replay_files", interrupted)
    out = tmp_path / "decisions.jsonl"
    out.write_bytes(OLD)
    result = _replay(events, "--out", out, "--quiet")
    assert result.exit_code != 0
    assert out.read_bytes() == OLD
    assert _leftovers(tmp_path) == []


def test_strict_failure_leaves_the_old_out_intact(events: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(events.read_bytes() + b"not json\n")
    out = tmp_path / "decisions.jsonl"
    out.write_bytes(OLD)
    result = _replay(bad, "--out", out, "--strict", "--quiet")
    assert result.exit_code == 1
    assert out.read_bytes() == OLD
    assert _leftovers(tmp_path) == []


def test_dash_reads_stdin(events: Path, tmp_path: Path) -> None:
    out = tmp_path / "decisions.jsonl"
    result = _replay("-", "--out", out, "--quiet", stdin=events.read_bytes())
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == _expected(events)
    twice = _replay("-", "-", "--quiet", stdin=b"")
    assert twice.exit_code == 2 and "standard input" in twice.stderr


def test_gzip_input_is_read_transparently(events: Path, tmp_path: Path) -> None:
    packed = tmp_path / "events.jsonl.gz"
    packed.write_bytes(gzip.compress(events.read_bytes()))
    result = _replay(packed, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == _expected(events)
    piped = _replay("-", "--quiet", stdin=packed.read_bytes())
    assert piped.stdout_bytes == _expected(events)


def test_a_corrupt_gzip_input_exits_2_and_writes_nothing(events: Path, tmp_path: Path) -> None:
    packed = tmp_path / "events.jsonl.gz"
    packed.write_bytes(gzip.compress(events.read_bytes())[:4000])
    out = tmp_path / "decisions.jsonl"
    out.write_bytes(OLD)
    result = _replay(packed, "--out", out, "--quiet")
    assert result.exit_code == 2
    assert "cannot read" in result.stderr and "events.jsonl.gz" in result.stderr
    assert out.read_bytes() == OLD


def _announcement(**fields: Any) -> bytes:
    event = {
        "type": "deployment_started",
        "ts": T0,
        "deployment": "payments-1",
        "service": "payments",
        "baseline_version": "v1",
        "canary_version": "v2",
    }
    return orjson.dumps(event | fields) + b"\n"


NOTHING_JUDGED = {
    "empty": b"",
    "blank-lines": b"\n\n",
    "binary": bytes(range(256)) * 4,
    "all-malformed": b"{\n[1,\nnot json\n",
    "unknown-policy": _announcement(policy="no-such-policy"),
    "policy-out-of-bounds": _announcement(policy={"tick": 1e-12}),
    "telemetry-only": orjson.dumps(
        {
            "type": "request",
            "ts": T0,
            "service": "payments",
            "version": "v1",
            "latency_ms": 3.0,
            "status": 200,
        }
    )
    + b"\n",
}


@pytest.mark.parametrize("content", NOTHING_JUDGED.values(), ids=NOTHING_JUDGED.keys())
def test_nothing_judged_exits_3_and_keeps_the_old_out(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "input.jsonl"
    path.write_bytes(content)
    out = tmp_path / "decisions.jsonl"
    out.write_bytes(OLD)
    result = _replay(path, "--out", out, "--quiet")
    assert result.exit_code == 3, result.output
    assert "nothing judged" in result.stderr
    assert out.read_bytes() == OLD


def test_an_unknown_policy_name_is_named_on_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "input.jsonl"
    path.write_bytes(_announcement(policy="no-such-policy"))
    result = _replay(path, "--quiet")
    assert result.exit_code == 3
    assert "unknown policy 'no-such-policy'" in result.stderr.replace("\n", "")


def test_a_judged_replay_with_rejected_lines_exits_0(events: Path, tmp_path: Path) -> None:
    path = tmp_path / "some-bad.jsonl"
    path.write_bytes(events.read_bytes() + b"not json\n[1, 2, 3]\n")
    result = _replay(path)
    assert result.exit_code == 0, result.output
    assert "2 lines rejected" in result.stderr


def test_one_report_per_line_on_the_console(tmp_path: Path, recorded: bytes) -> None:
    path = tmp_path / "huge-line.jsonl"
    path.write_bytes(recorded + b"[" + b",".join(b"7" for _ in range(100_000)) + b"]\n")
    result = _replay(path)
    assert result.exit_code == 0
    reports = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert len(reports) == 1
    assert "100000 of 100000 events rejected" in reports[0]


def test_exit_codes_through_the_installed_command(events: Path, tmp_path: Path) -> None:
    """The same codes from a real process (the console script), not only the test runner."""

    def run(*args: Any) -> int:
        command = [sys.executable, "-m", "canarystream", "replay", *map(str, args), "--quiet"]
        done = subprocess.run(command, capture_output=True, timeout=120, check=False)
        return done.returncode

    before = events.read_bytes()
    assert run(events, "--out", events) == 2
    assert events.read_bytes() == before
    out = tmp_path / "out.jsonl"
    assert run(events, "--out", out) == 0 and out.stat().st_size > 0
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert run(empty) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"not json\n")
    assert run(bad, "--strict") == 1
