"""Webhook bodies for one decision: Slack-compatible, a generic JSON, PagerDuty Events v2.

Pure functions of the decision, the event it is sent for and, for PagerDuty, the routing key;
the readable lines come from :mod:`canarystream.summary` (checks in their kind's units).

* **slack** -- ``text`` (what notifications and clients without blocks show) and ``blocks``:
  a header, the summary with the rollout's fields, the checks failing or inconclusive, and a
  context line naming the decision. ``&``, ``<`` and ``>`` are escaped as Slack asks.
* **json** -- the event, the rollout's fields, the checks, and the whole decision.
* **pagerduty** -- an Events v2 ``trigger`` (``promote``: a ``resolve``), its ``dedup_key`` the
  rollout (``canarystream/<deployment>``), so a rollout's pages make one incident.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from canarystream.contracts.decision import Decision
from canarystream.notify.events import EventKind
from canarystream.summary import ATTENTION, CheckStatus

__all__ = ["TITLES", "generic_json", "headline", "pagerduty", "render", "slack"]

TITLES = {
    EventKind.PAGE: "A person is needed now",
    EventKind.ROLLBACK_NOT_RECOVERING: "Rolled back, not recovering",
    EventKind.ROLLBACK: "Rolled back",
    EventKind.PROMOTE: "Promoted",
    EventKind.HELD: "Held, waiting",
}
_SEVERITY = {
    EventKind.PAGE: "critical",
    EventKind.ROLLBACK_NOT_RECOVERING: "critical",
    EventKind.ROLLBACK: "error",
    EventKind.HELD: "warning",
    EventKind.PROMOTE: "info",
}
_PD_SUMMARY = 1024  # PagerDuty's longest summary


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _checks(decision: Decision) -> list[CheckStatus]:
    return [CheckStatus.from_reason(r) for r in decision.reasons if r.verdict in ATTENTION]


def headline(decision: Decision, event: EventKind) -> str:
    """``Rolled back: d1 (shop v1 → v2) at stage 1, 0% -- critical regression: errors``."""
    return (
        f"{TITLES[event]}: {decision.deployment} ({decision.service} "
        f"{decision.baseline_version} → {decision.canary_version}) at stage {decision.stage}, "
        f"{decision.traffic_percent:g}% — {decision.summary}"
    )


def _check_line(check: CheckStatus) -> str:
    return f"{check.check} ({check.kind}) {check.verdict.value}: {check.plain}"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(decision: Decision, event: EventKind) -> dict[str, Any]:
    """A Slack incoming-webhook body (``text`` and ``blocks``)."""
    esc = _slack_escape
    fields = [
        ("Service", decision.service),
        ("Versions", f"{decision.baseline_version} → {decision.canary_version}"),
        ("Phase", decision.phase.value),
        ("Stage", f"{decision.stage} ({decision.traffic_percent:g}% traffic)"),
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{TITLES[event]}: {decision.deployment}"[:150]},
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": esc(decision.summary)[:3000] or " "},
            "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n{esc(value)}"[:2000]}
                for name, value in fields
            ],
        },
    ]
    if checks := _checks(decision):
        lines = "\n".join(f"• {esc(_check_line(c))}" for c in checks)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": lines[:3000]}})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": esc(
                        f"decision {decision.decision_id} · seq {decision.seq} · "
                        f"{decision.action.value} · {_iso(decision.ts)} · policy {decision.policy}"
                    ),
                }
            ],
        }
    )
    return {"text": esc(headline(decision, event)), "blocks": blocks}


def generic_json(decision: Decision, event: EventKind) -> dict[str, Any]:
    """A plain JSON body: the event, the rollout's fields, the checks, the whole decision."""
    return {
        "event": event.value,
        "title": TITLES[event],
        "text": headline(decision, event),
        "decision_id": decision.decision_id,
        "deployment": decision.deployment,
        "service": decision.service,
        "action": decision.action.value,
        "phase": decision.phase.value,
        "stage": decision.stage,
        "traffic_percent": decision.traffic_percent,
        "page": decision.page,
        "summary": decision.summary,
        "ts": decision.ts,
        "time": _iso(decision.ts),
        "checks": [check.to_dict() for check in _checks(decision)],
        "decision": decision.model_dump(mode="json"),
    }


def pagerduty(decision: Decision, event: EventKind, routing_key: str) -> dict[str, Any]:
    """A PagerDuty Events API v2 body: trigger, or resolve for a promotion."""
    dedup_key = f"canarystream/{decision.deployment}"
    if event is EventKind.PROMOTE:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    details = generic_json(decision, event)
    details.pop("decision")
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "canarystream",
        "payload": {
            "summary": headline(decision, event)[:_PD_SUMMARY],
            "source": decision.service,
            "severity": _SEVERITY[event],
            "timestamp": _iso(decision.ts),
            "component": decision.deployment,
            "group": decision.service,
            "class": decision.action.value,
            "custom_details": details,
        },
    }


def render(fmt: str, decision: Decision, event: EventKind, routing_key: str = "") -> dict[str, Any]:
    """The body of format ``fmt`` (``slack``, ``json`` or ``pagerduty``)."""
    if fmt == "slack":
        return slack(decision, event)
    if fmt == "json":
        return generic_json(decision, event)
    if fmt == "pagerduty":
        return pagerduty(decision, event, routing_key)
    raise ValueError(f"unknown format {fmt!r}")
