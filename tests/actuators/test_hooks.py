"""Compensation hooks: run once, in order, on a signed rollback; real commands, a real webhook."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from canarystream.actuators.hooks import HookActuator, HookRunner, HookRunnerConfig
from canarystream.actuators.metrics import ActuationMetrics
from canarystream.actuators.service import ActuatorService
from canarystream.cli import app
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.codec import encode_decision
from canarystream.contracts.decision import Action, Decision, Phase
from canarystream.contracts.events import CompensationHook
from canarystream.contracts.signing import SIGNATURE_HEADER, Signer
from canarystream.contracts.topics import ACTUATIONS_TOPIC, DECISIONS_TOPIC
from canarystream.errors import ConfigError
from tests.support.actuators import EVERY_SERVICE, make_decision
from tests.support.broker import Stack
from tests.support.services import serve_http

SIGNER = Signer.hmac("hook test key")
PY = sys.executable
# Appends "<hook> <deployment>" to the file named by argv[1]; exits with argv[2] (default 0).
MARK = (
    "import os, sys; open(sys.argv[1], 'a').write("
    "os.environ['CANARYSTREAM_HOOK'] + ' ' + os.environ['CANARYSTREAM_DEPLOYMENT'] + '\\n'); "
    "sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)"
)


@dataclass
class Webhook:
    """A local HTTP server recording each POST; answers ``status``."""

    url: str
    status: int = 204
    calls: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[Webhook]:
    hook = Webhook(url="")
    marker = tmp_path / "marker"

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hook.calls.append(
                {
                    "path": self.path,
                    "body": body,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    # What the command hook before it had written when this call came in.
                    "marker": marker.read_text() if marker.exists() else "",
                }
            )
            answer = b"compensated" if hook.status < 300 else b"database unavailable"
            self.send_response(hook.status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_http(Handler) as base:
        hook.url = f"{base}/compensate"
        yield hook


def rollback(hooks: list[CompensationHook], seq: int = 3) -> Decision:
    decision = make_decision(seq, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK)
    return decision.model_copy(update={"compensation": hooks})


def mark(marker: Path, name: str = "down", code: int = 0, **kw: Any) -> CompensationHook:
    return CompensationHook(name=name, command=[PY, "-c", MARK, str(marker), str(code)], **kw)


def actuator(**kw: Any) -> HookActuator:
    config = kw.pop("config", HookRunnerConfig(allow_any=True))
    return HookActuator(
        HookRunner(config),
        verifier=SIGNER.verifier(),
        scope=EVERY_SERVICE,
        metrics=ActuationMetrics(CollectorRegistry()),
        **kw,
    )


def actuate(act: HookActuator, decision: Decision, signer: Signer = SIGNER) -> ActuationReport:
    payload = encode_decision(decision)
    return asyncio.run(act.actuate(decision, signer.sign(payload), payload))


def test_a_rollback_runs_its_command_then_its_webhook_once(
    tmp_path: Path, webhook: Webhook
) -> None:
    marker = tmp_path / "marker"
    decision = rollback([mark(marker), CompensationHook(name="notify", url=webhook.url)])
    act = actuator()
    report = actuate(act, decision)
    assert report.status is ActuationStatus.APPLIED, report.detail
    assert report.backend == "hooks" and report.traffic_percent_requested == 0.0
    assert report.detail.startswith("compensation: 2 hook(s) ran: down: exit 0 in ")
    assert "notify: HTTP 204, 0 bytes in " in report.detail
    assert marker.read_text() == "down shop-2024-06\n"
    (call,) = webhook.calls
    assert call["marker"] == "down shop-2024-06\n"  # in order: the command had finished
    payload = encode_decision(decision)
    assert call["body"] == payload  # the exact bytes that were signed
    assert SIGNER.verifier().verify(payload, call["headers"][SIGNATURE_HEADER])
    assert call["headers"]["idempotency-key"] == f"{decision.decision_id}:notify"
    assert json.loads(call["body"])["compensation"][1]["name"] == "notify"

    again = actuate(act, decision)  # redelivered: never run twice
    assert again.status is ActuationStatus.REJECTED and "handled already" in again.detail
    assert marker.read_text() == "down shop-2024-06\n" and len(webhook.calls) == 1


def test_other_decisions_and_rollbacks_without_hooks_run_nothing(tmp_path: Path) -> None:
    act = actuator()
    advance = actuate(act, make_decision(0, Action.ADVANCE, 10.0))
    assert advance.status is ActuationStatus.APPLIED
    assert advance.detail == "advance: no hooks to run"
    bare = actuate(act, rollback([], seq=1))
    assert bare.status is ActuationStatus.APPLIED
    assert bare.detail == "rollback: a rollback without hooks to run"
    verified = make_decision(2, Action.ROLLBACK_VERIFIED, 0.0, Phase.ROLLED_BACK)
    assert actuate(act, verified).status is ActuationStatus.APPLIED
    stale = actuate(act, rollback([mark(tmp_path / "marker")], seq=2))
    assert stale.status is ActuationStatus.REJECTED and "not newer" in stale.detail
    assert not (tmp_path / "marker").exists()


def test_forged_or_unsigned_rollbacks_run_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    act = actuator()
    decision = rollback([mark(marker)])
    forged = actuate(act, decision, Signer.hmac("not the key"))
    assert forged.status is ActuationStatus.REJECTED
    assert forged.detail == "refused: its signature is not valid"
    payload = encode_decision(decision)
    tampered = payload.replace(b'"seq":3', b'"seq":4')
    signature = SIGNER.sign(payload)
    refused = asyncio.run(act.actuate(decision, signature, tampered))
    assert refused.status is ActuationStatus.REJECTED
    unsigned = asyncio.run(act.actuate(decision, None, payload))
    assert unsigned.detail == "refused: it is not signed"
    assert not marker.exists()
    metrics = act.metrics
    assert metrics is not None
    rejected = metrics.rejected
    assert rejected.labels(reason="bad_signature")._value.get() == 2
    assert rejected.labels(reason="unsigned")._value.get() == 1


def test_a_failing_hook_stops_the_rest_and_is_not_run_again(
    tmp_path: Path, webhook: Webhook
) -> None:
    marker = tmp_path / "marker"
    hooks = [
        mark(marker, "down", code=3),
        CompensationHook(name="notify", url=webhook.url),
    ]
    act = actuator()
    report = actuate(act, rollback(hooks))
    assert report.status is ActuationStatus.FAILED
    assert report.detail.startswith("compensation failed at 'down': down: exit 3 in ")
    assert report.detail.endswith("; notify: not run")
    assert webhook.calls == []
    assert actuate(act, rollback(hooks)).status is ActuationStatus.REJECTED
    assert marker.read_text() == "down shop-2024-06\n"
    assert act.metrics is not None
    assert act.metrics.actuations.labels(backend="hooks", status="failed")._value.get() == 1


def test_a_webhook_error_answer_fails_the_compensation(webhook: Webhook) -> None:
    webhook.status = 503
    report = actuate(actuator(), rollback([CompensationHook(name="notify", url=webhook.url)]))
    assert report.status is ActuationStatus.FAILED
    assert "notify: HTTP 503, 20 bytes in " in report.detail
    assert "database unavailable" not in report.detail  # an answer's body is never reported


def test_an_unreachable_webhook_or_missing_program_fails(tmp_path: Path) -> None:
    hooks = [CompensationHook(name="gone", command=[str(tmp_path / "no-such-program")])]
    report = actuate(actuator(), rollback(hooks))
    assert report.status is ActuationStatus.FAILED
    assert "gone: cannot run" in report.detail
    dead = [CompensationHook(name="notify", url="http://127.0.0.1:9/x", timeout_seconds=2)]
    report = actuate(actuator(), rollback(dead))
    assert report.status is ActuationStatus.FAILED and "cannot reach" in report.detail


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # A shell-less parent that starts a long-lived child, then waits: both must go.
    script = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pidfile)!r}, 'w').write(str(child.pid)); time.sleep(60)"
    )
    hook = CompensationHook(name="slow", command=[PY, "-c", script], timeout_seconds=1.5)
    started = time.monotonic()
    report = actuate(actuator(), rollback([hook]))
    assert time.monotonic() - started < 10
    assert report.status is ActuationStatus.FAILED
    assert "slow: timed out after 1.5 s (killed)" in report.detail
    child = int(pidfile.read_text())
    assert _gone(child), f"the hook's child {child} outlived the timeout"


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for its new parent to reap it counts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_hooks_outside_the_allow_lists_refuse_the_whole_compensation(
    tmp_path: Path, webhook: Webhook
) -> None:
    marker = tmp_path / "marker"
    config = HookRunnerConfig(
        programs=[[PY, "-c", MARK, "*", "*"]], url_prefixes=("https://hooks.example/",)
    )
    hooks = [mark(marker), CompensationHook(name="notify", url=webhook.url)]
    report = actuate(actuator(config=config), rollback(hooks))
    assert report.status is ActuationStatus.FAILED
    assert "notify: refused: webhook" in report.detail and "down: not run" in report.detail
    assert not marker.exists() and webhook.calls == []
    with pytest.raises(ConfigError, match="url_prefixes"):
        HookRunnerConfig(url_prefixes=("hooks.example",))


def test_dry_run_names_the_hooks_and_runs_none(tmp_path: Path, webhook: Webhook) -> None:
    marker = tmp_path / "marker"
    hooks = [mark(marker), CompensationHook(name="notify", url=webhook.url)]
    report = actuate(actuator(dry_run=True), rollback(hooks))
    assert report.status is ActuationStatus.APPLIED and report.dry_run
    assert report.detail.startswith("dry run: would run down (command ")
    assert f"notify (webhook {webhook.url})" in report.detail
    assert not marker.exists() and webhook.calls == []


def test_commands_get_the_decision_but_not_the_runners_settings(tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    script = (
        "import json, os, sys; env = {k: v for k, v in os.environ.items() "
        "if k.startswith('CANARYSTREAM_')}; "
        "json.dump({'stdin': sys.stdin.read(), 'env': env}, open(sys.argv[1], 'w'))"
    )
    runner = HookRunner(
        HookRunnerConfig(programs=[[PY, "-c", script, "*"]]),
        environ={"PATH": "/usr/bin:/bin", "CANARYSTREAM_SIGNING_KEY": "secret"},
    )
    act = HookActuator(runner, verifier=SIGNER.verifier(), scope=EVERY_SERVICE)
    decision = rollback([CompensationHook(name="look", command=[PY, "-c", script, str(out)])])
    assert actuate(act, decision).status is ActuationStatus.APPLIED
    seen = json.loads(out.read_text())
    assert seen["stdin"].encode() == encode_decision(decision)
    assert seen["env"] == {
        "CANARYSTREAM_DECISION_ID": decision.decision_id,
        "CANARYSTREAM_DEPLOYMENT": "shop-2024-06",
        "CANARYSTREAM_SERVICE": "shop",
        "CANARYSTREAM_BASELINE_VERSION": "v1",
        "CANARYSTREAM_CANARY_VERSION": "v2",
        "CANARYSTREAM_HOOK": "look",
    }


@pytest.mark.kafka
def test_the_service_loop_runs_hooks_from_the_decisions_topic(
    stack: Stack, tmp_path: Path, webhook: Webhook
) -> None:
    marker = tmp_path / "marker"
    decision = rollback([mark(marker), CompensationHook(name="notify", url=webhook.url)])
    service = ActuatorService(
        actuator(), stack.connection, name="t", start_from="earliest", poll_seconds=0.2
    )
    assert service.group_id.endswith("canarystream-actuator-hooks-t")

    async def publish() -> None:
        producer = AIOKafkaProducer(**stack.connection.client_kwargs())
        await producer.start()
        try:
            for d in (make_decision(0, Action.ADVANCE, 10.0), decision, decision):
                value = encode_decision(d)
                headers = [(SIGNATURE_HEADER, SIGNER.sign(value).encode())]
                await producer.send_and_wait(
                    stack.topic(DECISIONS_TOPIC), value, key=b"shop-2024-06", headers=headers
                )
        finally:
            await producer.stop()

    def stack_reports() -> list[ActuationReport]:
        return [ActuationReport.model_validate_json(raw) for raw in stack.read(ACTUATIONS_TOPIC)]

    thread = threading.Thread(target=asyncio.run, args=(service.run(),), daemon=True)
    thread.start()
    try:
        asyncio.run(publish())
        stack.wait_for(lambda: len(stack_reports()) >= 4, 30, "4 reports")
    finally:
        service.stop()
        thread.join(15)
    statuses = [(r.action, r.status) for r in stack_reports()]
    assert statuses == [
        (Action.ADVANCE, ActuationStatus.APPLIED),
        (Action.ROLLBACK, ActuationStatus.STARTED),  # the intent, acknowledged before the hooks
        (Action.ROLLBACK, ActuationStatus.APPLIED),
        (Action.ROLLBACK, ActuationStatus.REJECTED),  # the redelivered copy
    ]
    assert marker.read_text() == "down shop-2024-06\n" and len(webhook.calls) == 1


def test_cli_unleash_takes_its_token_from_the_environment_and_checks_the_url() -> None:
    env = {
        "CANARYSTREAM_SIGNING_SCHEME": "hmac-sha256",
        "CANARYSTREAM_VERIFY_KEYS": orjson.dumps(["k"]).decode(),
    }
    command = ["actuate", "unleash", "--url", "http://127.0.0.1:1"]
    missing = CliRunner().invoke(app, command, env=env)
    assert missing.exit_code == 2 and "--admin-token" in missing.stderr
    result = CliRunner().invoke(
        app,
        ["actuate", "unleash", "--url", "ftp://unleash"],
        env={**env, "CANARYSTREAM_UNLEASH_ADMIN_TOKEN": "*:*.secret"},
    )
    assert result.exit_code == 2
    assert "url: 'ftp://unleash' is not an http(s) URL" in result.stderr
    assert "secret" not in result.stderr


def test_cli_hooks_checks_its_allow_lists() -> None:
    env = {"CANARYSTREAM_SIGNING_SCHEME": "hmac-sha256", "CANARYSTREAM_SIGNING_KEY": "k"}
    result = CliRunner().invoke(
        app, ["actuate", "hooks", "--allow-url-prefix", "hooks.example"], env=env
    )
    assert result.exit_code == 2
    assert "url_prefixes: 'hooks.example' is not an http(s) URL" in result.stderr


def test_by_default_no_hook_is_allowed() -> None:
    """Hooks arrive in unsigned announcements: nothing runs unless it is allowed."""
    runner = HookRunner()
    command = CompensationHook(name="c", command=["/bin/true"])
    webhook = CompensationHook(name="w", url="https://hooks.example/x")
    assert runner.refusal(command) == "command '/bin/true' matches no allowed argv pattern"
    assert "not under an allowed URL" in (runner.refusal(webhook) or "")
    assert HookRunner(HookRunnerConfig(allow_any=True)).refusal(command) is None
