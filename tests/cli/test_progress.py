"""Progress of long work: replay reports the bytes read of the files' size; nothing is drawn
when stderr is not a terminal."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from canarystream.cli import app
from canarystream.replay import replay_files
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset

runner = CliRunner()
T0 = 1_790_000_000.0


def _events(path: Path, *, packed: bool = False) -> Path:
    scenario = build_preset("healthy", rps=50, duration=600, start_ts=T0)
    data = b"".join(orjson.dumps(e) + b"\n" for e in simulate([scenario], seed=1))
    path.write_bytes(gzip.compress(data) if packed else data)
    return path


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_replay_reports_bytes_read_up_to_the_files_size(tmp_path: Path, packed: bool) -> None:
    events = _events(tmp_path / "events.jsonl", packed=packed)
    seen: list[tuple[int, int]] = []
    replay_files([events], on_progress=lambda lines, read: seen.append((lines, read)))
    assert len(seen) > 1, "one update per chunk of lines"
    assert [lines for lines, _ in seen] == sorted(lines for lines, _ in seen)
    assert [read for _, read in seen] == sorted(read for _, read in seen)
    assert 0 < seen[0][1] < seen[-1][1] == events.stat().st_size


def test_no_progress_is_drawn_in_a_pipe(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    made = runner.invoke(app, ["simulate", "healthy", "--duration", "120", "-o", str(out)])
    assert made.exit_code == 0, made.output
    assert made.stderr.startswith(f"wrote {sum(1 for _ in out.open())} events to {out}")
    assert "ETA" not in made.stderr and "━" not in made.stderr
    replayed = runner.invoke(app, ["replay", str(out), "-o", str(tmp_path / "d.jsonl")])
    assert replayed.exit_code == 0, replayed.output
    assert "ETA" not in replayed.stderr and "━" not in replayed.stderr
