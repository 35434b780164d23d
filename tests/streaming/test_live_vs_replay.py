"""The worker on the real broker decides exactly what an offline replay decides."""

from __future__ import annotations

import signal

import pytest

from canarystream.contracts.decision import Action
from tests.support.broker import Stack, announce_then_send, key, replayed, rollout_events

pytestmark = pytest.mark.kafka


def test_live_decisions_equal_replay(stack: Stack) -> None:
    events = rollout_events("healthy", "errors-x3", rps=60, duration="33m")
    expected = replayed(events)
    assert {d.action for d in expected} >= {Action.ADVANCE, Action.ROLLBACK, Action.PROMOTE}

    stack.start_worker()
    announce_then_send(stack, events)
    stack.wait_until_caught_up(expected)

    live = stack.decisions()
    assert sorted(map(key, live)) == sorted(map(key, expected))
    assert len({d.decision_id for d in live}) == len(live)


def test_single_event_messages_decide_the_same(stack: Stack) -> None:
    events = rollout_events("latency-x1.25", rps=20, duration="12m")
    expected = replayed(events)
    stack.start_worker()
    announce_then_send(stack, events, batch=1)
    stack.wait_until_caught_up(expected)
    assert sorted(map(key, stack.decisions())) == sorted(map(key, expected))


def test_a_worker_started_on_a_backlog_applies_every_message(stack: Stack) -> None:
    """Faust may skip messages it fetched before seeking at start-up; none may be lost."""
    events = rollout_events("healthy", "errors-x3", "latency-x1.25", rps=120, duration="12m")
    expected = replayed(events)
    worker = stack.start_worker("announce")
    announce_then_send(stack, [e for e in events if e["type"] == "deployment_started"])
    worker.kill(signal.SIGTERM)  # the rollouts are stored; the telemetry waits for the next one
    messages = stack.produce([e for e in events if e["type"] != "deployment_started"], batch=10)

    worker = stack.start_worker("backlog")
    stack.wait_for(lambda: worker.telemetry_consumed() >= messages, 180, "every message consumed")
    stack.wait_until_caught_up(expected)
    # Each message applied once: any consumed twice (read by the worker itself while Faust was
    # late with it, then delivered by Faust too) was skipped the second time.
    assert worker.telemetry_consumed() - worker.telemetry_skipped() == messages
    assert sorted(map(key, stack.decisions())) == sorted(map(key, expected))
