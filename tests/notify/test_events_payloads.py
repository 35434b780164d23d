"""What notifies, and the bodies: Slack (text and blocks), generic JSON, PagerDuty Events v2."""

from __future__ import annotations

import pytest

from canarystream.contracts.decision import Action, Phase
from canarystream.notify.events import EventKind, events_of
from canarystream.notify.payloads import generic_json, pagerduty, render, slack
from tests.support.decisions import decision, rollout

T0 = 1_790_000_000.0


@pytest.mark.parametrize(
    ("action", "summary", "page", "expected"),
    [
        (Action.ADVANCE, "no harm shown", False, []),
        (Action.HOLD, "stage 1 passed; awaiting approval", False, ["held"]),
        (Action.HOLD, "paused by alice@corp", False, []),
        (Action.HOLD, "paused by alice@corp; shared degradation: x", False, ["held"]),
        (Action.FREEZE, "frozen; a person must decide", True, ["page", "held"]),
        (Action.ROLLBACK, "critical regression: errors", False, ["rollback"]),
        (Action.ROLLBACK_NOT_RECOVERING, "still high", True, ["page", "rollback_not_recovering"]),
        (Action.ROLLBACK_VERIFIED, "recovered", False, []),
        (Action.PROMOTE, "promoted", False, ["promote"]),
    ],
)
def test_events_of_a_decision(action: Action, summary: str, page: bool, expected: list) -> None:
    made = decision("d1", 3, action, summary=summary, page=page, ts=T0)
    assert [e.value for e in events_of(made)] == expected


def test_slack_body_has_text_and_blocks_with_the_failing_check_in_plain_units() -> None:
    held = rollout("d1", ts=T0)[2]
    body = slack(held.model_copy(update={"summary": "a <b> & c"}), EventKind.HELD)
    assert body["text"].startswith("Held, waiting: d1 (shop v1 → v2) at stage 1, 25%")
    assert "a &lt;b&gt; &amp; c" in body["text"]
    types = [block["type"] for block in body["blocks"]]
    assert types == ["header", "section", "section", "context"]
    assert body["blocks"][0]["text"] == {"type": "plain_text", "text": "Held, waiting: d1"}
    checks = body["blocks"][2]["text"]["text"]
    assert "errors (error_rate) fail: estimate ×2.5, bound ×3.1, tolerance ×2" in checks
    assert held.decision_id in body["blocks"][3]["elements"][0]["text"]


def test_generic_json_carries_the_fields_and_the_whole_decision() -> None:
    rolled = rollout("d1", ts=T0)[3]
    body = generic_json(rolled, EventKind.ROLLBACK)
    assert (body["event"], body["deployment"], body["service"], body["action"]) == (
        "rollback", "d1", "shop", "rollback",
    )  # fmt: skip
    assert body["decision"]["decision_id"] == rolled.decision_id == body["decision_id"]
    assert body["time"].endswith("Z") and body["checks"][0]["estimate"] == 2.5


def test_pagerduty_triggers_one_incident_per_rollout_and_a_promotion_resolves_it() -> None:
    page = rollout("d1", ts=T0)[4]
    body = pagerduty(page, EventKind.PAGE, "R0UT1NG")
    assert body["routing_key"] == "R0UT1NG" and body["event_action"] == "trigger"
    assert body["dedup_key"] == "canarystream/d1"
    payload = body["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "shop"
    assert payload["summary"].startswith("A person is needed now: d1")
    assert len(payload["summary"]) <= 1024
    assert payload["timestamp"] == "2026-09-21T14:15:50.000Z"
    promoted = decision("d1", 6, Action.PROMOTE, share=100, phase=Phase.PROMOTED, ts=T0)
    assert render("pagerduty", promoted, EventKind.PROMOTE, "R0UT1NG") == {
        "routing_key": "R0UT1NG",
        "event_action": "resolve",
        "dedup_key": "canarystream/d1",
    }
    long = page.model_copy(update={"summary": "x" * 5000})
    assert len(pagerduty(long, EventKind.PAGE, "k")["payload"]["summary"]) == 1024
