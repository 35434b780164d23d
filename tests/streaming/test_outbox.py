"""Decisions reach the topic in order per deployment, through failures, or not past a deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from canarystream.contracts.decision import Action, Decision, Phase, decision_id_for
from canarystream.errors import BrokerError
from canarystream.streaming.outbox import DecisionOutbox, PublishTimeoutError
from canarystream.streaming.published import PublishedIndex


def decision(deployment: str, seq: int) -> Decision:
    return Decision(
        decision_id=decision_id_for(deployment, seq, "advance"),
        deployment=deployment,
        service=f"svc-{deployment}",
        seq=seq,
        action=Action.ADVANCE,
        ts=1_790_000_000.0 + seq,
        stage=seq,
        traffic_percent=1.0,
        phase=Phase.RUNNING,
        baseline_version="v1",
        canary_version="v2",
        policy="default",
        summary="",
    )


class FlakyProducer:
    """Acknowledges sends, except the first ``fail`` of them, in the way given."""

    def __init__(self, fail: int = 0, *, how: str = "ack", land: bool = False) -> None:
        self.fail = fail
        self.how = how  # "ack": the ack fails; "send": handing over fails; "hang": no ack ever
        self.land = land  # a failed ack still wrote the decision (the broker died after writing)
        self.attempts: list[tuple[str, int]] = []
        self.topic: list[tuple[str, int]] = []
        self.index: PublishedIndex | None = None

    async def send(self, d: Decision) -> Any:
        self.attempts.append((d.deployment, d.seq))
        failing = len(self.attempts) <= self.fail
        if failing and self.how == "send":
            raise BrokerError("producer closed")
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if failing and self.how == "hang":
            return ack
        if failing:
            if self.land:
                self.topic.append((d.deployment, d.seq))
                assert self.index is not None
                self.index.add(d.deployment, d.seq)  # the topic's reader saw it land
            ack.set_exception(BrokerError("request timed out"))
        else:
            self.topic.append((d.deployment, d.seq))
            ack.set_result(None)
        return ack


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def outbox(producer: FlakyProducer, *, deadline: float = 60.0, time: FakeTime | None = None):
    index = PublishedIndex()
    producer.index = index
    time = time or FakeTime()
    return DecisionOutbox(
        producer.send,
        index,
        deadline=deadline,
        first_backoff=0.5,
        max_backoff=4.0,
        clock=time.clock,
        sleep=time.sleep,
    )


def test_failures_are_retried_with_backoff_until_every_decision_is_acknowledged() -> None:
    producer, time = FlakyProducer(fail=5), FakeTime()
    box = outbox(producer, time=time)
    batch = [decision("a", 0), decision("a", 1), decision("b", 0)]
    outcome = asyncio.run(box.publish(batch))
    assert sorted(producer.topic) == [("a", 0), ("a", 1), ("b", 0)]
    assert sorted((d.deployment, d.seq) for d in outcome.published) == sorted(producer.topic)
    assert outcome.failures == 3  # rounds that failed: 2 sends, 2 sends, 1 send
    assert time.sleeps == [0.5, 1.0, 2.0]
    assert box.index.seen("a", 1) and box.index.seen("b", 0)


@pytest.mark.parametrize("how", ["ack", "send"])
def test_a_later_seq_never_reaches_the_topic_before_an_earlier_one(how: str) -> None:
    producer = FlakyProducer(fail=1, how=how)
    batch = [decision("a", seq) for seq in range(4)]
    asyncio.run(outbox(producer).publish(batch))
    assert producer.topic == [("a", 0), ("a", 1), ("a", 2), ("a", 3)]
    assert producer.attempts == [("a", 0), *producer.topic]


def test_a_failed_send_that_landed_is_not_sent_again() -> None:
    producer = FlakyProducer(fail=1, land=True)
    outcome = asyncio.run(outbox(producer).publish([decision("a", 0), decision("a", 1)]))
    assert producer.topic == [("a", 0), ("a", 1)]
    assert outcome.suppressed == 1 and [d.seq for d in outcome.published] == [1]


def test_decisions_already_on_the_topic_are_suppressed() -> None:
    producer = FlakyProducer()
    box = outbox(producer)
    box.index.add("a", 1)
    outcome = asyncio.run(box.publish([decision("a", 0), decision("a", 1), decision("a", 2)]))
    assert producer.topic == [("a", 2)] and outcome.suppressed == 2


def test_failures_past_the_deadline_raise_and_leave_the_rest_unpublished() -> None:
    producer, time = FlakyProducer(fail=1000), FakeTime()
    box = outbox(producer, deadline=10.0, time=time)
    with pytest.raises(PublishTimeoutError, match="2 decisions not published within 10 s"):
        asyncio.run(box.publish([decision("a", 0), decision("a", 1)]))
    assert producer.topic == []
    assert sum(time.sleeps) == pytest.approx(10.0)
    assert not box.index.seen("a", 0)


def test_an_acknowledgement_that_never_comes_raises_at_the_deadline() -> None:
    producer = FlakyProducer(fail=1, how="hang")
    box = DecisionOutbox(producer.send, PublishedIndex(), deadline=0.2)
    with pytest.raises(PublishTimeoutError, match="did not acknowledge"):
        asyncio.run(box.publish([decision("a", 0)]))
    assert producer.topic == []
