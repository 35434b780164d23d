"""``canarystream notify`` on the broker, end to end: a rollout's decisions published, the
right webhook bodies received once; forged decisions page nobody; no resend after a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from canarystream.cli import app
from canarystream.contracts.codec import encode_decision
from canarystream.contracts.decision import Action, Phase
from canarystream.contracts.signing import Signer, Verifier
from canarystream.notify.config import NotifyConfig
from canarystream.notify.service import NotifyService
from canarystream.security import insecure_warnings
from tests.notify.conftest import Receiver
from tests.notify.test_notifier import config_for
from tests.support.broker import Stack, kafka_bootstrap, stack
from tests.support.decisions import decision, publish, rollout

__all__ = ["kafka_bootstrap", "stack"]

FORGER = Signer.hmac(b"someone else's key")


def _verifier(stack: Stack) -> Verifier:
    return Verifier(ed25519_keys=[stack.keys.public_pem("worker")])


@contextmanager
def running(stack: Stack, config: NotifyConfig) -> Iterator[NotifyService]:
    service = NotifyService(
        config, stack.connection, _verifier(stack), poll_seconds=0.2, metrics_port=0
    )
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(service.run())
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    try:
        assert service.ready.wait(60), f"the notifier did not start: {errors}"
        yield service
    except AssertionError as exc:
        raise AssertionError(f"{exc} (the notifier's errors: {errors})") from exc
    finally:
        service.stop()
        thread.join(30)
        assert not errors, errors


def _wait(what: str, check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _sample(service: NotifyService, name: str, **labels: str) -> float:
    return service.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.kafka
def test_a_rollouts_decisions_notify_once_and_forged_ones_page_nobody(
    stack: Stack, receiver: Receiver
) -> None:
    worker = stack.keys.signer("worker")
    genuine = rollout("d1", "shop")
    rollback = genuine[3]
    # The attacks: a forged page; an unsigned one; and a forged decision that takes the id of
    # the genuine rollback, published before it, so that deduplication would drop the real one.
    forged_page = decision("evil", 5, Action.FREEZE, phase=Phase.FROZEN, page=True)
    unsigned_page = decision("evil2", 5, Action.FREEZE, phase=Phase.FROZEN, page=True)
    stolen_id = rollback.model_copy(update={"summary": "nothing to see", "page": False})
    forged = [
        (encode_decision(forged_page), FORGER.sign(encode_decision(forged_page)), b"evil"),
        (encode_decision(unsigned_page), None, b"evil2"),
        (encode_decision(stolen_id), FORGER.sign(encode_decision(stolen_id)), b"d1"),
    ]
    with running(stack, config_for(receiver)) as service:
        publish(stack, [*forged, *genuine, rollback], worker)  # the rollback published twice
        _wait("the page", lambda: len(receiver.bodies("/hooks/pd")) >= 1)
        _wait("everything", lambda: len(receiver.calls) >= 5)
        dedup = "canarystream_notifications_deduplicated_total"
        _wait("the duplicate", lambda: _sample(service, dedup) >= 1)
        time.sleep(2)  # anything more would arrive meanwhile
        assert _sample(service, dedup) == 1
        assert (
            _sample(service, "canarystream_notify_decisions_ignored_total", reason="bad_signature")
            == 2
        )
        assert (
            _sample(service, "canarystream_notify_decisions_ignored_total", reason="unsigned") == 1
        )
    slack = receiver.bodies("/hooks/slack")
    assert [b["text"].split(":")[0] for b in slack] == [
        "Held, waiting", "Rolled back", "Rolled back, not recovering",
    ]  # fmt: skip
    assert "critical regression: errors" in slack[1]["text"]  # the genuine rollback's words
    (json_body,) = receiver.bodies("/hooks/json")
    assert json_body["decision"] == rollback.model_dump(mode="json")
    (page,) = receiver.bodies("/hooks/pd")
    assert page["dedup_key"] == "canarystream/d1" and page["event_action"] == "trigger"
    assert not any("evil" in str(call["body"]) for call in receiver.calls)


@pytest.mark.kafka
def test_after_a_restart_a_decision_published_again_is_not_sent_again(
    stack: Stack, receiver: Receiver
) -> None:
    worker = stack.keys.signer("worker")
    config = config_for(receiver)
    first = rollout("d1", "shop")
    with running(stack, config):
        publish(stack, first, worker)
        _wait("the first rollout", lambda: len(receiver.calls) >= 5)
    calls = len(receiver.calls)
    # While no notifier runs, a recovered worker publishes d1's last decisions again, and a
    # new rollout is promoted.
    promoted = decision("d2", 7, Action.PROMOTE, service="cart", share=100, phase=Phase.PROMOTED)
    publish(stack, [*first[3:], promoted], worker)
    with running(stack, config) as service:
        _wait("the promotion", lambda: len(receiver.bodies("/hooks/json")) >= 2)
        dedup = "canarystream_notifications_deduplicated_total"
        _wait("the duplicates", lambda: _sample(service, dedup) >= 2)
        time.sleep(2)  # anything more would arrive meanwhile
        assert _sample(service, dedup) == 2
        assert service.metrics_address is not None
        host, port = service.metrics_address
        assert host == "127.0.0.1"  # this host only, by default
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        assert 'canarystream_notifications_sent_total{event="promote",route="all-json"} 1.0' in text
    assert len(receiver.calls) == calls + 1
    assert receiver.bodies("/hooks/json")[-1]["deployment"] == "d2"


def test_notify_without_a_file_names_the_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["notify"], env={"CANARYSTREAM_NOTIFY_CONFIG": None})
    assert result.exit_code == 2
    assert "CANARYSTREAM_NOTIFY_CONFIG" in result.stderr
    bad = tmp_path / "n.yaml"
    bad.write_text(yaml.safe_dump({"routes": [{"name": "x"}], "allowed_urls": ["https://a"]}))
    result = CliRunner().invoke(app, ["notify", "--config", str(bad)])
    assert result.exit_code == 2 and "routes.0.url" in result.stderr


def test_insecure_mode_says_what_a_writer_to_the_decisions_topic_can_do() -> None:
    lines = insecure_warnings("notifier", signed=False)
    assert any("page on-call" in line for line in lines)


@pytest.mark.kafka
def test_the_command_notifies_and_stops_cleanly_on_sigterm(
    stack: Stack, receiver: Receiver, tmp_path: Path
) -> None:
    routes = config_for(receiver).model_dump(mode="json")
    routes["routes"][2]["routing_key"] = "R0UT1NG"  # dumped as a masked secret
    config = tmp_path / "notify.yaml"
    config.write_text(yaml.safe_dump(routes))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": stack.bootstrap,
        "CANARYSTREAM_TOPIC_PREFIX": stack.prefix,
        "CANARYSTREAM_NOTIFY_METRICS_PORT": "0",
        **stack.keys.actuator_env(),
    }
    log = (tmp_path / "notify.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "canarystream", "notify", "--config", str(config)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(
            "the notifier to start",
            lambda: "notifier ready" in (tmp_path / "notify.log").read_text(),
            60,
        )
        publish(stack, [rollout("d1", "shop")[3]], stack.keys.signer("worker"))
        _wait("the rollback", lambda: len(receiver.bodies("/hooks/json")) == 1, 60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert "notifier stopped" in (tmp_path / "notify.log").read_text()
