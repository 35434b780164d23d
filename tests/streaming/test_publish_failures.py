"""On the real broker: decisions that cannot be published are never lost.

A worker whose decisions the broker refuses stores and acknowledges nothing past them and
exits; a broker that goes away mid-rollout and comes back changes nothing. Either way the
decisions topic ends up equal to a replay of the input, without a gap or a duplicate. One
service each: the restart and the catch-up are then the only difference from a replay.
"""

from __future__ import annotations

import re
import time

import pytest

from canarystream.contracts.topics import DECISIONS_TOPIC
from canarystream.kafka.local import LocalKafka
from canarystream.streaming.worker import EXIT_UNPUBLISHED
from tests.support.broker import Stack, announce_then_send, key, replayed, rollout_events

pytestmark = pytest.mark.kafka


def _assert_no_gap_no_duplicate(stack: Stack, expected: list) -> None:
    live = stack.decisions()
    assert len({(d.deployment, d.seq) for d in live}) == len(live), "a seq was published twice"
    assert sorted(map(key, live)) == sorted(map(key, expected))


def test_refused_decisions_stop_the_worker_and_a_restart_publishes_them(stack: Stack) -> None:
    events = rollout_events("errors-x3", rps=40, duration="33m", seed=5)
    expected = replayed(events)  # 5 decisions, 3 in the first half, then rollback and verified
    starts = [e for e in events if e["type"] == "deployment_started"]
    telemetry = [e for e in events if e["type"] != "deployment_started"]
    half = len(telemetry) // 2
    stack.env["CANARYSTREAM_PUBLISH_DEADLINE_SECONDS"] = "5"
    first = stack.start_worker("w1")
    announce_then_send(stack, starts)
    stack.produce(telemetry[:half])
    stack.wait_for(lambda: len(stack.decisions()) >= 3, what="the first half's decisions")

    # The broker now refuses every decision (each is larger than this limit).
    stack.set_topic_config(DECISIONS_TOPIC, {"max.message.bytes": "64"})
    stack.produce(telemetry[half:])
    stack.wait_for(lambda: not first.alive(), 90, "the worker to give up publishing")
    assert first.process.returncode == EXIT_UNPUBLISHED, first.tail()
    log = first.log.read_text()
    assert re.search(r"publishing \d+ decisions failed \(.*MessageSizeTooLarge", log)
    assert "stopping without storing or acknowledging" in log
    published = len(stack.decisions())
    assert published < len(expected), "every decision was out before writes were refused"

    stack.set_topic_config(DECISIONS_TOPIC, {"max.message.bytes": "1048588"})
    stack.start_worker("w2")
    stack.wait_until_caught_up(expected)
    time.sleep(3)  # room for a duplicate to show up, if there were one
    _assert_no_gap_no_duplicate(stack, expected)


def test_a_broker_stopped_mid_rollout_and_restarted_loses_nothing(
    private_broker: LocalKafka, tmp_path
) -> None:
    stack = Stack(private_broker.bootstrap, tmp_path)
    try:
        events = rollout_events("healthy", rps=60, duration="33m", seed=9)
        expected = replayed(events)  # 6 decisions, 2 in the first third; the last a promotion
        starts = [e for e in events if e["type"] == "deployment_started"]
        telemetry = [e for e in events if e["type"] != "deployment_started"]
        third = len(telemetry) // 3
        worker = stack.start_worker("w1")
        announce_then_send(stack, starts)
        stack.produce(telemetry[:third])
        stack.wait_for(lambda: len(stack.decisions()) >= 2, what="the first decisions")

        # The broker stops as soon as the rest is out, while the worker is still busy with it.
        stack.produce(telemetry[third:])
        before = len(stack.decisions())
        private_broker.stop()
        time.sleep(8)
        private_broker.start(timeout=120)
        assert before < len(expected), "the worker finished before the broker stopped"

        stack.wait_until_caught_up(expected, timeout=180)
        time.sleep(3)
        assert worker.alive(), worker.tail()
        _assert_no_gap_no_duplicate(stack, expected)
    finally:
        stack.stop()
