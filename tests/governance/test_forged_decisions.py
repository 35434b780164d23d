"""A forged decision with a huge seq on the decisions topic never silences the worker.

The worker skips a decision the topic already holds (same deployment, same or higher seq). If
that index trusted any message on the topic, one forged decision of seq 10**9 would make the
worker believe its own later decisions were published and drop them all.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from canarystream.contracts.signing import SIGNATURE_HEADER, Signer
from canarystream.settings import load_settings
from canarystream.streaming.worker import StreamWorker
from tests.support.access import grant, origin_of, principal, write_access
from tests.support.streams import DEPLOYMENT, Stream

WORKER, MALLORY, DEPLOYER = principal("worker"), principal("mallory"), principal("deployer")


def forged(seq: int, signer: Signer | None) -> tuple[bytes, list[tuple[str, bytes]]]:
    value = orjson.dumps({"type": "decision", "deployment": DEPLOYMENT, "seq": seq})
    headers = [] if signer is None else [(SIGNATURE_HEADER, signer.sign(value).encode())]
    return value, headers


def signing_worker(tmp_path: Path) -> StreamWorker:
    access = write_access(
        tmp_path / "access.yaml",
        [WORKER, DEPLOYER],
        [grant([WORKER], ["heartbeat"]), grant([DEPLOYER], ["start"])],
    )
    settings = load_settings(
        data_dir=tmp_path,
        signing_scheme="ed25519",
        signing_key=WORKER.private_pem.decode(),
        access_file=access,
    )
    return StreamWorker(settings)


def test_forged_high_seq_decisions_are_ignored_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = signing_worker(tmp_path)
    caplog.clear()  # what its start logged
    caplog.set_level(logging.WARNING)

    worker.index.add_message(*forged(10**9, None))
    worker.index.add_message(*forged(10**9, MALLORY.signer))

    assert not worker.index.seen(DEPLOYMENT, 0)
    assert worker.metrics.forged_decisions._value.get() == 2
    assert [r.getMessage() for r in caplog.records] == [
        "decisions topic: ignored a message not signed by this worker's key (unsigned); 1 so far",
        "decisions topic: ignored a message not signed by this worker's key (bad_signature); "
        "2 so far",
    ]


def test_the_worker_still_publishes_its_decisions_after_a_forged_one(tmp_path: Path) -> None:
    worker = signing_worker(tmp_path)
    worker.index.add_message(*forged(10**9, None))
    sent: list[bytes] = []

    async def send(*, key: bytes, value: bytes, headers: Any = None) -> Any:
        sent.append(value)
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return ack

    worker.decisions.send = send  # type: ignore[method-assign]
    started = Stream(1).started()
    assert worker.engine.access is not None
    origin = origin_of(worker.engine.access, DEPLOYER, orjson.dumps(started))
    decisions = worker.engine.process(started, origin=origin)

    outcome = asyncio.run(worker.outbox.publish(decisions))

    assert outcome.suppressed == 0
    assert [orjson.loads(v)["seq"] for v in sent] == [0]


def test_its_own_signed_decisions_still_count(tmp_path: Path) -> None:
    worker = signing_worker(tmp_path)
    worker.index.add_message(*forged(7, WORKER.signer))
    assert worker.index.seen(DEPLOYMENT, 7)
