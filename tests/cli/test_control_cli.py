"""``canarystream approve|abort|pause|resume``: the caller's signature, the service's partition,
a clear error for an unknown rollout, and the worker's verdict read back."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from canarystream.cli import app
from canarystream.contracts.authn import message_credentials
from canarystream.contracts.codec import encode_decision, parse_control
from canarystream.contracts.signing import Signer, Verifier
from canarystream.contracts.topics import (
    DECISIONS_TOPIC,
    DEPLOYMENTS_TOPIC,
    VERDICTS_TOPIC,
    service_partition,
)
from canarystream.contracts.verdict import InputVerdict
from canarystream.errors import ContractError
from canarystream.kafka.control import control_event, grant_problem
from canarystream.principals import KeyPair, generate_key_pair
from tests.support.access import Principal, access_of, grant, principal
from tests.support.actuators import DEPLOYMENT, make_decision
from tests.support.broker import Stack, kafka_bootstrap, stack
from tests.support.streams import DEPLOYMENT as STREAM_DEPLOYMENT
from tests.support.streams import SERVICE, Stream

__all__ = ["kafka_bootstrap", "stack"]

runner = CliRunner()


@pytest.fixture
def alice(tmp_path: Path) -> KeyPair:
    return generate_key_pair("alice@corp", tmp_path / "keys")


def _env(stack: Stack, pair: KeyPair) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP": stack.bootstrap,
        "CANARYSTREAM_TOPIC_PREFIX": stack.prefix,
        "CANARYSTREAM_PRINCIPAL": pair.principal,
        "CANARYSTREAM_PRINCIPAL_KEY_FILE": str(pair.private_file),
    }


def _invoke(stack: Stack, pair: KeyPair, *args: str) -> Result:
    return runner.invoke(app, list(args), env=_env(stack, pair))


def test_a_command_is_validated_and_names_its_principal_as_actor() -> None:
    value = control_event(
        "approve", deployment="d1", service="shop", principal="alice", reason="looks good"
    )
    event = parse_control(orjson.loads(value))
    assert (event.type, event.actor, event.service, event.reason) == (
        "deployment_approved", "alice", "shop", "looks good",
    )  # fmt: skip
    with pytest.raises(ContractError, match="reason"):
        control_event("abort", deployment="d1", service="s", principal="a", reason="x" * 5000)


def test_without_a_principal_nothing_is_sent_and_the_settings_are_named(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["abort", "d1", "--reason", "r", "--service", "shop"],
        env={"CANARYSTREAM_PRINCIPAL": None, "CANARYSTREAM_PRINCIPAL_KEY_FILE": None},
    )
    assert result.exit_code == 2
    assert "CANARYSTREAM_PRINCIPAL" in result.stderr and "keys generate" in result.stderr


@pytest.mark.kafka
def test_abort_finds_the_service_signs_and_lands_on_the_services_partition(
    stack: Stack, alice: KeyPair
) -> None:
    other = make_decision(0, deployment="other-rollout").model_copy(update={"service": "cart"})
    ours = make_decision(0)  # service "shop"
    stack.produce_raw(DECISIONS_TOPIC, [encode_decision(other)], key=b"other-rollout")
    stack.produce_raw(DECISIONS_TOPIC, [encode_decision(ours)], key=DEPLOYMENT.encode())

    result = _invoke(stack, alice, "abort", DEPLOYMENT, "--reason", "error budget burning")
    assert result.exit_code == 0, result.output
    (message,) = stack.read_messages(DEPLOYMENTS_TOPIC)
    assert message.key == b"shop"
    assert message.partition == service_partition("shop")
    assert f"{stack.topic(DEPLOYMENTS_TOPIC)}/{message.partition}@{message.offset}" in (
        result.stdout
    )
    event = parse_control(orjson.loads(message.value))
    assert (event.type, event.deployment, event.service, event.actor, event.reason) == (
        "deployment_aborted", DEPLOYMENT, "shop", "alice@corp", "error budget burning",
    )  # fmt: skip
    assert abs(event.ts - time.time()) < 60
    principal, signature = message_credentials(message.headers)
    assert principal == "alice@corp"
    verifier = Verifier(ed25519_keys=[alice.public_file.read_bytes()])
    assert verifier.verify(message.value, signature)  # over the exact bytes sent


@pytest.mark.kafka
def test_an_unknown_deployment_is_a_clear_error_and_nothing_is_sent(
    stack: Stack, alice: KeyPair
) -> None:
    stack.produce_raw(DECISIONS_TOPIC, [encode_decision(make_decision(0))], key=b"x")
    started = time.monotonic()
    result = _invoke(stack, alice, "pause", "no-such-rollout", "--reason", "r",
                     "--lookup-timeout", "3")  # fmt: skip
    assert result.exit_code == 2
    assert "no-such-rollout" in result.stderr and "--service" in result.stderr
    assert time.monotonic() - started < 30
    assert stack.read(DEPLOYMENTS_TOPIC) == []


@pytest.mark.kafka
def test_service_given_skips_the_lookup(stack: Stack, alice: KeyPair) -> None:
    result = _invoke(stack, alice, "resume", "fresh", "--reason", "r", "--service", "payments",
                     "--lookup-timeout", "0.1")  # fmt: skip
    assert result.exit_code == 0, result.output
    (message,) = stack.read_messages(DEPLOYMENTS_TOPIC)
    assert message.partition == service_partition("payments")


def _verdict(source: str, value: bytes, verdict: str, reason: str | None) -> bytes:
    return InputVerdict(
        id=source, ts=time.time(), event_type="deployment_approved", deployment=DEPLOYMENT,
        service="shop", principal="alice@corp", verdict=verdict, reason=reason,  # type: ignore[arg-type]
        sha256=hashlib.sha256(value).hexdigest(),
    ).model_dump_json().encode()  # fmt: skip


@pytest.mark.kafka
def test_wait_reports_the_workers_verdict_on_this_very_message(
    stack: Stack, alice: KeyPair
) -> None:
    results: list[Result] = []
    command = ["approve", DEPLOYMENT, "--reason", "r", "--service", "shop", "--wait", "60"]
    thread = threading.Thread(target=lambda: results.append(_invoke(stack, alice, *command)))
    thread.start()
    try:
        stack.wait_for(lambda: stack.read(DEPLOYMENTS_TOPIC) != [], 60, "the command")
        (message,) = stack.read_messages(DEPLOYMENTS_TOPIC)
        source = f"{stack.topic(DEPLOYMENTS_TOPIC)}/{message.partition}@{message.offset}"
        refused = "unauthorized: alice@corp may not approve for service shop"
        stack.produce_raw(
            VERDICTS_TOPIC,
            [
                _verdict(f"{source}0", message.value, "accepted", None),  # another message's
                _verdict(source, message.value, "refused", refused),
            ],
            key=DEPLOYMENT.encode(),
        )
    finally:
        thread.join(90)
    (result,) = results
    assert result.exit_code == 1, result.output
    assert "refused by the worker" in result.stderr and refused in result.stderr


@pytest.mark.kafka
def test_wait_without_a_verdict_says_so(stack: Stack, alice: KeyPair) -> None:
    result = _invoke(stack, alice, "approve", DEPLOYMENT, "--reason", "r", "--service", "shop",
                     "--wait", "2")  # fmt: skip
    assert result.exit_code == 1
    assert "no verdict" in result.stderr
    assert len(stack.read(DEPLOYMENTS_TOPIC)) == 1


def test_the_access_file_names_the_missing_grant_before_anything_is_sent() -> None:
    alice, bob = principal("alice@corp"), principal("bob")
    access = access_of([alice, bob], [grant([alice], ["abort", "pause"], ["shop*"])])

    def problem(who: Principal, command: str, service: str, signer: Signer | None = None) -> Any:
        caller = (who.name, signer or who.signer)
        return grant_problem(access, "access.yaml", caller=caller, command=command, service=service)

    assert problem(alice, "abort", "shop-eu") is None
    assert problem(alice, "approve", "shop") == (
        "alice@corp has no grant of 'approve' on service 'shop' in access.yaml; the worker "
        "would refuse the command as unauthorized"
    )
    assert "no grant of 'abort' on service 'cart'" in problem(alice, "abort", "cart")
    assert "your key is not the one access.yaml lists for alice@corp" in problem(
        alice, "abort", "shop", bob.signer
    )
    stranger = principal("mallory")
    assert "mallory is not a principal of access.yaml" in problem(stranger, "abort", "shop")


@pytest.mark.kafka
def test_a_governed_worker_obeys_a_granted_command_and_refuses_an_ungranted_one(
    stack: Stack,
) -> None:
    keys = stack.keys
    access = keys.write_access(stack.workdir / "access.yaml")
    worker = stack.start_worker("governed", "--access", str(access))
    now = time.time()
    started = {**Stream(1).started(), "ts": now}  # commands are stamped now: so is the rollout
    value = orjson.dumps(started)
    stack.produce_raw(DEPLOYMENTS_TOPIC, [value], SERVICE.encode(), signed_by="deployer")
    stack.wait_for(lambda: worker.rollouts() != [], 120, "the rollout to be announced")

    def command(who: str, *args: str) -> Result:
        args = (*args, "--service", SERVICE, "--wait", "90")  # the worker alone judges
        return runner.invoke(app, list(args), env=_env(stack, keys.pairs[who]))

    paused = command("approver", "pause", STREAM_DEPLOYMENT, "--reason", "investigating")
    assert paused.exit_code == 0, paused.output
    assert "accepted by the worker as approver" in paused.stdout

    # The deployer may start rollouts, not stop them: the worker refuses and says why.
    refused = command("deployer", "abort", STREAM_DEPLOYMENT, "--reason", "oops")
    assert refused.exit_code == 1, refused.output
    assert "refused by the worker" in refused.stderr and "unauthorized" in refused.stderr
    sent = len(stack.read(DEPLOYMENTS_TOPIC))

    # With the access file at hand, the command names the missing grant and is never sent.
    local = runner.invoke(
        app,
        [
            "abort",
            STREAM_DEPLOYMENT,
            "--reason",
            "oops",
            "--service",
            SERVICE,
            "--access",
            str(access),
        ],
        env=_env(stack, keys.pairs["deployer"]),
    )
    assert local.exit_code == 2
    assert "deployer has no grant of 'abort' on service 'checkout'" in local.stderr.replace(
        "\n", ""
    )
    assert len(stack.read(DEPLOYMENTS_TOPIC)) == sent
