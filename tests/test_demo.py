"""``make demo``: the live loop through the broker, the offline path, and the live view."""

from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson
import pytest
from rich.console import Console
from typer.testing import CliRunner

from canarystream.cli import app
from canarystream.contracts.decision import Action, CheckReason, Decision, Phase, Verdict
from canarystream.contracts.signing import Signer
from canarystream.demo import demo_scenarios
from canarystream.demo.inbox import NotificationInbox, demo_notify_config
from canarystream.demo.scenarios import ROUTER_DELAY
from canarystream.demo.stack import DemoStack, free_port
from canarystream.demo.view import LiveView
from canarystream.security import actuator_verifier
from canarystream.settings import load_settings
from canarystream.simulate.closed_loop import simulate
from tests.support.broker import kafka_bootstrap  # noqa: F401  (a fixture)


def run_demo(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 150,
    command: tuple[str, ...] = ("canarystream", "demo"),
):
    return subprocess.run(
        [sys.executable, "-m", *command, *args],
        env={**os.environ, "COLUMNS": "120", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


runner = CliRunner()


def keys(path: Path) -> list[tuple]:
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [(d["deployment"], d["seq"], d["action"], d["ts"], d["traffic_percent"]) for d in rows]


@pytest.mark.kafka
def test_live_demo_rolls_back_the_regression_and_promotes_the_healthy_canary(
    kafka_bootstrap: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Seed 1: the regression is rolled back at 4:55, the healthy canary promoted at 12:45 of
    # the 16 minutes (the offline simulation decides the same; the run is deterministic).
    result = run_demo(
        "--speed", "200", "--minutes", "16", "--seed", "1", "--out", str(tmp_path),
        env={"KAFKA_BOOTSTRAP": kafka_bootstrap},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "replay = live" in result.stdout
    assert "decisions, each signed by the worker's Ed25519 key" in result.stdout
    # The recorder chained every verdict and decision, and the trail verifies.
    assert re.search(
        r"audit trail: (\d+) records of \1 verdicts and decisions signed by the worker, "
        r"2 chains; audit verify: ok",
        result.stdout,
    ), result.stdout[-4000:]
    live, replay = tmp_path / "decisions.live.jsonl", tmp_path / "decisions.replay.jsonl"
    assert keys(live) == keys(replay)
    final = {key[0]: key[2] for key in keys(live) if key[2] in ("promote", "rollback")}
    assert final == {"checkout-healthy": "promote", "payments-errors-x3": "rollback"}
    # The traffic followed the decisions at fixed event times, so the live fleet sent exactly
    # what the offline closed-loop simulation does, up to where the live run stopped.
    sent = (tmp_path / "events.jsonl").read_bytes().splitlines()
    simulated = simulate(demo_scenarios(minutes=16), seed=1, delay=ROUTER_DELAY)
    assert sent == [orjson.dumps(e) for e in itertools.islice(simulated, len(sent))]
    assert [orjson.loads(line)["type"] for line in sent[:2]] == ["deployment_started"] * 2
    watch = f". {tmp_path / 'watch.env'} && canarystream status --watch --clock event"
    assert watch in result.stdout
    # Governed, as in production: the worker obeyed the deployer's signed announcements.
    assert "announcements were signed by the deployer's" in " ".join(result.stdout.split())
    assert "INSECURE" not in (tmp_path / "worker.log").read_text()
    # The notifier ran beside the worker and told the demo's inbox of both outcomes.
    received = [
        orjson.loads(line) for line in (tmp_path / "notifications.jsonl").read_bytes().splitlines()
    ]
    told = {(n["body"]["event"], n["body"]["deployment"]) for n in received}
    assert {("rollback", "payments-errors-x3"), ("promote", "checkout-healthy")} <= told, told
    assert all(n["body"]["decision"]["decision_id"] == n["body"]["decision_id"] for n in received)
    assert "notification: rollback of payments-errors-x3 (json, route demo)" in result.stdout
    assert re.search(r"notifications: (\d+) of \1 →", result.stdout), result.stdout[-4000:]


def test_live_demo_without_a_broker_says_so_and_exits_2(tmp_path: Path) -> None:
    result = run_demo(
        "--out", str(tmp_path), env={"KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}, timeout=60
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "No Kafka broker answers" in result.stdout
    assert "--offline" in result.stdout


OPTIONS = ("--offline", "--speed", "--minutes", "--out", "--seed", "--batch")


def test_the_demo_is_a_subcommand_with_its_options() -> None:
    result = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in OPTIONS:
        assert option in result.output
    assert "demo" in runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output


def test_python_m_canarystream_demo_is_the_same_command() -> None:
    result = run_demo("--help", command=("canarystream.demo",), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage: canarystream demo" in result.stdout
    for option in OPTIONS:
        assert option in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--minutes", "41"], "--minutes"),
        (["--minutes", "0"], "--minutes"),
        (["--speed", "0"], "--speed"),
        (["--batch", "0"], "--batch"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_demo_options_are_usage_errors(args: list[str], needle: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--offline", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert needle in result.output
    assert not (tmp_path / "events.jsonl").exists()


def test_offline_demo_replays_its_simulation(tmp_path: Path) -> None:
    result = run_demo("--offline", "--minutes", "16", "--out", str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "identical decisions" in result.stdout
    assert (tmp_path / "events.jsonl").stat().st_size > 0
    assert (tmp_path / "decisions.jsonl").stat().st_size > 0


def test_shorter_plans_scale_the_policy_and_the_regression() -> None:
    full, short = demo_scenarios(), demo_scenarios(minutes=20)
    assert full[0].policy is None and full[1].regression.onset == 540
    assert short[1].regression.onset == 270
    assert [s["min_duration"] for s in short[0].policy["stages"]] == [180.0] * 5
    with pytest.raises(ValueError, match="minutes"):
        demo_scenarios(minutes=41)


def _decision(scenario, seq: int, action: Action, phase: Phase, percent: float) -> Decision:
    return Decision(
        decision_id=f"id-{seq}",
        deployment=scenario.deployment,
        service=scenario.service,
        seq=seq,
        action=action,
        ts=scenario.start_ts + 60 * seq,
        stage=min(seq, 2),
        traffic_percent=percent,
        phase=phase,
        baseline_version="v1",
        canary_version="v2",
        policy="default",
        summary=f"decision {seq}",
        reasons=[
            CheckReason(
                check="error_rate",
                kind="error_rate",
                verdict=Verdict.FAIL if action is Action.ROLLBACK else Verdict.PASS,
                estimate=2.5,
                upper=3.25,
                tolerance=1.1,
            )
        ],
    )


def test_live_view_shows_phase_traffic_checks_and_decisions() -> None:
    scenarios = demo_scenarios()
    view = LiveView(scenarios, speed=20, header="test")
    healthy, regressed = scenarios
    view.on_decision(_decision(regressed, 0, Action.ADVANCE, Phase.RUNNING, 1))
    view.on_decision(_decision(regressed, 1, Action.ADVANCE, Phase.RUNNING, 5))
    view.on_decision(_decision(regressed, 2, Action.ROLLBACK, Phase.ROLLED_BACK, 0))
    status = {"deployment": healthy.deployment, "phase": "running", "stage": 1, "seq": 1}
    view.on_status([{**status, "traffic_percent": 5.0, "event_time": healthy.start_ts + 125}])
    assert view.known() == {healthy.deployment}
    assert not view.all_terminal()
    assert view.worker_clock() == healthy.start_ts + 125  # the rolled-back one no longer counts

    console = Console(width=120, record=True, color_system=None)
    console.print(view)
    text = console.export_text()
    assert "rolled_back" in text and "canary traffic 0%" in text
    assert "stage 1 of 0–4 · canary traffic 5%" in text and "event time 2:05" in text
    assert "error_rate" in text and "fail" in text and "3.25" in text
    assert " 2:00 rollback" in text and "(rollback at 2:00)" in text
    assert "no check statistics yet" in text  # the healthy one has no decision in view yet


def test_the_live_demo_checks_the_broker_as_its_clients_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a secured cluster the readiness check uses the security settings too."""
    from canarystream.demo import live  # noqa: PLC0415

    seen: list = []
    monkeypatch.setattr(live, "broker_ready", lambda target: seen.append(target) is not None)
    for name, value in {
        "KAFKA_BOOTSTRAP": "127.0.0.1:19094",
        "CANARYSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CANARYSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CANARYSTREAM_KAFKA_SASL_USERNAME": "admin",
        "CANARYSTREAM_KAFKA_SASL_PASSWORD": "s3cret",
    }.items():
        monkeypatch.setenv(name, value)
    options = live.LiveOptions(out_dir=tmp_path / "out")
    assert live.run_live(options, Console(file=io.StringIO())) == 2
    (target,) = seen
    kwargs = target.client_kwargs()
    assert kwargs["bootstrap_servers"] == "127.0.0.1:19094"
    assert (kwargs["security_protocol"], kwargs["sasl_plain_username"]) == ("SASL_SSL", "admin")


def test_the_watch_file_lets_status_verify_the_runs_decisions(tmp_path: Path) -> None:
    stack = DemoStack("127.0.0.1:19092", tmp_path)
    path = stack.write_watch_env(tmp_path / "watch.env")
    printed = subprocess.run(
        ["bash", "-c", f". {path} && env"], capture_output=True, text=True, check=True
    ).stdout
    loaded = dict(line.split("=", 1) for line in printed.split("\n") if "=" in line)
    assert loaded["CANARYSTREAM_TOPIC_PREFIX"] == stack.prefix
    settings = load_settings(
        kafka_bootstrap=loaded["KAFKA_BOOTSTRAP"],
        verify_keys=orjson.loads(loaded["CANARYSTREAM_VERIFY_KEYS"]),
        signing_scheme=loaded["CANARYSTREAM_SIGNING_SCHEME"],
    )
    verifier = actuator_verifier(settings)
    worker = Signer.ed25519(stack.worker_key.private_file.read_text())
    assert verifier is not None and verifier.verify(b"decision", worker.sign(b"decision"))


def test_the_demo_inbox_records_every_post_and_summarises_it(tmp_path: Path) -> None:
    lines: list[str] = []
    inbox = NotificationInbox(tmp_path / "notifications.jsonl", lines.append)
    config = demo_notify_config(inbox.base_url)
    (route,) = config.routes
    try:
        for body in (b'{"event": "rollback", "deployment": "d1"}', b"not json"):
            request = urllib.request.Request(route.url, data=body, method="POST")
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200
        assert inbox.wait_for(2, 5)
    finally:
        inbox.close()
    saved = [
        orjson.loads(line) for line in (tmp_path / "notifications.jsonl").read_bytes().splitlines()
    ]
    assert [(n["route"], n["body"]) for n in saved] == [
        ("demo", {"event": "rollback", "deployment": "d1"}),
        ("demo", "not json"),
    ]
    assert lines == [
        "notification: rollback of d1 (json, route demo)",
        "notification: an unreadable body on route demo",
    ]
