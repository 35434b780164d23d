"""Crashes and scale-out: state moves with partitions; nothing lost, nothing duplicated."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.support.broker import Stack, announce_then_send, key, replayed, rollout_events

pytestmark = pytest.mark.kafka


def _assert_same_and_unique(stack: Stack, expected: list) -> None:
    live = stack.decisions()
    assert len({d.decision_id for d in live}) == len(live), "a decision was published twice"
    assert sorted(map(key, live)) == sorted(map(key, expected))


def _counter(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def test_kill_9_mid_rollout_then_restart_decides_as_if_uninterrupted(stack: Stack) -> None:
    events = rollout_events("healthy", "errors-x3", rps=60, duration="33m", seed=5)
    expected = replayed(events)
    first = stack.start_worker("w1")
    starts = [e for e in events if e["type"] == "deployment_started"]
    telemetry = [e for e in events if e["type"] != "deployment_started"]
    half = len(telemetry) // 2
    announce_then_send(stack, starts)
    stack.produce(telemetry[:half])
    stack.wait_for(lambda: len(stack.decisions()) >= 3, what="the first decisions")

    # Produce the rest and kill the worker while it is busy with it.
    sender = threading.Thread(target=stack.produce, args=(telemetry[half:],))
    sender.start()
    time.sleep(1.0)
    first.kill(signal.SIGKILL)
    sender.join()
    assert len(stack.decisions()) < len(expected), "the worker finished before it was killed"

    second = stack.start_worker("w2")
    stack.wait_until_caught_up(expected)
    time.sleep(3)  # room for a duplicate to show up, if there were one
    _assert_same_and_unique(stack, expected)
    final = {d.deployment: d.phase.value for d in sorted(expected, key=lambda d: d.seq)}
    assert "rolled_back" in final.values()
    statuses = {r["deployment"]: r["phase"] for r in second.get_json("/rollouts/")["rollouts"]}
    assert statuses == final


def test_two_workers_share_partitions_and_the_survivor_takes_over(stack: Stack) -> None:
    presets = ("healthy", "errors-x3", "latency-x1.25", "gauge-only")
    events = rollout_events(*presets, rps=30, duration="33m", seed=7)
    expected = replayed(events)
    a = stack.start_worker("a")
    b = stack.start_worker("b")
    starts = [e for e in events if e["type"] == "deployment_started"]
    telemetry = [e for e in events if e["type"] != "deployment_started"]

    def owned() -> list[set[int]]:
        return [set(w.get_json("/rollouts/")["partitions"]) for w in (a, b)]

    stack.wait_for(
        lambda: all(owned()) and sum(map(len, owned())) == 12 and len(set.union(*owned())) == 12,
        what="the two workers to split the 12 partitions",
    )
    announce_then_send(stack, starts)

    def holders() -> dict[str, set[str]]:
        return {
            w.name: {r["deployment"] for r in w.get_json("/rollouts/")["rollouts"]}
            for w in (a, b)
            if w.alive()
        }

    held = holders()
    assert set().union(*held.values()) == set(presets)
    assert not held["a"] & held["b"]

    third = len(telemetry) // 3
    stack.produce(telemetry[:third])
    stack.wait_for(lambda: len(stack.decisions()) >= 4, what="the first decisions")
    # The healthy rollout runs for 30 minutes of event time: it is still live on its worker.
    victim, survivor = (a, b) if "healthy" in held["a"] else (b, a)
    victim.kill(signal.SIGKILL)
    stack.produce(telemetry[third:])
    stack.wait_for(
        lambda: len(survivor.get_json("/rollouts/")["partitions"]) == 12,
        what="the survivor to take every partition",
    )
    stack.wait_until_caught_up(expected, timeout=180)
    time.sleep(3)
    _assert_same_and_unique(stack, expected)
    taken_over = {r["deployment"] for r in survivor.get_json("/rollouts/")["rollouts"]}
    assert "healthy" in taken_over
