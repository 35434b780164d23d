"""Deployments-topic inputs are authenticated from their exact bytes, live and in replay.

The worker's processor reads the principal and signature from Kafka headers; a replay file
holds the same in an envelope line. Both hand the engine the same Origin, so replay with the
access file decides what the worker decided. Each announcement and command read from the
deployments topic gets a verdict (accepted, or refused with its dead letter's reason).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from canarystream.cli import app
from canarystream.contracts.authn import PRINCIPAL_HEADER, SIGNATURE_HEADER
from canarystream.contracts.decision import Decision
from canarystream.contracts.signing import generate_ed25519_key
from canarystream.contracts.topics import DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC
from canarystream.engine import Engine
from canarystream.governance.access import Access
from canarystream.governance.envelope import recorded_line
from canarystream.replay import replay_lines
from canarystream.streaming.processor import BatchProcessor, Inbound
from tests.support.access import Principal, access_of, grant, principal, write_access
from tests.support.streams import DEPLOYMENT, SERVICE, Stream

DEPLOY, ALICE, MALLORY = principal("deploy-bot"), principal("alice"), principal("mallory")
ACCESS = access_of(
    [DEPLOY, ALICE],
    [grant([DEPLOY], ["start"]), grant([ALICE], ["abort", "pause", "resume", "approve"])],
)
STREAM = Stream(2)


class Broker:
    """Messages with increasing offsets, signed as a principal or not."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}

    def message(
        self,
        event: Any,
        who: Principal | None = None,
        *,
        topic: str = DEPLOYMENTS_TOPIC,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> Inbound:
        value = orjson.dumps(event)
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        if headers is None:
            headers = who.headers(value) if who is not None else []
        return Inbound(topic, 0, offset, SERVICE.encode(), value, tuple(headers))


def processor(access: Access | None = ACCESS) -> BatchProcessor:
    engine = Engine(access=access)
    return BatchProcessor(engine, {}.get, lambda: 0.0, telemetry_topic=TELEMETRY_TOPIC)


def test_unsigned_forged_and_doubly_signed_commands_are_dead_lettered_unauthorized() -> None:
    broker = Broker()
    worker = processor()
    started = broker.message(STREAM.started(), DEPLOY)
    abort = STREAM.control("aborted", 5, actor="alice")
    value = orjson.dumps(abort)
    forged = [(PRINCIPAL_HEADER, b"alice"), (SIGNATURE_HEADER, MALLORY.sign(value).encode())]
    doubled = [*ALICE.headers(value), (PRINCIPAL_HEADER, b"deploy-bot")]
    attempts = [
        broker.message(abort),
        broker.message(abort, headers=forged),
        broker.message(abort, headers=doubled),
        broker.message(abort, MALLORY),
    ]

    result = worker.process([started, *attempts])

    assert [d.action.value for d in result.decisions] == ["advance"]
    assert [letter.reason for letter in result.dead_letters] == ["unauthorized"] * 4
    assert result.invalid == {"unauthorized": 4}
    assert worker.engine.rollouts[DEPLOYMENT].is_live
    verdicts = [(v.event_type, v.verdict, v.reason, v.principal) for v in result.verdicts]
    assert verdicts == [
        ("deployment_started", "accepted", None, "deploy-bot"),
        *[("deployment_aborted", "refused", "unauthorized", None)] * 4,
    ]


def test_a_signed_command_is_obeyed_and_its_verdict_names_the_signer() -> None:
    broker = Broker()
    worker = processor()
    started = broker.message(STREAM.started(), DEPLOY)
    abort = broker.message(STREAM.control("aborted", 5, actor="someone-else"), ALICE)

    result = worker.process([started, abort])

    assert result.decisions[-1].summary.startswith("aborted by alice")
    verdict = result.verdicts[-1]
    assert (verdict.id, verdict.principal, verdict.verdict) == (
        f"{DEPLOYMENTS_TOPIC}/0@1",
        "alice",
        "accepted",
    )
    assert verdict.sha256 == hashlib.sha256(abort.value).hexdigest()
    assert verdict.deployment == DEPLOYMENT and verdict.service == SERVICE


def test_the_same_signed_message_published_again_is_a_duplicate() -> None:
    broker = Broker()
    worker = processor()
    pause = STREAM.control("paused", 5)
    started = broker.message(STREAM.started(), DEPLOY)
    first = broker.message(pause, ALICE)
    again = broker.message(pause, ALICE)  # the same bytes at a later offset

    result = worker.process([started, first, again])

    assert [letter.reason for letter in result.dead_letters] == ["duplicate_control"]
    assert [v.reason for v in result.verdicts] == [None, None, "duplicate_control"]


def test_commands_on_the_telemetry_topic_are_refused_unless_signed() -> None:
    broker = Broker()
    worker = processor()
    worker.process([broker.message(STREAM.started(), DEPLOY)])

    unsigned = worker.process([broker.message(STREAM.control("paused", 5), topic=TELEMETRY_TOPIC)])
    signed = worker.process(
        [broker.message(STREAM.control("paused", 6), ALICE, topic=TELEMETRY_TOPIC)]
    )

    assert [letter.reason for letter in unsigned.dead_letters] == ["unauthorized"]
    assert signed.dead_letters == [] and worker.engine.rollouts[DEPLOYMENT].paused_by == "alice"


def test_without_an_access_file_everything_is_obeyed_as_before() -> None:
    broker = Broker()
    worker = processor(None)
    started = broker.message(STREAM.started())
    abort = broker.message(STREAM.control("aborted", 5, actor="anyone"))

    result = worker.process([started, abort])

    assert result.decisions[-1].summary.startswith("aborted by anyone")
    assert [(v.verdict, v.principal) for v in result.verdicts] == [("accepted", None)] * 2


def test_a_batch_message_gets_one_verdict_per_command_with_its_index() -> None:
    broker = Broker()
    worker = processor()
    batch = broker.message([STREAM.started(), {"type": "heartbeat", "ts": 1.0}], DEPLOY)

    result = worker.process([batch])

    assert [v.id for v in result.verdicts] == [f"{DEPLOYMENTS_TOPIC}/0@0#0"]


# --- replay: the same decisions from a recording ---------------------------------------------


def _recording(broker: Broker) -> tuple[list[Inbound], list[bytes]]:
    """A mixed recording: signed and unsigned announcements and commands, and telemetry."""
    messages = [
        broker.message(STREAM.started(policy=None), DEPLOY),
        broker.message(STREAM.control("approved", 2, actor="alice")),  # unsigned
        broker.message(STREAM.control("paused", 3), MALLORY),  # unknown principal
        broker.message(STREAM.control("paused", 4), ALICE),
        broker.message(STREAM.control("paused", 4), ALICE),  # published again
        *(broker.message(event, topic=TELEMETRY_TOPIC) for event in STREAM.requests(0, 30, rate=5)),
        broker.message(STREAM.control("resumed", 31), ALICE),
        *(
            broker.message(event, topic=TELEMETRY_TOPIC)
            for event in STREAM.requests(31, 70, rate=5)
        ),
        broker.message(STREAM.control("aborted", 70), ALICE),
    ]
    messages.sort(key=lambda m: orjson.loads(m.value)["ts"])
    return messages, [recorded_line(m.value, m.headers) for m in messages]


def _keys(decisions: list[Decision]) -> list[tuple[str, int, str, str]]:
    return [(d.deployment, d.seq, d.action.value, d.summary) for d in decisions]


def test_replay_with_the_access_file_decides_as_the_worker() -> None:
    messages, lines = _recording(Broker())
    live = processor().process(messages)
    decided: list[Decision] = []

    result = replay_lines(
        [("rec", lines)], engine=Engine(access=ACCESS), on_decision=decided.append
    )

    assert _keys(decided) == _keys(live.decisions)
    assert decided[-1].summary.startswith("aborted by alice")
    assert result.rejected == {"unauthorized": 2, "duplicate_control": 1}


def test_replay_with_the_access_file_refuses_plain_commands() -> None:
    messages, _ = _recording(Broker())
    plain = [m.value for m in messages]
    result = replay_lines([("rec", plain)], engine=Engine(access=ACCESS))

    assert result.rejected == {"unauthorized": 7}  # the announcement and the six commands
    assert not result.judged


def test_replay_without_an_access_file_unwraps_envelopes_and_obeys_all() -> None:
    messages, lines = _recording(Broker())
    decided: list[Decision] = []

    result = replay_lines([("rec", lines)], on_decision=decided.append)

    assert result.rejected == {}
    assert decided[-1].summary.startswith("aborted by alice")
    assert len(messages) == len(lines)


def test_merged_replay_authenticates_envelopes_too(tmp_path: Path) -> None:
    messages, lines = _recording(Broker())
    live = processor().process(messages)
    deployments = [
        line for m, line in zip(messages, lines, strict=True) if m.topic != TELEMETRY_TOPIC
    ]
    telemetry = [
        line for m, line in zip(messages, lines, strict=True) if m.topic == TELEMETRY_TOPIC
    ]
    decided: list[Decision] = []

    replay_lines(
        [("deployments", deployments), ("telemetry", telemetry)],
        engine=Engine(access=ACCESS),
        on_decision=decided.append,
    )

    assert _keys(decided) == _keys(live.decisions)


def test_replay_command_takes_access(tmp_path: Path) -> None:
    _, lines = _recording(Broker())
    recording = tmp_path / "rec.jsonl"
    recording.write_bytes(b"\n".join(lines) + b"\n")
    access = write_access(
        tmp_path / "access.yaml",
        [DEPLOY, ALICE],
        [grant([DEPLOY], ["start"]), grant([ALICE], ["abort", "pause", "resume"])],
    )
    out = tmp_path / "decisions.jsonl"

    result = CliRunner().invoke(
        app, ["replay", str(recording), "--access", str(access), "--out", str(out), "--quiet"]
    )

    assert result.exit_code == 0, result.output
    summaries = [orjson.loads(line)["summary"] for line in out.read_bytes().splitlines()]
    assert summaries[-1].startswith("aborted by alice")
    broken = tmp_path / "broken.yaml"
    broken.write_text("principals: {}\n")
    failed = CliRunner().invoke(app, ["replay", str(recording), "--access", str(broken)])
    assert failed.exit_code == 2
    assert "principals" in failed.output


def test_an_event_whose_type_is_not_a_string_gets_no_verdict_and_no_crash() -> None:
    broker = Broker()
    worker = processor()

    result = worker.process([broker.message([{"type": ["deployment_started"]}, {"type": {}}])])

    assert result.verdicts == []
    assert [letter.reason for letter in result.dead_letters] == ["unknown_type"]


def test_the_worker_refuses_to_start_with_an_invalid_access_file(tmp_path: Path) -> None:
    broken = tmp_path / "access.yaml"
    broken.write_text("principals: {alice: {public_key: AAAA}}\n")

    key = generate_ed25519_key()[0].decode()  # signed, so only the access file is wrong
    result = CliRunner().invoke(
        app, ["worker", "--access", str(broken)], env={"CANARYSTREAM_SIGNING_KEY": key}
    )

    assert result.exit_code == 2
    assert "principals.alice.public_key" in result.output
