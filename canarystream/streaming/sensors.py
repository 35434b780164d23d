"""Faust's own sensors as Prometheus metrics under ``canarystream_faust_``, in seconds.

Faust's bundled Prometheus monitor shares the application's prefix, observes latencies in
milliseconds without saying so and keeps a rebalance count in a gauge. This monitor hooks the
same events and records them the Prometheus way: its own prefix, base units (seconds) in the
names, counters for what only grows, gauges for what goes up and down. Faust's in-memory
statistics (``app.monitor``) keep working, as it extends Faust's
:class:`~faust.sensors.monitor.Monitor`.
"""

from __future__ import annotations

from typing import Any, cast

from aiohttp.web import Response
from faust import web
from faust.sensors.monitor import Monitor, TPOffsetMapping
from faust.types import TP, AppT, CollectionT, EventT, Message, StreamT
from faust.types.transports import ConsumerT, ProducerT
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["PREFIX", "FaustSensors", "serve_metrics"]

PREFIX = "canarystream_faust_"
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class FaustSensors(Monitor):
    """A Faust monitor recording messages, events, sends, commits, rebalances, partition
    offsets and web requests on ``registry``."""

    def __init__(self, registry: CollectorRegistry, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        p, r = PREFIX, registry
        self.received = Counter(
            f"{p}messages_received", "Messages Faust received, by topic.", ["topic"], registry=r
        )
        self.events = Counter(f"{p}events", "Events Faust handed to streams.", registry=r)
        self.event_seconds = Histogram(
            f"{p}event_duration_seconds",
            "Seconds a stream took over one event.",
            buckets=_FAST,
            registry=r,
        )
        self.table_operations = Counter(
            f"{p}table_operations",
            "Reads, writes and deletions of table keys, by table and operation.",
            ["table", "operation"],
            registry=r,
        )
        self.sent = Counter(
            f"{p}messages_sent",
            "Messages given to Faust's producer, by topic.",
            ["topic"],
            registry=r,
        )
        self.send_failures = Counter(
            f"{p}send_errors", "Messages Faust's producer failed to send.", registry=r
        )
        self.send_seconds = Histogram(
            f"{p}send_duration_seconds",
            "Seconds from handing a message to the producer to its acknowledgement.",
            buckets=_FAST,
            registry=r,
        )
        self.commit_seconds = Histogram(
            f"{p}commit_duration_seconds",
            "Seconds an offset commit took.",
            buckets=_FAST,
            registry=r,
        )
        self.rebalances_begun = Counter(f"{p}rebalances", "Rebalances begun.", registry=r)
        self.rebalancing = Gauge(
            f"{p}rebalance_in_progress",
            "1 while a rebalance (recovery included) is under way, else 0.",
            registry=r,
        )
        self.rebalance_seconds = Histogram(
            f"{p}rebalance_duration_seconds",
            "Seconds from the start of a rebalance to the end of its recovery.",
            buckets=_SLOW,
            registry=r,
        )
        self.assignments = Counter(
            f"{p}assignments",
            "Partition assignments, by outcome (completed, error).",
            ["outcome"],
            registry=r,
        )
        self.committed = Gauge(
            f"{p}committed_offset",
            "Last offset committed, by topic and partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.end = Gauge(
            f"{p}end_offset",
            "End (high-water) offset last seen, by topic and partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.requests = Counter(
            f"{p}http_requests",
            "Requests to the web server, by status code.",
            ["status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            f"{p}http_request_duration_seconds",
            "Seconds the web server took over a request.",
            buckets=_FAST,
            registry=r,
        )

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        super().on_message_in(tp, offset, message)
        self.received.labels(tp.topic).inc()

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[str, Any] | None:
        self.events.inc()
        return cast("dict[str, Any] | None", super().on_stream_event_in(tp, offset, stream, event))

    def on_stream_event_out(
        self,
        tp: TP,
        offset: int,
        stream: StreamT[Any],
        event: EventT[Any],
        state: dict[str, Any] | None = None,
    ) -> None:
        super().on_stream_event_out(tp, offset, stream, event, state)
        if state is not None and state.get("time_total") is not None:
            self.event_seconds.observe(state["time_total"])

    def on_table_get(self, table: CollectionT, key: Any) -> None:
        super().on_table_get(table, key)
        self.table_operations.labels(table.name, "get").inc()

    def on_table_set(self, table: CollectionT, key: Any, value: Any) -> None:
        super().on_table_set(table, key, value)
        self.table_operations.labels(table.name, "set").inc()

    def on_table_del(self, table: CollectionT, key: Any) -> None:
        super().on_table_del(table, key)
        self.table_operations.labels(table.name, "delete").inc()

    def on_commit_completed(self, consumer: ConsumerT, state: Any) -> None:
        super().on_commit_completed(consumer, state)
        self.commit_seconds.observe(self.secs_since(cast(float, state)))

    def on_send_initiated(
        self, producer: ProducerT, topic: str, message: Any, keysize: int, valsize: int
    ) -> Any:
        self.sent.labels(topic).inc()
        return super().on_send_initiated(producer, topic, message, keysize, valsize)

    def on_send_completed(self, producer: ProducerT, state: Any, metadata: Any) -> None:
        super().on_send_completed(producer, state, metadata)
        self.send_seconds.observe(self.secs_since(cast(float, state)))

    def on_send_error(self, producer: ProducerT, exc: BaseException, state: Any) -> None:
        super().on_send_error(producer, exc, state)
        self.send_failures.inc()

    def on_assignment_error(self, assignor: Any, state: dict[str, Any], exc: BaseException) -> None:
        super().on_assignment_error(assignor, state, exc)
        self.assignments.labels("error").inc()

    def on_assignment_completed(self, assignor: Any, state: dict[str, Any]) -> None:
        super().on_assignment_completed(assignor, state)
        self.assignments.labels("completed").inc()

    def on_rebalance_start(self, app: AppT) -> dict[str, Any]:
        state = cast("dict[str, Any]", super().on_rebalance_start(app))
        self.rebalances_begun.inc()
        self.rebalancing.set(1)
        self._forget_partitions()
        return state

    def on_rebalance_end(self, app: AppT, state: dict[str, Any]) -> None:
        super().on_rebalance_end(app, state)
        self.rebalancing.set(0)
        self.rebalance_seconds.observe(state["latency_end"])
        self._forget_partitions()

    def on_tp_commit(self, tp_offsets: TPOffsetMapping) -> None:
        super().on_tp_commit(tp_offsets)
        for tp, offset in tp_offsets.items():
            self.committed.labels(tp.topic, str(tp.partition)).set(offset)

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        super().track_tp_end_offset(tp, offset)
        self.end.labels(tp.topic, str(tp.partition)).set(offset)

    def on_web_request_end(
        self,
        app: AppT,
        request: web.Request,
        response: web.Response | None,
        state: dict[str, Any],
        *,
        view: web.View | None = None,
    ) -> None:
        super().on_web_request_end(app, request, response, state, view=view)
        self.requests.labels(str(int(state["status_code"]))).inc()
        self.request_seconds.observe(state["latency_end"])

    def _forget_partitions(self) -> None:
        """Drop the per-partition series: after a rebalance this worker may own others."""
        self.committed.clear()
        self.end.clear()


def serve_metrics(app: AppT, registry: CollectorRegistry, pattern: str = "/metrics") -> None:
    """Record Faust's sensors on ``registry`` and serve the registry at ``pattern``."""
    app.monitor = FaustSensors(registry)

    @app.page(pattern)
    async def metrics(view: web.View, request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return cast(
            web.Response, Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        )
