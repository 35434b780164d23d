"""The worker with an access file: its heartbeats are signed, its verdicts published first.

The agent runs on a fake stream with the producers replaced: no broker is needed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from canarystream.contracts.authn import message_credentials
from canarystream.contracts.signing import SIGNATURE_HEADER
from canarystream.contracts.topics import DEPLOYMENTS_TOPIC
from canarystream.contracts.verdict import InputVerdict
from canarystream.governance.access import load_access
from canarystream.governance.identity import authenticate_headers
from canarystream.settings import load_settings
from canarystream.streaming.gaps import GapFiller
from canarystream.streaming.processor import Inbound
from canarystream.streaming.worker import StreamWorker
from tests.support.access import grant, principal, write_access
from tests.support.streams import SERVICE, Stream

DEPLOY, ALICE, WORKER = principal("deploy-bot"), principal("alice"), principal("worker")


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    def incref(self) -> None:
        pass


@dataclass
class Event:
    message: Message


@dataclass
class Stream1:
    batches: list[list[Event]]
    acked: list[Event] = field(default_factory=list)

    async def take_events(self, n: int, within: float) -> Any:
        for batch in self.batches:
            yield batch

    async def ack(self, event: Event) -> None:
        self.acked.append(event)


class NoHoles:
    async def log_start(self, topic: str, partition: int) -> int:
        return 0

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Inbound]:
        raise AssertionError("no holes here")


class Producer:
    """Records what is sent, acknowledging at once (or never, with ``fail``)."""

    def __init__(self, log: list[str], name: str, *, fail: bool = False) -> None:
        self.log, self.name, self.fail = log, name, fail
        self.sent: list[tuple[bytes, Any]] = []

    async def send(self, *, key: bytes, value: bytes, headers: Any = None) -> Any:
        self.log.append(self.name)
        self.sent.append((value, headers))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.fail:
            ack.set_result(None)
        return ack


def worker(tmp_path: Path, **settings: Any) -> tuple[StreamWorker, list[str]]:
    access = write_access(
        tmp_path / "access.yaml",
        [DEPLOY, ALICE, WORKER],
        [grant([DEPLOY], ["start"]), grant([ALICE], ["abort"]), grant([WORKER], ["heartbeat"])],
    )
    made = StreamWorker(
        load_settings(
            data_dir=tmp_path,
            access_file=access,
            signing_scheme="ed25519",
            signing_key=WORKER.private_pem.decode(),
            publish_deadline_seconds=0.5,
            **settings,
        )
    )
    made.index.ready.set()
    made.gaps = GapFiller(NoHoles(), made._checkpointed)
    made.dead_letters.send_soon = lambda **_: None  # type: ignore[method-assign]
    made._record_lag = lambda batch: None  # type: ignore[method-assign]
    made.table.send_changelog = lambda *args, **_: None  # type: ignore[method-assign]

    def exit_(code: int) -> None:
        raise SystemExit(code)

    made._exit = exit_
    log: list[str] = []
    return made, log


def _message(offset: int, event: dict[str, Any], who: Any) -> Event:
    value = orjson.dumps(event)
    headers = who.headers(value) if who is not None else []
    return Event(Message(DEPLOYMENTS_TOPIC, 0, offset, SERVICE.encode(), value, headers))


def test_verdicts_reach_the_broker_before_the_decisions_and_the_ack(tmp_path: Path) -> None:
    stream = Stream(3)
    made, log = worker(tmp_path)
    verdicts, decisions = Producer(log, "verdict"), Producer(log, "decision")
    made.verdicts.send = verdicts.send  # type: ignore[method-assign]
    made.decisions.send = decisions.send  # type: ignore[method-assign]
    batch = [
        _message(0, stream.started(), DEPLOY),
        _message(1, stream.control("aborted", 5, actor="alice"), None),
        _message(2, stream.control("aborted", 6, actor="bob"), ALICE),
    ]
    fake = Stream1([batch])

    asyncio.run(made._consume(fake))  # type: ignore[arg-type]

    judged = [InputVerdict.model_validate_json(value) for value, _ in verdicts.sent]
    assert [(v.verdict, v.principal, v.reason) for v in judged] == [
        ("accepted", "deploy-bot", None),
        ("refused", None, "unauthorized"),
        ("accepted", "alice", None),
    ]
    assert log.index("decision") > max(i for i, name in enumerate(log) if name == "verdict")
    assert fake.acked == batch
    assert orjson.loads(decisions.sent[-1][0])["summary"].startswith("aborted by alice")


def test_verdicts_are_signed_by_the_worker_as_its_decisions_are(tmp_path: Path) -> None:
    made, log = worker(tmp_path)
    verdicts, decisions = Producer(log, "verdict"), Producer(log, "decision")
    made.verdicts.send = verdicts.send  # type: ignore[method-assign]
    made.decisions.send = decisions.send  # type: ignore[method-assign]
    batch = [_message(0, Stream(3).started(), DEPLOY), _message(1, Stream(3).started(), None)]

    asyncio.run(made._consume(Stream1([batch])))  # type: ignore[arg-type]

    worker_key = WORKER.signer.verifier()
    assert len(verdicts.sent) == 2
    for sent in (verdicts.sent, decisions.sent):
        for value, headers in sent:
            (signature,) = [v for k, v in headers if k == SIGNATURE_HEADER]
            assert worker_key.check(value, signature) is None


def test_a_batch_whose_verdicts_are_not_acknowledged_is_not_acked(tmp_path: Path) -> None:
    made, log = worker(tmp_path)
    made.verdicts.send = Producer(log, "verdict", fail=True).send  # type: ignore[method-assign]
    made.decisions.send = Producer(log, "decision").send  # type: ignore[method-assign]
    fake = Stream1([[_message(0, Stream(3).started(), DEPLOY)]])

    with pytest.raises(SystemExit):
        asyncio.run(made._consume(fake))  # type: ignore[arg-type]

    assert fake.acked == []
    assert "decision" not in log


def test_heartbeats_are_signed_as_the_worker(tmp_path: Path) -> None:
    made, log = worker(tmp_path)
    deployments = Producer(log, "heartbeat")
    made.deployments.send = deployments.send  # type: ignore[method-assign]
    made.heartbeats_due = lambda now: [(SERVICE, 1_790_000_100.0)]  # type: ignore[method-assign]
    made._load_owned_services = lambda: None  # type: ignore[method-assign]

    asyncio.run(made._send_heartbeats())

    ((value, headers),) = deployments.sent
    assert message_credentials(headers)[0] == "worker"
    access = load_access(tmp_path / "access.yaml")
    assert authenticate_headers(access, headers, value).principal == "worker"


@pytest.mark.parametrize(
    ("settings", "grants", "expected"),
    [
        ({}, [grant([WORKER], ["heartbeat"])], None),
        (
            {"signing_scheme": "none", "insecure": True},
            [grant([WORKER], ["heartbeat"])],
            "Ed25519 signing_key",
        ),
        ({"worker_principal": "robot"}, [grant([WORKER], ["heartbeat"])], "no principal 'robot'"),
        ({}, [grant([WORKER], ["abort"])], "grants 'worker' no heartbeat"),
    ],
)
def test_a_worker_whose_heartbeats_would_be_refused_says_so(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    settings: dict[str, Any],
    grants: list[dict[str, Any]],
    expected: str | None,
) -> None:
    access = write_access(tmp_path / "access.yaml", [DEPLOY, WORKER], grants)
    options = {
        "signing_scheme": "ed25519",
        "signing_key": WORKER.private_pem.decode(),
        **settings,
    }
    if options["signing_scheme"] == "none":
        del options["signing_key"]

    StreamWorker(load_settings(data_dir=tmp_path, access_file=access, **options))

    warned = [
        r.getMessage() for r in caplog.records if "heartbeats will be refused" in r.getMessage()
    ]
    assert (expected is None) == (warned == [])
    if expected is not None:
        assert expected in warned[0]
