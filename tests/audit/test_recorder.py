"""The audit recorder on the real broker: every message once, in its chain, through crashes,
restarts and a second recorder; and ``audit verify`` finding what was tampered with."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from canarystream.audit.chain import record_hash
from canarystream.audit.recorder import AuditRecorder
from canarystream.audit.trust import TrailTrust
from canarystream.cli import app
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.signing import SIGNATURE_HEADER, Signer, Verifier
from canarystream.contracts.topics import (
    ACTUATIONS_TOPIC,
    AUDIT_TOPIC,
    DEADLETTER_TOPIC,
    DECISIONS_TOPIC,
    TOPICS,
    VERDICTS_TOPIC,
)
from canarystream.contracts.verdict import InputVerdict
from canarystream.errors import ConfigError
from canarystream.kafka.admin import create_topics
from canarystream.kafka.connection import Connection
from canarystream.settings import load_settings
from tests.support.actuators import make_decision
from tests.support.broker import Stack

pytestmark = pytest.mark.kafka

INPUTS = (VERDICTS_TOPIC, DECISIONS_TOPIC, ACTUATIONS_TOPIC)
ACTUATOR = "memory/test"  # the actuator instance whose reports the tests write
WRITERS = {VERDICTS_TOPIC: "worker", DECISIONS_TOPIC: "worker", ACTUATIONS_TOPIC: "actuator"}
"""The test principal whose key signs each audited topic's messages, as in production."""
Message = tuple[str, bytes | None, bytes]  # topic, key, value


def rollout(deployment: str, decisions: int = 3) -> list[Message]:
    """What a rollout leaves on the audited topics: its verdict, decisions and reports."""
    key = deployment.encode()
    raw = b'{"type":"deployment_started"}'
    verdict = InputVerdict(
        id="canary.deployments.v1/0@1",
        ts=1_700_000_000.0,
        event_type="deployment_started",
        deployment=deployment,
        service="shop",
        principal="deploy-bot",
        verdict="accepted",
        sha256=hashlib.sha256(raw).hexdigest(),
    )
    out: list[Message] = [(VERDICTS_TOPIC, key, orjson.dumps(verdict.model_dump(mode="json")))]
    for seq in range(decisions):
        decision = make_decision(seq, traffic_percent=10.0 * seq, deployment=deployment)
        report = ActuationReport(
            actuation_id=f"{deployment}-{seq}",
            decision_id=decision.decision_id,
            deployment=deployment,
            service="shop",
            seq=seq,
            action=decision.action,
            backend="memory",
            status=ActuationStatus.APPLIED,
            ts=1_700_000_100.0 + seq,
            traffic_percent_requested=decision.traffic_percent,
            actuator=ACTUATOR,
        )
        out.append((DECISIONS_TOPIC, key, orjson.dumps(decision.model_dump(mode="json"))))
        out.append((ACTUATIONS_TOPIC, key, orjson.dumps(report.model_dump(mode="json"))))
    return out


def publish(stack: Stack, messages: list[Message], *, signer: Signer | None = None) -> None:
    """Produce ``messages``, each signed by its topic's writer (:data:`WRITERS`), or by
    ``signer`` when given."""

    def headers(topic: str, value: bytes) -> list[tuple[str, bytes]]:
        by = signer or stack.keys.signer(WRITERS[topic])
        return [(SIGNATURE_HEADER, by.sign(value).encode())]

    async def run() -> None:
        producer = AIOKafkaProducer(**stack.connection.client_kwargs(), acks="all")
        await producer.start()
        try:
            for topic, key, value in messages:
                await producer.send(
                    stack.topic(topic), value, key=key, headers=headers(topic, value)
                )
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def trail(stack: Stack) -> list[Any]:
    return stack.read_messages(AUDIT_TOPIC)


def inputs(stack: Stack) -> dict[str, Any]:
    """Every audited message by source (topic/partition@offset)."""
    return {
        f"{m.topic}/{m.partition}@{m.offset}": m
        for topic in INPUTS
        for m in stack.read_messages(topic)
    }


def wait_for_trail(stack: Stack, count: int, timeout: float = 60.0) -> list[Any]:
    stack.wait_for(lambda: len(trail(stack)) >= count, timeout, f"{count} audit records")
    return trail(stack)


def verify(stack: Stack, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["audit", "verify", "--json", *args], env=stack.env)
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, orjson.loads(result.stdout)


@contextmanager
def running(recorder: AuditRecorder) -> Iterator[AuditRecorder]:
    """Run the recorder in a thread of its own (as it would run in its own process)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(recorder.run())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        while not recorder.ready.wait(0.1):
            assert not errors and time.monotonic() < deadline, errors or "not ready in 90 s"
        yield recorder
    finally:
        recorder.stop()
        thread.join(20)
    assert not thread.is_alive(), "the recorder did not stop"
    assert not errors, errors


def trust_of(stack: Stack, worker_public: bytes | str | None = None) -> TrailTrust:
    """The stack's writers' keys: the worker's (or ``worker_public``) and :data:`ACTUATOR`'s."""
    worker = worker_public or stack.keys.public_pem("worker")
    return TrailTrust(
        worker=Verifier(ed25519_keys=[worker]),
        actuators={ACTUATOR: Verifier(ed25519_keys=[stack.keys.public_pem("actuator")])},
    )


def recorder_of(stack: Stack, worker_public: bytes | str | None = None) -> AuditRecorder:
    return AuditRecorder(stack.connection, trust_of(stack, worker_public), poll_seconds=0.2)


def assert_each_input_once(stack: Stack, records: list[Any]) -> None:
    """Every audited message recorded exactly once, in the audit partition of its number,
    with the digest of its exact bytes and in its key's chain."""
    by_source = inputs(stack)
    sources = Counter(orjson.loads(m.value)["source"] for m in records)
    assert sources == Counter(set(by_source)), (
        f"doubled: {[s for s, n in sources.items() if n > 1]}, "
        f"missing: {sorted(set(by_source) - set(sources))}"
    )
    for message in records:
        record = orjson.loads(message.value)
        source = by_source[record["source"]]
        assert message.partition == source.partition
        assert message.key == source.key
        assert record["subject_sha256"] == hashlib.sha256(source.value).hexdigest()
        assert record["deployment"] == (source.key or b"").decode()


def test_records_every_message_in_its_chain_and_verify_finds_tampering(
    stack: Stack, tmp_path: Path
) -> None:
    messages = [m for name in ("d-alpha", "d-beta", "d-gamma") for m in rollout(name)]
    # Signed by their writers, yet no records of their topics: chained as unreadable.
    hostile = [
        (DECISIONS_TOPIC, b"d-alpha", b"{not json"),
        (ACTUATIONS_TOPIC, b"d-beta", b'{"type": "actuation", "actuator": "memory/test"}'),
        (VERDICTS_TOPIC, None, b'{"verdict": "accepted"}'),
    ]
    with running(recorder_of(stack)) as recorder:
        publish(stack, messages + hostile)
        records = wait_for_trail(stack, len(messages) + len(hostile))
        counted = recorder.metrics.records
        assert counted.labels("decision")._value.get() == 9
        assert counted.labels("actuation")._value.get() == 9
        assert counted.labels("verdict")._value.get() == 3
        assert counted.labels("unreadable")._value.get() == 3
    assert_each_input_once(stack, records)
    chains: dict[str, list[dict[str, Any]]] = {}
    for message in records:
        record = orjson.loads(message.value)
        chains.setdefault(record["deployment"], []).append(record)
    assert sorted(chains) == ["", "d-alpha", "d-beta", "d-gamma"]
    alpha = chains["d-alpha"]
    assert [r["seq"] for r in alpha] == list(range(8))
    assert [r["kind"] for r in alpha].count("unreadable") == 1
    assert next(r for r in alpha if r["kind"] == "unreadable")["detail"].startswith(
        "malformed_json"
    )
    assert [r["kind"] for r in alpha[:1]] == ["verdict"]
    assert alpha[0]["subject"]["principal"] == "deploy-bot"

    code, report = verify(stack)
    assert (code, report["ok"], report["records"], report["deployments"]) == (0, True, 24, 4)
    code, report = verify(stack, "--deployment", "d-beta")
    assert (code, report["records"]) == (0, 8)

    # An export checks the same; edited, it does not.
    export = tmp_path / "trail.jsonl"
    result = CliRunner().invoke(app, ["audit", "export", "-o", str(export)], env=stack.env)
    assert result.exit_code == 0, result.output
    lines = export.read_text().splitlines()
    assert len(lines) == 24
    assert verify(stack, "--file", str(export))[0] == 0
    edited = orjson.loads(lines[3])
    edited["subject"] = {"forged": True}
    export.write_text("\n".join([*lines[:3], orjson.dumps(edited).decode(), *lines[4:]]))
    code, report = verify(stack, "--file", str(export))
    assert (code, [p["kind"] for p in report["problems"]]) == (1, ["modified"])
    export.write_text("\n".join([*lines[:3], *lines[4:]]))
    code, report = verify(stack, "--file", str(export))
    missing = orjson.loads(lines[3])
    if any(orjson.loads(line)["deployment"] == missing["deployment"] for line in lines[4:]):
        assert (code, [p["kind"] for p in report["problems"]]) == (1, ["missing"])

    # A forged copy of a record, re-sealed and appended to the topic, is found.
    target = chains["d-gamma"][2]
    forged = {**target, "subject": {**target["subject"], "action": "promote"}}
    forged["hash"] = record_hash(forged)
    partition = next(
        m.partition for m in records if orjson.loads(m.value)["deployment"] == "d-gamma"
    )

    async def append_forgery() -> None:
        producer = AIOKafkaProducer(**stack.connection.client_kwargs())
        await producer.start()
        try:
            await producer.send_and_wait(
                stack.topic(AUDIT_TOPIC),
                orjson.dumps(forged),
                key=b"d-gamma",
                partition=partition,
            )
            await producer.send_and_wait(
                stack.topic(AUDIT_TOPIC), b"garbage", key=b"d-gamma", partition=partition
            )
        finally:
            await producer.stop()

    asyncio.run(append_forgery())
    code, report = verify(stack)
    assert code == 1
    found = {(p["kind"], p["deployment"], p["seq"]) for p in report["problems"]}
    assert found == {("duplicated", "d-gamma", 2), ("unreadable", "d-gamma", None)}
    assert verify(stack, "--deployment", "d-alpha")[0] == 0


def test_a_crash_between_the_ack_and_the_commit_neither_loses_nor_doubles(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = [m for name in ("c-1", "c-2", "c-3", "c-4") for m in rollout(name, 2)]
    crashing = recorder_of(stack)

    async def no_commit(*_: Any) -> None:  # dies after every ack, before any commit
        return None

    monkeypatch.setattr(crashing, "_commit", no_commit)
    with running(crashing):
        publish(stack, first)
        wait_for_trail(stack, len(first))
    second = [m for name in ("c-1", "c-5") for m in rollout(name, 2)]
    with running(recorder_of(stack)) as restarted:
        publish(stack, second)
        records = wait_for_trail(stack, len(first) + len(second))
        time.sleep(1.0)  # anything doubled would arrive now
        # Nothing was committed, so the group starts at the beginning: what the restarted
        # recorder appends is the second batch alone (the first it skips or seeks past).
        appended = sum(
            restarted.metrics.records.labels(kind)._value.get()
            for kind in ("verdict", "decision", "actuation", "unreadable")
        )
        assert appended == len(second)
    records = trail(stack)
    assert len(records) == len(first) + len(second)
    assert_each_input_once(stack, records)
    assert verify(stack)[1]["ok"]


def test_two_recorders_share_the_partitions_and_keep_each_chain_whole(stack: Stack) -> None:
    names = [f"shared-{n}" for n in range(24)]
    with running(recorder_of(stack)) as one, running(recorder_of(stack)) as two:
        stack.wait_for(
            lambda: (
                bool(one._partitions)
                and bool(two._partitions)
                and len(one._partitions) + len(two._partitions) == 12
            ),
            120,
            "the group to settle",
        )
        assert not one._partitions.keys() & two._partitions.keys()
        publish(stack, [m for name in names for m in rollout(name, 2)])
        records = wait_for_trail(stack, len(names) * 5)
        recorded = one.metrics.records.labels("decision")._value.get()
        assert 0 < recorded < len(names) * 2  # both did part of the work
    assert_each_input_once(stack, records)
    code, report = verify(stack)
    assert (code, report["deployments"]) == (0, 24)


def test_kill_9_mid_stream_then_restart_leaves_a_whole_trail(stack: Stack, tmp_path: Path) -> None:
    log = tmp_path / "recorder.log"
    command = [sys.executable, "-m", "canarystream", "audit", "record", "--metrics-port", "0"]
    env = {**stack.env, **stack.keys.recorder_env({ACTUATOR: "actuator"})}

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as sink:
            return subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)

    names = [f"k-{n}" for n in range(40)]
    messages = [m for name in names for m in rollout(name, 4)]  # 360 messages
    # The first half is published while the recorder runs, and it is killed as soon as it
    # has appended 60 records; the second half only after the kill, so that the kill always
    # comes mid-stream (a fast recorder once appended all 360 before the test looked).
    first, second = messages[:180], messages[180:]
    process = start()
    try:
        producer = threading.Thread(
            target=lambda: [publish(stack, first[i : i + 20]) for i in range(0, len(first), 20)]
        )
        producer.start()
        stack.wait_for(lambda: len(trail(stack)) >= 60, 90, "the first records")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        producer.join(60)
        publish(stack, second)
        process = start()
        records = wait_for_trail(stack, len(messages), timeout=120)
        time.sleep(1.5)  # anything doubled would arrive now
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
    records = trail(stack)
    assert len(records) == len(messages), log.read_text()[-3000:]
    assert_each_input_once(stack, records)
    code, report = verify(stack)
    assert (code, report["records"], report["deployments"]) == (0, 360, 40)
    assert "audit recorder stopped" in log.read_text()


def test_a_recorder_catching_up_on_a_backlog_keeps_each_chain_in_causal_order(
    stack: Stack,
) -> None:
    names = [f"late-{n}" for n in range(30)]
    messages = [m for name in names for m in rollout(name, 4)]  # 270: more than one poll
    publish(stack, messages)
    with running(recorder_of(stack)):
        records = wait_for_trail(stack, len(messages))
    assert_each_input_once(stack, records)
    chains: dict[str, list[dict[str, Any]]] = {}
    for record in sorted((orjson.loads(m.value) for m in records), key=lambda r: r["seq"]):
        chains.setdefault(record["deployment"], []).append(record)
    for name, chain in chains.items():
        kinds = [r["kind"] for r in chain]
        assert kinds[0] == "verdict", (name, kinds)
        decided = [r["subject"]["decision_id"] for r in chain if r["kind"] == "decision"]
        applied = [r["subject"]["decision_id"] for r in chain if r["kind"] == "actuation"]
        assert applied == decided, name
        for i, record in enumerate(chain):
            if record["kind"] == "actuation":  # after the decision it applied
                earlier = {r["subject"].get("decision_id") for r in chain[:i]}
                assert record["subject"]["decision_id"] in earlier, (name, kinds)


def test_refuses_to_start_when_the_partition_counts_differ(kafka_bootstrap: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    connection = Connection(load_settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix))
    specs = tuple(
        spec.model_copy(update={"partitions": 3}) if spec.name == AUDIT_TOPIC else spec
        for spec in TOPICS
    )
    asyncio.run(create_topics(connection, specs))
    with pytest.raises(ConfigError, match=r"one partition count .*audit.v1: 3"):
        asyncio.run(AuditRecorder(connection, TrailTrust.unverified()).run())


def test_forged_messages_stay_out_of_the_trail_counted_and_dead_lettered(stack: Stack) -> None:
    """Whoever can write an audited topic but holds no writer's key puts nothing in the trail:
    not an "accepted" verdict, not a decision, not a report of an actuator."""
    genuine = rollout("d-real", 1)
    verdict_key, verdict = genuine[0][1], orjson.loads(genuine[0][2])
    stranger = Signer.ed25519(stack.keys.private_pem("deployer"))  # a key, not the worker's
    forged_verdict = orjson.dumps({**verdict, "id": "canary.deployments.v1/0@9"})
    forged_decision = orjson.dumps(
        make_decision(1, traffic_percent=100.0, deployment="d-real").model_dump(mode="json")
    )
    report = orjson.loads(genuine[2][2])
    old_format = orjson.dumps({k: v for k, v in report.items() if k != "actuator"})
    with running(recorder_of(stack)) as recorder:
        publish(stack, genuine)
        publish(stack, [(VERDICTS_TOPIC, verdict_key, forged_verdict)], signer=stranger)
        publish(stack, [(DECISIONS_TOPIC, b"d-real", forged_decision)], signer=stranger)
        # The worker's key does not make a report of the actuator it names.
        worker = stack.keys.signer("worker")
        publish(stack, [(ACTUATIONS_TOPIC, b"d-real", orjson.dumps(report))], signer=worker)
        publish(stack, [(ACTUATIONS_TOPIC, b"d-real", old_format)])  # names no actuator
        # The genuine, signed verdict copied into another deployment's chain.
        publish(stack, [(VERDICTS_TOPIC, b"d-other", genuine[0][2])])
        stack.wait_for(lambda: len(stack.read(DEADLETTER_TOPIC)) >= 5, 60, "5 dead letters")
        unverified = recorder.metrics.unverified
        assert unverified.labels(stack.topic(VERDICTS_TOPIC), "bad_signature")._value.get() == 1
        assert unverified.labels(stack.topic(DECISIONS_TOPIC), "bad_signature")._value.get() == 1
        by_reason = unverified.labels(stack.topic(ACTUATIONS_TOPIC), "bad_signature")
        assert by_reason._value.get() == 1
        by_reason = unverified.labels(stack.topic(ACTUATIONS_TOPIC), "unknown_actuator")
        assert by_reason._value.get() == 1
        by_reason = unverified.labels(stack.topic(VERDICTS_TOPIC), "key_mismatch")
        assert by_reason._value.get() == 1
    # Unsigned is refused as well, after a restart as before it.
    unsigned = orjson.dumps({**verdict, "id": "canary.deployments.v1/0@10"})
    with running(recorder_of(stack)) as recorder:
        publish_unsigned(stack, [(VERDICTS_TOPIC, verdict_key, unsigned)])
        stack.wait_for(lambda: len(stack.read(DEADLETTER_TOPIC)) >= 6, 60, "6 dead letters")
        counted = recorder.metrics.unverified.labels(stack.topic(VERDICTS_TOPIC), "unsigned")
        assert counted._value.get() == 1

    records = [orjson.loads(m.value) for m in trail(stack)]
    assert [r["kind"] for r in records] == ["verdict", "decision", "actuation"]
    assert {r["subject_sha256"] for r in records} == {
        hashlib.sha256(value).hexdigest() for _, _, value in genuine
    }
    assert verify(stack)[1]["ok"]
    letters = {(d["reason"], d["source"].rsplit("/", 1)[0]): d for d in stack.dead_letters()}
    assert sorted(letters) == sorted(
        [
            ("bad_signature", stack.topic(VERDICTS_TOPIC)),
            ("bad_signature", stack.topic(DECISIONS_TOPIC)),
            ("bad_signature", stack.topic(ACTUATIONS_TOPIC)),
            ("unknown_actuator", stack.topic(ACTUATIONS_TOPIC)),
            ("key_mismatch", stack.topic(VERDICTS_TOPIC)),
            ("unsigned", stack.topic(VERDICTS_TOPIC)),
        ]
    )
    forged = letters[("bad_signature", stack.topic(VERDICTS_TOPIC))]
    assert orjson.loads(forged["original"])["verdict"] == "accepted"
    assert (
        "names no actuator"
        in letters[("unknown_actuator", stack.topic(ACTUATIONS_TOPIC))]["detail"]
    )


def publish_unsigned(stack: Stack, messages: list[Message]) -> None:
    """Produce ``messages`` with no signature at all."""

    async def run() -> None:
        producer = AIOKafkaProducer(**stack.connection.client_kwargs(), acks="all")
        await producer.start()
        try:
            for topic, key, value in messages:
                await producer.send(stack.topic(topic), value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())
