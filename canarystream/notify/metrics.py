"""Prometheus metrics of the notifier, registered on a registry the caller owns.

* ``canarystream_notifications_sent_total{route,event}`` -- webhook calls answered 2xx;
* ``canarystream_notifications_failed_total{route,event}`` -- given up on (every try failed,
  a refused answer, or the retry deadline passed);
* ``canarystream_notifications_deduplicated_total`` -- decisions seen again (same id) and
  not notified again;
* ``canarystream_notifications_rate_limited_total{route}`` -- notifications dropped by a
  route's rate limit (pages never are);
* ``canarystream_notify_decisions_ignored_total{reason}`` -- messages of the decisions topic
  never notified: ``unsigned``, ``bad_signature`` (not the worker's key), ``invalid_decision``;
* ``canarystream_notification_duration_seconds{route}`` -- from the first try to the outcome.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["NotifyMetrics"]

_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class NotifyMetrics:
    """Counters of what the notifier sent, failed, skipped and ignored."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.sent = Counter(
            "canarystream_notifications_sent",
            "Notifications delivered (2xx), by route and event.",
            ["route", "event"],
            registry=registry,
        )
        self.failed = Counter(
            "canarystream_notifications_failed",
            "Notifications given up on after their tries, by route and event.",
            ["route", "event"],
            registry=registry,
        )
        self.deduplicated = Counter(
            "canarystream_notifications_deduplicated",
            "Decisions seen again (same decision id) and not notified again.",
            registry=registry,
        )
        self.rate_limited = Counter(
            "canarystream_notifications_rate_limited",
            "Notifications dropped by a route's rate limit (pages never are), by route.",
            ["route"],
            registry=registry,
        )
        self.ignored = Counter(
            "canarystream_notify_decisions_ignored",
            "Messages of the decisions topic never notified, by reason (unsigned, "
            "bad_signature, invalid_decision).",
            ["reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "canarystream_notification_duration_seconds",
            "Seconds from a notification's first try to its outcome, retries included.",
            ["route"],
            buckets=_BUCKETS,
            registry=registry,
        )
