"""The live demo's audit trail: the recorder beside the worker, and the check of what it wrote.

The recorder runs in a thread of its own (its own event loop) from before the worker starts,
trusting the run's worker key for verdicts and decisions and no actuator (the demo's fleet is
its own router and writes no reports). It reads its inputs from their first message, so it
needs no head start. At the end, once it has appended a record for every message of the
verdicts and decisions topics, it is stopped and the trail checked as ``canarystream audit
verify`` checks it.
"""

from __future__ import annotations

import asyncio
import threading
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from canarystream.audit.reading import read_to_end
from canarystream.audit.recorder import AuditRecorder
from canarystream.audit.trust import TrailTrust
from canarystream.audit.verify import ChainVerifier, Report
from canarystream.contracts.signing import Verifier
from canarystream.contracts.topics import AUDIT_TOPIC, DECISIONS_TOPIC, VERDICTS_TOPIC, topic_spec
from canarystream.demo.stack import DemoStack

__all__ = ["DemoTrail"]


class DemoTrail:
    """The audit recorder of one demo run and the verification of its trail."""

    def __init__(self, stack: DemoStack) -> None:
        self.stack = stack
        trust = TrailTrust(
            worker=Verifier(ed25519_keys=[stack.worker_key.public_pem]), actuators={}
        )
        self.recorder = AuditRecorder(stack.connection, trust)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start recording in the background."""

        def run() -> None:
            try:
                asyncio.run(self.recorder.run())
            except BaseException as exc:  # reported by finish()
                self._error = exc

        self._thread = threading.Thread(target=run, name="audit-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the recorder (after the batch in hand) and wait for it."""
        self.recorder.stop()
        if self._thread is not None:
            self._thread.join(20)

    def finish(self, timeout: float = 60.0) -> tuple[int, Report]:
        """Wait until every verdict and decision is recorded, stop, and verify the trail.

        Returns the number of messages recorded and the verification report; RuntimeError if
        the recorder failed or fell behind for ``timeout`` seconds.
        """
        inputs = asyncio.run(self._count(VERDICTS_TOPIC, DECISIONS_TOPIC))
        deadline = time.monotonic() + timeout
        while asyncio.run(self._count(AUDIT_TOPIC)) < inputs:
            if self._error is not None:
                raise RuntimeError(f"the audit recorder failed: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the audit recorder did not record {inputs} messages")
            time.sleep(0.2)
        self.stop()
        if self._error is not None:
            raise RuntimeError(f"the audit recorder failed: {self._error!r}")
        return inputs, asyncio.run(self._verify())

    async def _count(self, *topics: str) -> int:
        """Messages in the run's ``topics`` (they start empty: the sum of their end offsets)."""
        partitions = [
            TopicPartition(self.stack.topic(name), p)
            for name in topics
            for p in range(topic_spec(name).partitions)
        ]
        consumer = AIOKafkaConsumer(**self.stack.connection.client_kwargs(), group_id=None)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        return sum(ends.values())

    async def _verify(self) -> Report:
        verifier = ChainVerifier()
        topic = self.stack.topic(AUDIT_TOPIC)
        async for message in read_to_end(self.stack.connection, topic):
            where = f"{message.topic}/{message.partition}@{message.offset}"
            verifier.feed(message.value or b"", where, message.key)
        return verifier.report()
