"""Replay: merge by ts, skip and report bad lines, same decisions as feeding the engine."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from canarystream.engine import Engine
from canarystream.replay import (
    Rejection,
    ReplayInputError,
    StrictReplayError,
    replay_files,
    replay_lines,
)
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
    assert [(r.line, r.reason, r.events, r.rejected) for r in rejected] == [
        (11, "malformed_json", 1, 1),
        (21, "invalid_field", 1, 1),
        (41, "not_an_object", 2, 2),  # one report per line, however many events it holds
    ]
    assert "latency_ms" in rejected[1].message
    assert str(rejected[0]).startswith(f"{path}:11: malformed_json:")
    assert rejected[2].message.startswith("2 of 2 events rejected (not_an_object 2): [0] ")
    assert result.rejected == {"malformed_json": 1, "invalid_field": 1, "not_an_object": 2}
    assert result.rejected_lines == 3
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


def test_a_line_holding_a_huge_array_is_one_report_not_one_per_element(tmp_path: Path) -> None:
    events = _events("healthy", "checkout")[:300]
    numbers = b"[" + b",".join(b"1" for _ in range(500_000)) + b"]"  # about 1 MB
    mixed = orjson.dumps([events[150], 5, {"type": "nope", "ts": T0 + 30}])
    lines = [orjson.dumps(e) for e in events]
    lines.insert(100, numbers)
    lines.insert(200, mixed)
    path = tmp_path / "huge.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rejected: list[Rejection] = []
    started = time.perf_counter()
    result = replay_files([path], on_reject=rejected.append)
    assert time.perf_counter() - started < 30
    assert [(r.line, r.reason, r.events, r.rejected) for r in rejected] == [
        (101, "not_an_object", 500_000, 500_000),
        (201, "mixed", 3, 2),
    ]
    assert len(rejected[0].message) < 2_000
    assert rejected[0].message.startswith("500000 of 500000 events rejected (not_an_object")
    assert rejected[0].message.endswith("; 499995 more")
    assert "[1] not_an_object" in rejected[1].message and "[2] unknown_type" in rejected[1].message
    assert result.rejected == {"not_an_object": 500_001, "unknown_type": 1}
    assert result.rejected_lines == 2


def _stamped(ts_list: list[float]) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "type": "request",
                "ts": T0 + ts,
                "service": "checkout",
                "version": "v1",
                "latency_ms": 5.0,
                "status": 200,
            }
        )
        + b"\n"
        for ts in ts_list
    ]


@pytest.mark.parametrize("files", [1, 2], ids=["one-file", "merged"])
def test_strict_rejects_time_going_backwards_within_a_file(tmp_path: Path, files: int) -> None:
    path = tmp_path / "backwards.jsonl"
    path.write_bytes(b"".join(_stamped([1, 2, 2, 5, 3, 6])))
    paths = [path]
    if files == 2:
        other = tmp_path / "other.jsonl"
        other.write_bytes(b"".join(_stamped([0, 4])))
        paths.append(other)
    # Without strict a late event is the engine's business (counted late, no rejection).
    assert replay_files(paths).rejected == {}
    with pytest.raises(StrictReplayError) as caught:
        replay_files(paths, strict=True)
    rejection = caught.value.rejection
    assert (rejection.source, rejection.line, rejection.reason) == (str(path), 5, "ts_backwards")
    assert f"{T0 + 3:.3f}" in rejection.message and "line 4" in rejection.message


def test_strict_accepts_a_batch_in_time_order(tmp_path: Path) -> None:
    events = _events("errors-x3", "payments")[:400]
    path = tmp_path / "batched.jsonl"
    path.write_bytes(
        b"".join(orjson.dumps(events[i : i + 50]) + b"\n" for i in range(0, len(events), 50))
    )
    assert replay_files([path], strict=True).events == 400


def test_gzip_input_is_read_transparently(tmp_path: Path) -> None:
    events = _events("errors-x3", "payments")
    plain = _write(tmp_path / "events.jsonl", events)
    packed = tmp_path / "events.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    got: list[Any] = []
    result = replay_files([packed], on_decision=lambda d: got.append(d.model_dump()))
    assert result.events == len(events) and not result.rejected
    assert got == _decisions(events)
    # Also merged with a plain file, and whatever the name says.
    renamed = tmp_path / "events.data"
    renamed.write_bytes(packed.read_bytes())
    assert replay_files([renamed]).events == len(events)


def test_a_corrupt_gzip_input_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    events = _events("healthy", "checkout")
    packed = tmp_path / "events.jsonl.gz"
    packed.write_bytes(gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events))[:5000])
    with pytest.raises(ReplayInputError, match=r"events\.jsonl\.gz"):
        replay_files([packed])


def test_nothing_judged_is_reported() -> None:
    telemetry_only = replay_lines([("t", _stamped([1, 2, 3]))])
    assert not telemetry_only.judged
    started = orjson.dumps(
        {
            "type": "deployment_started",
            "ts": T0,
            "deployment": "d",
            "service": "checkout",
            "baseline_version": "v1",
            "canary_version": "v2",
        }
    )
    assert replay_lines([("t", [started, *_stamped([1, 2, 3])])]).judged
