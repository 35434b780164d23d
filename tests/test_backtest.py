"""Backtests of open-loop recordings: routing fixed by the recording, stated by its
traffic_shifted events, judged under a policy with no rollout held for a decision not applied.

Each recording is simulated open loop (a fixed 1-in-6 canary, or Argo-like steps) and judged
by :func:`canarystream.backtest.backtest_files`, the ``backtest`` command's own function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from canarystream.backtest import BacktestResult, backtest_files
from canarystream.cli import app
from canarystream.cli.replay_cmd import build_engine
from canarystream.contracts.decision import Action, Phase
from canarystream.simulate.closed_loop import FixedShareEngine, simulate
from canarystream.simulate.presets import build_preset
from canarystream.simulate.scenario import scenario_from_mapping

T0 = 1_790_000_000.0
ONE_IN_SIX = 100.0 / 6
ROOT = Path(__file__).parents[1]
FAST_PAIRED = ROOT / "deploy" / "policies" / "fast-paired.yaml"
runner = CliRunner()


def record(
    folder: Path, preset: str, *, rps: float, duration: float, routing: list[dict[str, float]]
) -> Path:
    """An open-loop recording of ``preset``: its routing fixed whatever any engine decides."""
    scenario = build_preset(preset, rps=rps, duration=duration, start_ts=T0, routing=routing)
    events = simulate([scenario], seed=1, engine=FixedShareEngine(0.0))
    path = folder / f"{preset}.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    return path


def judge(path: Path, policy: Path | None = None) -> tuple[BacktestResult, list[Any]]:
    decisions: list[Any] = []
    engine = build_engine([policy] if policy is not None else [])
    result = backtest_files([path], engine=engine, on_decision=decisions.append)
    assert result.replay.rejected_lines == 0, result.replay.first_rejection
    return result, decisions


@pytest.fixture(scope="module")
def one_in_six(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy canary given one request in six for 4 minutes."""
    folder = tmp_path_factory.mktemp("one-in-six")
    return record(folder, "healthy", rps=60, duration=240, routing=[{"at": 0, "percent": 100 / 6}])


@pytest.fixture(scope="module")
def paired_one_in_six(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same, where a fresh baseline as large as the canary is its cohort (Kayenta-style):
    one request in six to each, the rest to the old fleet, outside the comparison."""
    folder = tmp_path_factory.mktemp("paired")
    scenario = build_preset(
        "healthy", rps=10, duration=240, start_ts=T0, routing=[{"at": 0, "percent": 100 / 6}]
    ).model_dump()
    scenario["traffic"]["baseline_mode"] = "paired"
    scenario["policy"] = "fast-paired"
    events = simulate([scenario_from_mapping(scenario)], seed=1, engine=FixedShareEngine(0.0))
    path = folder / "paired.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    return path


@pytest.mark.parametrize(
    ("recording", "policy", "share"),
    [("one_in_six", None, ONE_IN_SIX), ("paired_one_in_six", FAST_PAIRED, 50.0)],
    ids=["default", "fast-paired-on-a-paired-recording"],
)
def test_a_fixed_one_in_six_canary_is_not_held_for_its_sample_ratio(
    recording: str, policy: Path | None, share: float, request: pytest.FixtureRequest
) -> None:
    # Before traffic_shifted, every such rollout was held at 45 s, for good: the share routed
    # was the policy's first stage (1 %, 5 %), never the 1 in 6 the recording holds.
    result, decisions = judge(request.getfixturevalue(recording), policy)
    assert [d for d in decisions if d.action is Action.HOLD] == []
    ratio = next(r for r in decisions[-1].reasons if r.check == "sample_ratio")
    assert ratio.verdict.value == "pass"
    (rollout,) = result.rollouts
    assert rollout.routed == [share]


def test_a_paired_policy_judges_a_stable_recording_at_its_stated_share(
    one_in_six: Path,
) -> None:
    # The recording's shifts name no decision: they state the cohorts' share (one in six
    # beside the whole old fleet), which a paired policy then expects too, instead of the
    # half a paired baseline would get (it was held at 45 s for the sample ratio).
    result, decisions = judge(one_in_six, FAST_PAIRED)
    assert [d for d in decisions if d.action is Action.HOLD] == []
    ratio = next(r for r in decisions[-1].reasons if r.check == "sample_ratio")
    assert ratio.verdict.value == "pass"
    assert ratio.message.endswith("vs routed 16.7%")
    (rollout,) = result.rollouts
    assert rollout.routed == [ONE_IN_SIX]


def test_a_regressed_open_loop_canary_is_rolled_back(tmp_path: Path) -> None:
    path = record(
        tmp_path, "errors-x3", rps=100, duration=180, routing=[{"at": 0, "percent": 100 / 6}]
    )
    _, decisions = judge(path)
    assert decisions[-1].action is Action.ROLLBACK
    assert "critical regression: error_rate" in decisions[-1].summary
    assert [d.action for d in decisions[:-1]] == [Action.ADVANCE]  # never held on the way


def test_a_healthy_canary_is_promoted_by_a_policy_matched_to_the_recording(
    one_in_six: Path, tmp_path: Path
) -> None:
    matched = tmp_path / "matched.yaml"
    matched.write_text(
        "name: matched\n"
        f"stages: [{{traffic_percent: {ONE_IN_SIX!r}, min_duration: 3m}}]\n"
        "checks:\n"
        "  - {kind: error_rate, tolerance: 2, advance_tolerance: 3}\n"
        "  - {kind: latency_shift}\n"
    )
    result, decisions = judge(one_in_six, matched)
    assert [(d.action, d.ts - T0) for d in decisions] == [
        (Action.ADVANCE, 0.0),
        (Action.PROMOTE, 180.0),
    ]
    assert result.rollouts[0].policy.phase is Phase.PROMOTED


def test_argo_like_steps_are_not_awaited_as_the_policy_decided_them(tmp_path: Path) -> None:
    # 20/40/60 at fixed times, whatever the policy decides: the policy's own stages (1 %, 5 %)
    # are never observed applied, and a backtest does not hold the rollout for that.
    steps = [{"at": 0, "percent": 20}, {"at": 60, "percent": 40}, {"at": 120, "percent": 60}]
    path = record(tmp_path, "healthy", rps=60, duration=180, routing=steps)
    fast = tmp_path / "fast.yaml"
    fast.write_text(
        "name: fast\nstages: [{traffic_percent: 5, min_duration: 30s}, "
        "{traffic_percent: 50, min_duration: 30s}]\n"
        "checks: [{kind: latency_shift, min_ticks: 3}]\n"
    )
    result, decisions = judge(path, fast)
    assert [d for d in decisions if d.action is Action.HOLD] == []
    assert decisions[-1].action is Action.PROMOTE
    assert result.rollouts[0].routed == [20.0, 40.0, 60.0]


def test_the_table_shows_the_recorded_routing(one_in_six: Path) -> None:
    result = runner.invoke(app, ["backtest", str(one_in_six), "--quiet"])
    assert result.exit_code == 0, result.output
    recorded = next(line for line in result.stderr.splitlines() if "recorded" in line).split()
    assert recorded == [
        "recorded",
        "no",
        "decisions",
        "recorded",
        "-",
        "routed",
        "16.6667",
        "-",
        "-",
        "0",
    ]


def test_an_inline_policy_awaits_no_decision_either(tmp_path: Path) -> None:
    scenario = build_preset(
        "healthy", rps=60, duration=150, start_ts=T0, routing=[{"at": 0, "percent": 30}]
    ).model_dump()
    scenario["policy"] = {
        "name": "inline-fast",
        "stages": [
            {"traffic_percent": 5, "min_duration": "30s"},
            {"traffic_percent": 50, "min_duration": "30s"},
            {"traffic_percent": 80, "min_duration": "30s"},
        ],
        "checks": [{"kind": "latency_shift", "min_ticks": 3}],
    }
    events = simulate([scenario_from_mapping(scenario)], seed=2, engine=FixedShareEngine(0.0))
    path = tmp_path / "inline.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    result, decisions = judge(path)
    assert result.rollouts[0].policy_name == "inline-fast"
    assert [d for d in decisions if d.action is Action.HOLD] == []
    assert [d.traffic_percent for d in decisions if d.action is Action.ADVANCE][:3] == [5, 50, 80]
