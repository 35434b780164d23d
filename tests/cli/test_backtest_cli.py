"""``canarystream backtest``: recorded rollouts judged under a policy, beside the recording.

The decisions are replay's; the table on stderr puts, per rollout, the policy's course above
the recording's own decisions (when it holds any). Exit codes are replay's.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from canarystream.backtest import Course
from canarystream.cli import app
from canarystream.contracts.decision import Action, Phase
from canarystream.engine import Engine
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.scenario import scenario_from_mapping
from tests.support.decisions import decision

runner = CliRunner()
T0 = 1_790_000_000.0
ROOT = Path(__file__).parents[2]
FAST_PAIRED = ROOT / "deploy" / "policies" / "fast-paired.yaml"


def _lines(items: list[Any]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A closed-loop recording (the default policy steered it) and the decisions taken live."""
    folder = tmp_path_factory.mktemp("live")
    scenario = scenario_from_mapping(
        {
            "deployment": "payments-7",
            "service": "payments",
            "start_ts": T0,
            "duration": 120,
            "traffic": {"total_rps": 50},
            "regression": {"kind": "errors_add", "add": 0.2},
        }
    )
    engine = Engine()
    decisions: list[Any] = []

    class Recorder:
        def process(self, event: dict[str, Any]) -> list[Any]:
            out = engine.process(event)
            decisions.extend(out)
            return out

    events = list(simulate([scenario], seed=1, engine=Recorder()))
    (folder / "events.jsonl").write_bytes(_lines(events))
    (folder / "decisions.jsonl").write_bytes(_lines([d.model_dump(mode="json") for d in decisions]))
    return folder / "events.jsonl", folder / "decisions.jsonl"


def _backtest(*args: Any, stdin: bytes | None = None) -> Any:
    return runner.invoke(app, ["backtest", *map(str, args)], input=stdin)


def _rows(stderr: str) -> list[list[str]]:
    """The table's rows, cells split on two spaces or more (plain text in a pipe)."""
    lines = stderr.splitlines()
    start = lines.index("Backtest") + 2  # the title, then the header
    end = next(i for i, line in enumerate(lines) if " judged: " in line)
    return [re.split(r"\s{2,}", line.strip()) for line in lines[start:end]]


def test_the_same_policy_ends_each_rollout_as_recorded(live: tuple[Path, Path]) -> None:
    events, decisions = live
    result = _backtest(events, decisions)
    assert result.exit_code == 0, result.output
    # the decisions written are replay's, byte for byte
    replayed = runner.invoke(app, ["replay", str(events), "--quiet"])
    assert result.stdout_bytes == replayed.stdout_bytes == decisions.read_bytes()
    policy, recorded = _rows(result.stderr)
    assert policy[:2] == ["payments-7", "policy default"]
    assert recorded[0] == "recorded"
    assert policy[2:] == recorded[1:]
    assert policy[2] == "rolled_back" and policy[-1] == "2"  # the start, then the rollback
    assert "the policy ends 1 of 1 rollouts as recorded" in result.stderr


def test_another_policy_is_compared_with_what_was_recorded(live: tuple[Path, Path]) -> None:
    events, decisions = live
    result = _backtest(events, decisions, "--policy", FAST_PAIRED, "--quiet")
    assert result.exit_code == 0, result.output
    policy, recorded = _rows(result.stderr)
    assert policy[1:3] == ["policy fast-paired", "rolled_back"]
    assert policy[4] == "5"  # its first stage
    assert recorded[:2] == ["recorded", "rolled_back"]
    assert recorded[3] == "1"  # the default policy's
    assert policy[6].startswith("rollback +") and recorded[5].startswith("rollback +")
    assert "the policy ends 1 of 1 rollouts as recorded" in result.stderr
    assert "lines" not in result.stderr  # --quiet: no counts


def test_without_recorded_decisions_the_table_says_so(live: tuple[Path, Path]) -> None:
    events, _ = live
    result = _backtest(events)
    assert result.exit_code == 0, result.output
    _, recorded = _rows(result.stderr)
    assert recorded == ["recorded", "no decisions recorded", "-", "-", "-", "-", "0"]
    assert "the recording holds no decisions to compare with" in result.stderr


def test_the_output_is_the_same_bytes_every_time(live: tuple[Path, Path], tmp_path: Path) -> None:
    events, decisions = live
    runs = [_backtest(events, decisions, "--out", tmp_path / f"{n}.jsonl") for n in range(2)]
    assert [r.exit_code for r in runs] == [0, 0]
    assert (tmp_path / "0.jsonl").read_bytes() == (tmp_path / "1.jsonl").read_bytes()
    assert runs[0].stderr == runs[1].stderr
    # one file holding both, in time order, or gzip: the same judgement
    merged = sorted(
        [orjson.loads(line) for line in events.read_bytes().splitlines()]
        + [orjson.loads(line) for line in decisions.read_bytes().splitlines()],
        key=lambda item: item["ts"],
    )
    packed = tmp_path / "merged.jsonl.gz"
    packed.write_bytes(gzip.compress(_lines(merged)))
    again = _backtest(packed, "--out", tmp_path / "2.jsonl")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "2.jsonl").read_bytes() == (tmp_path / "0.jsonl").read_bytes()
    assert _rows(again.stderr) == _rows(runs[0].stderr)


def test_a_bad_decision_line_is_reported_where_it_is(
    live: tuple[Path, Path], tmp_path: Path
) -> None:
    events, decisions = live
    first = orjson.loads(decisions.read_bytes().splitlines()[0])
    bad = tmp_path / "decisions.jsonl"
    bad.write_bytes(_lines([first | {"seq": -1}]))
    result = _backtest(events, bad)
    assert result.exit_code == 0, result.output
    assert f"{bad}:1: invalid_decision: seq:" in result.stderr
    strict = _backtest(events, bad, "--strict", "--out", tmp_path / "out.jsonl")
    assert strict.exit_code == 1
    assert f"{bad}:1: invalid_decision" in strict.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_decisions_about_a_rollout_never_announced_are_listed_unjudged(
    live: tuple[Path, Path], tmp_path: Path
) -> None:
    events, decisions = live
    other = [
        orjson.loads(line) | {"deployment": "elsewhere-1"}
        for line in decisions.read_bytes().splitlines()
    ]
    extra = tmp_path / "other.jsonl"
    extra.write_bytes(_lines(other))
    result = _backtest(events, extra, "--quiet")
    assert result.exit_code == 0, result.output
    rows = _rows(result.stderr)
    assert rows[2][:3] == ["elsewhere-1", "policy", "not judged (no announcement)"]
    assert rows[3][:2] == ["recorded", "rolled_back"]


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (None, 2, "no such file"),
        (b"not json\n{\n", 3, "nothing judged"),
        (gzip.compress(b'{"type": "request"}\n' * 2000)[:100], 2, "cannot read"),
    ],
    ids=["missing", "garbage", "truncated-gzip"],
)
def test_bad_files_exit_as_replay_does(
    tmp_path: Path, content: bytes | None, code: int, message: str
) -> None:
    path = tmp_path / "recording.jsonl"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "decisions.jsonl"
    out.write_bytes(b"old\n")
    result = _backtest(path, "--out", out)
    assert result.exit_code == code, result.output
    assert message in result.stderr and str(path) in result.stderr
    assert out.read_bytes() == b"old\n"
    assert _backtest(path, "--out", path).exit_code == 2


def test_a_course_counts_each_stage_once_and_times_from_the_start() -> None:
    steps = [
        (0, Action.ADVANCE, 0, 1.0, Phase.RUNNING),
        (45, Action.HOLD, 0, 1.0, Phase.HELD),
        (90, Action.ADVANCE, 0, 1.0, Phase.RUNNING),  # hold cleared: the same stage
        (400, Action.ADVANCE, 1, 5.0, Phase.RUNNING),
        (500, Action.HOLD, 1, 5.0, Phase.HELD),
        (520, Action.ROLLBACK, 1, 0.0, Phase.ROLLED_BACK),
        (820, Action.ROLLBACK_VERIFIED, 1, 0.0, Phase.ROLLED_BACK),
    ]
    course = Course()
    for seq, (at, action, stage, share, phase) in enumerate(steps):
        made = decision(
            "d", seq, action, stage=stage, share=share, phase=phase, ts=T0 + at, spacing=0
        )
        course.add(made, T0)
    assert course.stages == [1.0, 5.0]
    assert (course.first_hold, course.ended, course.phase_since) == (
        45.0,
        (Action.ROLLBACK, 520.0),
        520.0,
    )
    assert course.outcome == "rolled_back (recovery verified)"
    assert course.decisions == 7
