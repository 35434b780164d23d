"""``canarystream status`` and ``get`` on the broker: every rollout from the decisions topic,
forged decisions ignored and counted, a timeline with reasons, JSON, and a live view."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from typer.testing import CliRunner, Result

from canarystream.cli import app
from canarystream.contracts.codec import encode_decision
from canarystream.contracts.decision import Action, Phase
from canarystream.contracts.signing import Signer
from tests.support.broker import Stack, kafka_bootstrap, stack
from tests.support.decisions import decision, publish, rollout

__all__ = ["kafka_bootstrap", "stack"]

pytestmark = pytest.mark.kafka

runner = CliRunner()
FORGER = Signer.hmac(b"not the worker's key")


def _invoke(stack: Stack, *args: str, **env: str) -> Result:
    full = {
        "KAFKA_BOOTSTRAP": stack.bootstrap,
        "CANARYSTREAM_TOPIC_PREFIX": stack.prefix,
        **stack.keys.actuator_env(),
        **env,
    }
    return runner.invoke(app, list(args), env=full)


def _published(stack: Stack) -> None:
    """d-red: a rollout rolled back and not recovering; d-live: running at stage 1; and a
    forged promotion of d-red plus an unsigned one, on d-red's partition."""
    worker = stack.keys.signer("worker")
    forged = decision("d-red", 9, Action.PROMOTE, share=100, phase=Phase.PROMOTED)
    unsigned = decision("d-red", 10, Action.PROMOTE, share=100, phase=Phase.PROMOTED)
    publish(
        stack,
        [
            *rollout("d-red", "shop"),
            decision("d-live", 1, service="cart", share=5),
            decision("d-live", 2, service="cart", stage=1, share=25),
            (encode_decision(forged), FORGER.sign(encode_decision(forged)), b"d-red"),
            (encode_decision(unsigned), None, b"d-red"),
            (b"not json", worker.sign(b"not json"), b"d-red"),
        ],
        worker,
    )


def test_status_shows_every_rollout_and_ignores_forged_decisions(stack: Stack) -> None:
    _published(stack)
    result = _invoke(stack, "status", "--json")
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    rollouts = {r["deployment"]: r for r in data["rollouts"]}
    assert set(rollouts) == {"d-red", "d-live"}
    red, live = rollouts["d-red"], rollouts["d-live"]
    # The forged promotions did not change what the genuine decisions say.
    assert (red["phase"], red["last_decision"]["action"], red["paged"]) == (
        "rolled_back", "rollback_not_recovering", True,
    )  # fmt: skip
    assert (live["phase"], live["stage"], live["traffic_percent"], live["service"]) == (
        "running", 1, 25.0, "cart",
    )  # fmt: skip
    assert data["ignored"] == {"forged": 2, "invalid": 1}
    assert data["clock"] == "wall"
    # Why d-red ended: the check that failed on its rollback, in plain units.
    assert [(c["check"], c["plain"]) for c in red["attention"]] == [
        ("errors", "estimate ×2.5, bound ×3.1, tolerance ×2")
    ]
    # In event time, ages run up to the newest decision (d-red's last, its seq 5).
    event = orjson.loads(_invoke(stack, "status", "--json", "--clock", "event").stdout)
    assert event["now"] == max(r["last_decision"]["ts"] for r in event["rollouts"])
    red_event = next(r for r in event["rollouts"] if r["deployment"] == "d-red")
    assert red_event["age_seconds"] == pytest.approx(4 * 30, abs=1)  # seq 1 to seq 5
    assert [r["deployment"] for r in data["rollouts"]] == ["d-live", "d-red"]

    table = _invoke(stack, "status")
    assert table.exit_code == 0, table.output
    for text in ("d-red", "d-live", "v1 → v2", "rollback_not_recovering", "25%"):
        assert text in table.stdout
    assert "2 not signed by the worker's key" in table.stdout


def test_get_shows_the_timeline_with_every_reason(stack: Stack) -> None:
    _published(stack)
    result = _invoke(stack, "get", "d-red")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for action in ("advance", "hold", "rollback", "rollback_not_recovering"):
        assert f"] {action}" in out or f" {action} " in out
    assert "awaiting approval" in out and "PAGE" in out
    # The failing check's numbers in plain units, beside its own message.
    assert "estimate ×2.5, bound ×3.1, tolerance ×2" in out
    assert "rate canary 0.025 vs baseline 0.01" in out

    data = orjson.loads(_invoke(stack, "get", "d-red", "--json").stdout)
    assert [d["seq"] for d in data["decisions"]] == [1, 2, 3, 4, 5]
    assert data["rollout"]["phase"] == "rolled_back"

    missing = _invoke(stack, "get", "no-such-rollout")
    assert missing.exit_code == 2 and "no-such-rollout" in missing.stderr


def test_without_the_workers_key_status_names_the_setting(stack: Stack) -> None:
    result = _invoke(stack, "status", CANARYSTREAM_VERIFY_KEYS="[]")
    assert result.exit_code == 2
    assert "CANARYSTREAM_VERIFY_KEYS" in result.stderr


def test_watch_prints_each_rollout_as_its_decisions_arrive(stack: Stack) -> None:
    worker = stack.keys.signer("worker")
    publish(stack, [decision("d-w", 1, share=5)], worker)
    results: list[Result] = []
    thread = threading.Thread(
        target=lambda: results.append(
            _invoke(stack, "status", "--watch", "--json", "--watch-seconds", "8")
        )
    )
    thread.start()
    time.sleep(4)
    publish(stack, [decision("d-w", 2, stage=1, share=25)], worker)
    thread.join(30)
    (result,) = results
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(line["rollout"]["deployment"], line["rollout"]["stage"]) for line in lines] == [
        ("d-w", 0),
        ("d-w", 1),
    ]


def test_watch_as_a_table_off_a_terminal_ends_with_the_full_table(stack: Stack) -> None:
    _published(stack)
    result = _invoke(stack, "status", "--watch", "--watch-seconds", "2")
    assert result.exit_code == 0, result.output
    for text in ("d-red", "d-live", "rollback_not_recovering", "2 not signed"):
        assert text in result.stdout
