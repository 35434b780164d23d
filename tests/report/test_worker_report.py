"""The live worker serves the report of a rollout it holds: the page replay would write."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest

from canarystream.contracts.decision import Action
from canarystream.engine import Engine
from canarystream.report import SeriesRecorder, render_report
from tests.support.broker import (
    Stack,
    announce_then_send,
    kafka_bootstrap,
    replayed,
    rollout_events,
    stack,
)
from tests.support.browser import load

__all__ = ["kafka_bootstrap", "stack"]

pytestmark = pytest.mark.kafka


def _rollout_section(page: str) -> str:
    """The page from the rollout's section on (the title and note differ by design)."""
    return page[page.index('<section class="rollout"') :]


def test_the_worker_serves_the_report_replay_writes(stack: Stack, tmp_path: Path) -> None:
    events = rollout_events("latency-x1.25", rps=40, duration="15m", seed=21)
    expected = replayed(events)
    assert Action.ROLLBACK in {d.action for d in expected}
    deployment = expected[0].deployment
    worker = stack.start_worker()
    starts = [e for e in events if e["type"] == "deployment_started"]
    announce_then_send(stack, starts)
    sent = stack.produce([e for e in events if e["type"] != "deployment_started"])
    stack.wait_for(lambda: worker.telemetry_consumed() >= sent, 180, "every message consumed")
    stack.wait_until_caught_up(expected)

    live = worker.get(f"/rollouts/{deployment}/report", 60).decode()
    engine = Engine()
    offline = SeriesRecorder().attach(engine)
    for event in events:
        for decision in engine.process(event):
            offline.decided(decision)
    replay = render_report(offline.rollouts(), title=f"Rollout {deployment}")
    # Every tick the worker evaluated is the one replay evaluated: the same charts, the same
    # decisions with the same reasons, byte for byte.
    assert _rollout_section(live) == _rollout_section(replay)
    assert live.count("<svg ") >= 6 and live.count('<g class="mark d-rollback"') >= 6
    page = tmp_path / "live.html"
    page.write_text(live, encoding="utf-8")
    assert load(page.as_uri()).console == []

    with pytest.raises(urllib.error.HTTPError) as missing:
        worker.get("/rollouts/no-such-rollout/report", 30)
    assert missing.value.code == 404
