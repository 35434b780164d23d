"""The notifier's core, without Kafka: one verified decision in, the webhooks it calls out.

For each decision (already verified by the reader):

1. a decision id already handled is counted as deduplicated and sends nothing (a recovered
   worker publishes the same decision again, with the same id);
2. its events (:func:`~canarystream.notify.events.events_of`) are matched against every route
   whose service globs take the decision's service; a route sends once, for the most urgent
   event it takes;
3. a route over its rate limit drops the notification (counted), unless it is a page;
4. the body is rendered in the route's format and POSTed with retries; the outcome counted;
5. the id is remembered, whatever the outcomes: a notification given up on is not retried
   forever (the failure is counted and logged, for an alert to pick up).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from canarystream.contracts.decision import Decision
from canarystream.notify.config import NotifyConfig, Route
from canarystream.notify.events import EventKind, events_of
from canarystream.notify.limits import DedupWindow, TokenBucket
from canarystream.notify.metrics import NotifyMetrics
from canarystream.notify.payloads import render
from canarystream.notify.sender import Outcome, WebhookSender

__all__ = ["Notifier", "Sent"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sent:
    """One notification attempted: its route, event and outcome (None: rate limited)."""

    route: str
    event: EventKind
    outcome: Outcome | None


class Notifier:
    """Routes, deduplicates, rate-limits and sends the notifications of decisions."""

    def __init__(
        self,
        config: NotifyConfig,
        sender: WebhookSender,
        metrics: NotifyMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.sender = sender
        self.metrics = metrics
        self.clock = clock
        # One window per scope (the notifier's service: per partition, where a deployment's
        # decisions all are), so a busy partition does not push a quiet one's ids out.
        self._handled: dict[str, DedupWindow] = {}
        per_second = config.rate_limit.per_minute / 60.0
        self._buckets = {
            route.name: TokenBucket(per_second, config.rate_limit.burst) for route in config.routes
        }

    def handled(self, scope: str = "") -> DedupWindow:
        """The ids handled in ``scope`` (the last ``dedup_window`` of them)."""
        window = self._handled.get(scope)
        if window is None:
            window = self._handled[scope] = DedupWindow(self.config.dedup_window)
        return window

    def remember(self, decision_id: str, scope: str = "") -> None:
        """Count ``decision_id`` as handled (rebuilding the window after a restart)."""
        self.handled(scope).add(decision_id)

    async def handle(self, decision: Decision, scope: str = "") -> list[Sent]:
        """Send the decision's notifications; empty for a duplicate or an uneventful one.

        ``scope``: where the decision was read (its partition); ids are remembered per scope.
        """
        handled = self.handled(scope)
        if decision.decision_id in handled:
            self.metrics.deduplicated.inc()
            return []
        events = events_of(decision)
        sent: list[Sent] = []
        for route in self.config.routes:
            event = route.pick(events) if events and route.takes(decision.service) else None
            if event is not None:
                sent.append(await self._send(route, decision, event))
        handled.add(decision.decision_id)
        return sent

    async def _send(self, route: Route, decision: Decision, event: EventKind) -> Sent:
        urgent = event is EventKind.PAGE or decision.page
        if not urgent and not self._buckets[route.name].take(self.clock()):
            self.metrics.rate_limited.labels(route=route.name).inc()
            log.warning(
                "route %s: over its rate limit; dropped %s of %s", route.name, event, decision.seq
            )
            return Sent(route.name, event, None)
        body = orjson.dumps(render(route.format, decision, event, _key(route)))
        headers = {"Idempotency-Key": f"{decision.decision_id}:{route.name}"}
        started = self.clock()
        outcome = await self.sender.post(
            route.url, body, headers=headers, timeout=route.timeout_seconds
        )
        self.metrics.duration.labels(route=route.name).observe(max(0.0, self.clock() - started))
        counter = self.metrics.sent if outcome.ok else self.metrics.failed
        counter.labels(route=route.name, event=event.value).inc()
        log_at = logging.INFO if outcome.ok else logging.ERROR
        log.log(
            log_at,
            "%s %s seq %d -> %s (%s): %s after %d tries: %s",
            event.value,
            decision.deployment,
            decision.seq,
            route.name,
            route.format,
            "sent" if outcome.ok else "FAILED",
            outcome.tries,
            outcome.detail,
        )
        return Sent(route.name, event, outcome)


def _key(route: Route) -> str:
    return route.key() if route.format == "pagerduty" else ""
