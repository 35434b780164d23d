"""``canarystream audit verify --file``: an export checked without a broker, and its exit codes."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from canarystream.audit.chain import record_hash
from canarystream.cli import app
from tests.audit.test_chain import trail


def write(path: Path, records: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", "verify", *args])
    return result.exit_code, result.output


def test_a_clean_export_verifies(tmp_path: Path) -> None:
    code, out = run("--file", str(write(tmp_path / "t.jsonl", trail([0, 1, 0, 1, 2]))))
    assert code == 0, out
    assert "5 records" in out and "3 deployments" in out
    assert "ok: every chain is complete, in order and unaltered" in out


def test_a_re_sealed_edit_is_reported_with_where_it_is(tmp_path: Path) -> None:
    log = trail([0, 0, 0])
    log[1] = {**log[1], "subject": {"n": "changed"}}
    log[1]["hash"] = record_hash(log[1])
    path = write(tmp_path / "t.jsonl", log)
    code, out = run("--file", str(path))
    assert code == 1
    assert "PROBLEMS: 1 modified" in out
    assert f"modified: 'a' seq 2 at {path}:3: its prev does not match seq 1 at {path}:2" in out
    code, out = run("--file", str(path), "--json")
    report = orjson.loads(out)
    assert (code, report["ok"], report["problem_counts"]) == (1, False, {"modified": 1})
    assert report["problems"][0]["where"] == f"{path}:3"


def test_an_unreadable_trail_or_a_bad_option_exits_2(tmp_path: Path) -> None:
    code, out = run("--file", str(tmp_path / "absent.jsonl"))
    assert code == 2 and "error:" in out
    assert run("--no-such-option")[0] == 2
