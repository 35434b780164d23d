"""On the broker, end to end: a worker with an access file and the audit recorder. The trail
of a rollout holds who announced it, its decisions, who steered it, and who was refused.

The deployments topic gets a signed announcement by the deployer, a signed pause and resume by
another principal, and two refused commands in between: an unsigned abort and the deployer's
approval of its own rollout. Phases wait for the worker and the recorder, so the chain's order
is that of the phases.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from canarystream.audit.chain import record_hash
from canarystream.cli import app
from canarystream.contracts.decision import Decision
from canarystream.contracts.topics import (
    AUDIT_TOPIC,
    DEPLOYMENTS_TOPIC,
    TELEMETRY_TOPIC,
    VERDICTS_TOPIC,
)
from canarystream.engine import Engine
from canarystream.governance.access import load_access
from canarystream.governance.envelope import recorded_line
from canarystream.replay import replay_lines
from tests.audit.test_recorder import recorder_of, running, verify
from tests.streaming.test_governed_rollout import send
from tests.support.access import grant, principal, write_access
from tests.support.broker import Stack
from tests.support.streams import DEPLOYMENT, SERVICE, Stream, fast_policy

pytestmark = pytest.mark.kafka

DEPLOY, ALICE, WORKER = principal("deploy-bot"), principal("alice"), principal("worker")


def _fields(decision: Decision) -> tuple[Any, ...]:
    return (decision.seq, decision.action.value, decision.ts, decision.summary)


def test_the_trail_names_who_steered_a_rollout_and_who_was_refused(
    stack: Stack, tmp_path: Path
) -> None:
    access = write_access(
        tmp_path / "access.yaml",
        [DEPLOY, ALICE, WORKER],
        [
            grant([DEPLOY], ["start", "approve"], [SERVICE], inline=True),
            grant([ALICE], ["approve", "pause", "resume", "abort"], [SERVICE]),
            grant([WORKER], ["heartbeat"]),
        ],
    )
    stack.env.update(
        CANARYSTREAM_SIGNING_SCHEME="ed25519",
        CANARYSTREAM_SIGNING_KEY=WORKER.private_pem.decode(),
    )
    worker = stack.start_worker("governed", "--access", str(access))
    stream = Stream(7)
    telemetry = 0

    def settled(verdicts: int) -> None:
        """Until the worker judged ``verdicts`` inputs and the trail records all it wrote."""
        stack.wait_for(lambda: len(stack.read(VERDICTS_TOPIC)) >= verdicts, 120, "verdicts")
        stack.wait_for(
            lambda: len(stack.read(AUDIT_TOPIC)) >= verdicts + len(stack.decisions()),
            120,
            "the trail",
        )

    def traffic(start: float, end: float) -> None:
        nonlocal telemetry
        events = stream.requests(start, end, rate=40)
        send(stack, TELEMETRY_TOPIC, events, None)
        telemetry += len(events)
        stack.wait_for(lambda: worker.telemetry_consumed() >= telemetry, 120, "telemetry read")

    with running(recorder_of(stack, WORKER.public_pem)):
        send(stack, DEPLOYMENTS_TOPIC, [stream.started(policy=fast_policy())], DEPLOY)
        settled(1)
        traffic(0, 65)
        settled(1)
        send(stack, DEPLOYMENTS_TOPIC, [stream.control("paused", 66)], ALICE)
        settled(2)
        send(stack, DEPLOYMENTS_TOPIC, [stream.control("aborted", 67)], None)
        selfish = stream.control("approved", 68, actor="deploy-bot")
        send(stack, DEPLOYMENTS_TOPIC, [selfish], DEPLOY)
        settled(4)
        send(stack, DEPLOYMENTS_TOPIC, [stream.control("resumed", 69)], ALICE)
        traffic(69, 140)
        settled(5)

    # The trail verifies, and the rollout's chain tells its story in order.
    code, report = verify(stack)
    assert (code, report["ok"]) == (0, True), report
    records = sorted(
        (orjson.loads(m.value) for m in stack.read_messages(AUDIT_TOPIC)),
        key=lambda r: (r["deployment"], r["seq"]),
    )
    chain = [r for r in records if r["deployment"] == DEPLOYMENT]
    assert [r["seq"] for r in chain] == list(range(len(chain)))

    def story(record: dict[str, Any]) -> tuple[Any, ...]:
        s = record["subject"]
        if record["kind"] == "verdict":
            return ("verdict", s["event_type"], s["verdict"], s["principal"], s["reason"])
        assert record["kind"] == "decision", record
        return ("decision", s["action"], s["summary"].split(";")[0])

    told = [story(r) for r in chain]
    assert told == [
        ("verdict", "deployment_started", "accepted", "deploy-bot", None),
        ("decision", "advance", "rollout started"),
        ("decision", "advance", "no harm shown at stage 0 (10%)"),  # from the telemetry
        ("verdict", "deployment_paused", "accepted", "alice", None),
        ("decision", "hold", "paused by alice"),
        ("verdict", "deployment_aborted", "refused", None, "unauthorized"),
        ("verdict", "deployment_approved", "refused", "deploy-bot", "unauthorized"),
        ("verdict", "deployment_resumed", "accepted", "alice", None),
        ("decision", "advance", "hold cleared"),
        ("decision", "promote", "no harm shown at stage 1 (50%)"),
    ]

    # The refused commands changed nothing: a replay of the inputs without them decides the
    # same as the worker did.
    refused = {r["subject"]["sha256"] for r in chain if r["subject"].get("verdict") == "refused"}
    recorded = [
        (orjson.loads(m.value)["ts"], recorded_line(m.value, m.headers))
        for topic in (DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC)
        for m in stack.read_messages(topic)
        if hashlib.sha256(m.value).hexdigest() not in refused
    ]
    assert len(recorded) == telemetry + 3
    replayed: list[Decision] = []
    replay_lines(
        [("without the refused", [line for _, line in sorted(recorded, key=lambda i: i[0])])],
        engine=Engine(access=load_access(access)),
        on_decision=replayed.append,
    )
    assert [_fields(d) for d in stack.decisions()] == [_fields(d) for d in replayed]

    # Turning the refused approval into an accepted one in an export, re-sealed, is reported.
    export = tmp_path / "trail.jsonl"
    result = CliRunner().invoke(app, ["audit", "export", "-o", str(export)], env=stack.env)
    assert result.exit_code == 0, result.output
    lines = export.read_text().splitlines()
    index = next(
        i
        for i, line in enumerate(lines)
        if orjson.loads(line)["subject"].get("event_type") == "deployment_approved"
    )
    forged = orjson.loads(lines[index])
    forged["subject"] = {**forged["subject"], "verdict": "accepted", "reason": None}
    forged["hash"] = record_hash(forged)
    lines[index] = orjson.dumps(forged).decode()
    export.write_text("\n".join(lines) + "\n")
    code, report = verify(stack, "--file", str(export))
    assert code == 1
    assert [(p["kind"], p["deployment"]) for p in report["problems"]] == [("modified", DEPLOYMENT)]
