"""Replay: merge by ts, skip and report bad lines, same decisions as feeding the engine."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from canarystream.engine import Engine
from canarystream.replay import Rejection, StrictReplayError, replay_files, replay_lines
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset

T0 = 1_790_000_000.0


def _events(preset: str, service: str, seed: int = 3) -> list[dict]:
    scenario = build_preset(preset, service=service, rps=60, duration=900, start_ts=T0)
    return list(simulate([scenario], seed=seed))


def _write(path: Path, events: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def _decisions(engine_events: list[dict]) -> list[dict]:
    engine = Engine()
    return [d.model_dump() for e in engine_events for d in engine.process(e)]


def test_two_files_are_one_stream_in_ts_order(tmp_path: Path) -> None:
    a = _events("errors-x3", "payments")
    b = _events("healthy", "checkout", seed=4)
    merged = sorted(a + b, key=lambda e: e["ts"])
    got: list[dict] = []
    result = replay_files(
        [_write(tmp_path / "a.jsonl", a), _write(tmp_path / "b.jsonl", b)],
        on_decision=lambda d: got.append(d.model_dump()),
    )
    assert result.events == len(a) + len(b)
    assert got == _decisions(merged)
    assert {d["deployment"] for d in got} == {"payments-errors-x3", "checkout-healthy"}
    assert any(d["action"] == "rollback" for d in got)


def test_bad_lines_are_reported_with_file_and_line_and_skipped(tmp_path: Path) -> None:
    events = _events("healthy", "checkout")[:2000]
    lines = [orjson.dumps(e) for e in events]
    lines.insert(10, b'{"type": "request", "ts": 1790000000.5, "service": ')  # truncated
    lines.insert(
        20,
        b'{"type":"request","ts":1790000001,"service":"checkout","version":"v2",'
        b'"latency_ms":"fast","status":200}',
    )
    lines.insert(30, b"")  # blank lines are allowed
    lines.insert(40, b"[1, 2]")
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rejected: list[Rejection] = []
    result = replay_files([path], on_reject=rejected.append)
    assert [(r.line, r.reason) for r in rejected] == [
        (11, "malformed_json"),
        (21, "invalid_field"),
        (41, "not_an_object"),
        (41, "not_an_object"),
    ]
    assert "latency_ms" in rejected[1].message
    assert str(rejected[0]).startswith(f"{path}:11: malformed_json:")
    assert result.rejected == {"malformed_json": 1, "invalid_field": 1, "not_an_object": 2}
    # The good lines still made their decisions.
    assert result.decisions["advance"] >= 1


def test_strict_stops_at_the_first_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"type": "nope", "ts": 1790000000}\n')
    with pytest.raises(StrictReplayError) as caught:
        replay_files([path], strict=True)
    assert caught.value.rejection.line == 1
    assert caught.value.reason == "unknown_type"


def test_a_line_may_hold_a_batch(tmp_path: Path) -> None:
    events = _events("errors-x3", "payments")
    path = tmp_path / "batched.jsonl"
    path.write_bytes(
        b"".join(orjson.dumps(events[i : i + 50]) + b"\n" for i in range(0, len(events), 50))
    )
    got: list[dict] = []
    result = replay_files([path], on_decision=lambda d: got.append(d.model_dump()))
    assert result.events == len(events)
    assert got == _decisions(events)


def test_unknown_version_is_counted_not_fatal(tmp_path: Path) -> None:
    events = _events("healthy", "checkout")[:500]
    stray = dict(events[100], version="v0-old")
    path = _write(tmp_path / "stray.jsonl", [*events[:101], stray, *events[101:]])
    result = replay_files([path])
    assert result.rejected == {"unknown_version": 1}
    assert result.events == 501


def test_replay_lines_accepts_a_list_of_lines() -> None:
    """A plain list (not an iterator) is read once, not re-read from its start forever."""
    started = {
        "type": "deployment_started",
        "ts": 1.79e9,
        "deployment": "d",
        "service": "s",
        "baseline_version": "v1",
        "canary_version": "v2",
    }
    lines = [orjson.dumps(started)] + [
        orjson.dumps(
            {
                "type": "request",
                "ts": 1.79e9 + i / 10,
                "service": "s",
                "version": "v1",
                "latency_ms": 10.0,
                "status": 200,
            }
        )
        for i in range(5000)
    ]
    result = replay_lines([("list", lines)])
    assert result.lines == 5001
