"""The notifier without Kafka: routes by service glob and event, once per decision id, within
each route's rate limit (pages excepted), against a local webhook server."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from canarystream.contracts.decision import Action, Decision, Phase
from canarystream.notify.config import NotifyConfig
from canarystream.notify.metrics import NotifyMetrics
from canarystream.notify.notifier import Notifier, Sent
from canarystream.notify.sender import WebhookSender
from tests.notify.conftest import Receiver
from tests.support.decisions import decision, rollout


def config_for(receiver: Receiver, **extra: Any) -> NotifyConfig:
    return NotifyConfig.model_validate(
        {
            "allowed_urls": [receiver.url("/hooks")],
            "routes": [
                {
                    "name": "shop-slack",
                    "services": ["shop*"],
                    "events": ["held", "rollback", "rollback_not_recovering", "promote"],
                    "format": "slack",
                    "url": receiver.url("/hooks/slack"),
                },
                {
                    "name": "all-json",
                    "services": ["*"],
                    "events": ["rollback", "promote"],
                    "format": "json",
                    "url": receiver.url("/hooks/json"),
                },
                {
                    "name": "oncall",
                    "services": ["*"],
                    "events": ["page"],
                    "format": "pagerduty",
                    "url": receiver.url("/hooks/pd"),
                    "routing_key": "R0UT1NG",
                },
            ],
            "retry": {"max_attempts": 3, "initial_delay": 0.01, "jitter": 0},
            **extra,
        }
    )


def run(config: NotifyConfig, decisions: list[Decision]) -> tuple[list[list[Sent]], NotifyMetrics]:
    metrics = NotifyMetrics(CollectorRegistry())

    async def go() -> list[list[Sent]]:
        async with WebhookSender(config.retry.policy()) as sender:
            notifier = Notifier(config, sender, metrics)
            return [await notifier.handle(d) for d in decisions]

    return asyncio.run(go()), metrics


def value(metrics: NotifyMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_each_route_gets_the_events_it_takes_once(receiver: Receiver) -> None:
    decisions = [*rollout("d1", "shop-eu"), *rollout("d2", "cart")]
    sent, metrics = run(config_for(receiver), [*decisions, decisions[3]])  # d1's rollback twice
    slack = receiver.bodies("/hooks/slack")
    assert [b["text"].split(":")[0] for b in slack] == [
        "Held, waiting", "Rolled back", "Rolled back, not recovering",
    ]  # fmt: skip
    assert all("d1 (shop-eu" in b["text"] for b in slack)  # cart is not the shop team's
    assert [(b["deployment"], b["event"]) for b in receiver.bodies("/hooks/json")] == [
        ("d1", "rollback"), ("d2", "rollback"),
    ]  # fmt: skip
    pages = receiver.bodies("/hooks/pd")
    assert [(p["dedup_key"], p["payload"]["severity"]) for p in pages] == [
        ("canarystream/d1", "critical"), ("canarystream/d2", "critical"),
    ]  # fmt: skip
    assert sent[-1] == []  # the duplicate
    assert value(metrics, "canarystream_notifications_deduplicated_total") == 1
    sent_total = "canarystream_notifications_sent_total"
    assert value(metrics, sent_total, route="oncall", event="page") == 2
    keys = [c["headers"]["idempotency-key"] for c in receiver.calls if c["path"] == "/hooks/json"]
    assert keys == [f"{decisions[3].decision_id}:all-json", f"{decisions[8].decision_id}:all-json"]


def test_a_failing_webhook_is_counted_and_the_others_still_get_theirs(receiver: Receiver) -> None:
    receiver.answers["/hooks/slack"] = [500]
    sent, metrics = run(config_for(receiver), [rollout("d1")[3]])
    outcomes = {s.route: s.outcome for s in sent[0]}
    assert outcomes["shop-slack"] is not None and not outcomes["shop-slack"].ok
    assert outcomes["shop-slack"].tries == 3
    assert outcomes["all-json"] is not None and outcomes["all-json"].ok
    failed = "canarystream_notifications_failed_total"
    assert value(metrics, failed, route="shop-slack", event="rollback") == 1


def test_over_the_rate_limit_holds_are_dropped_and_pages_are_not(receiver: Receiver) -> None:
    config = config_for(receiver, rate_limit={"per_minute": 0.001, "burst": 1})
    holds = [
        decision(f"d{i}", 3, Action.HOLD, phase=Phase.HELD, summary="awaiting approval")
        for i in range(3)
    ]
    pages = [
        decision(f"p{i}", 5, Action.ROLLBACK_NOT_RECOVERING, phase=Phase.ROLLED_BACK, page=True)
        for i in range(3)
    ]
    _, metrics = run(config, [*holds, *pages])
    assert len(receiver.bodies("/hooks/slack")) == 1 + 3  # one hold, then every page's event
    assert len(receiver.bodies("/hooks/pd")) == 3
    limited = "canarystream_notifications_rate_limited_total"
    assert value(metrics, limited, route="shop-slack") == 2


def test_a_decision_without_events_sends_nothing(receiver: Receiver) -> None:
    sent, _ = run(config_for(receiver), [decision("d1", 1), decision("d1", 2, stage=1)])
    assert sent == [[], []] and receiver.calls == []


def test_each_partition_keeps_its_own_window_of_handled_ids(receiver: Receiver) -> None:
    config = config_for(receiver, dedup_window=1)
    metrics = NotifyMetrics(CollectorRegistry())
    quiet = rollout("d1")[3]
    busy = [decision(f"b{i}", 4, Action.ROLLBACK, phase=Phase.ROLLED_BACK) for i in range(3)]

    async def go() -> None:
        async with WebhookSender(config.retry.policy()) as sender:
            notifier = Notifier(config, sender, metrics)
            await notifier.handle(quiet, "0")
            for other in busy:
                await notifier.handle(other, "1")
            await notifier.handle(quiet, "0")  # published again: still remembered
            await notifier.handle(busy[0], "1")  # pushed out of its partition's window of 1

    asyncio.run(go())
    assert value(metrics, "canarystream_notifications_deduplicated_total") == 1
    json_bodies = [b["deployment"] for b in receiver.bodies("/hooks/json")]
    assert json_bodies == ["d1", "b0", "b1", "b2", "b0"]
