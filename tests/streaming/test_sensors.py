"""Faust's sensors as the project records them: their own prefix, seconds, counters."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.types import TP
from prometheus_client import CollectorRegistry

from canarystream.streaming.sensors import FaustSensors

_ANY: Any = SimpleNamespace()


def _sensors() -> tuple[FaustSensors, CollectorRegistry]:
    registry = CollectorRegistry()
    sensors = FaustSensors(registry)
    sensors.time = lambda: 100.0  # type: ignore[method-assign]
    return sensors, registry


def test_latencies_are_recorded_in_seconds() -> None:
    sensors, registry = _sensors()
    sensors.on_send_completed(_ANY, 99.75, _ANY)  # sent 250 ms ago
    sensors.on_commit_completed(_ANY, 99.99)
    assert registry.get_sample_value("canarystream_faust_send_duration_seconds_sum") == 0.25
    assert (
        registry.get_sample_value("canarystream_faust_send_duration_seconds_bucket", {"le": "0.25"})
        == 1
    )
    commit = registry.get_sample_value("canarystream_faust_commit_duration_seconds_sum")
    assert commit is not None and abs(commit - 0.01) < 1e-9


def test_rebalances_are_counted_and_the_one_under_way_is_a_gauge() -> None:
    sensors, registry = _sensors()
    app: Any = SimpleNamespace(rebalancing_count=1)
    sensors.track_tp_end_offset(TP("t", 3), 42)
    state = sensors.on_rebalance_start(app)
    assert registry.get_sample_value("canarystream_faust_rebalance_in_progress") == 1
    sensors.time = lambda: 112.5  # type: ignore[method-assign]
    sensors.on_rebalance_return(app, state)
    sensors.on_rebalance_end(app, state)
    assert registry.get_sample_value("canarystream_faust_rebalance_in_progress") == 0
    assert registry.get_sample_value("canarystream_faust_rebalances_total") == 1
    assert registry.get_sample_value("canarystream_faust_rebalance_duration_seconds_sum") == 12.5
    # The partitions this worker owned before may now be another's.
    labels = {"topic": "t", "partition": "3"}
    assert registry.get_sample_value("canarystream_faust_end_offset", labels) is None


def test_messages_sends_and_offsets_by_topic_and_partition() -> None:
    sensors, registry = _sensors()
    message: Any = SimpleNamespace(time_in=None)
    sensors.on_message_in(TP("telemetry", 1), 7, message)
    sensors.on_send_initiated(_ANY, "decisions", _ANY, 0, 10)
    sensors.on_send_error(_ANY, RuntimeError("down"), 99.0)
    sensors.on_tp_commit({TP("telemetry", 1): 8})
    value = registry.get_sample_value
    assert value("canarystream_faust_messages_received_total", {"topic": "telemetry"}) == 1
    assert value("canarystream_faust_messages_sent_total", {"topic": "decisions"}) == 1
    assert value("canarystream_faust_send_errors_total") == 1
    labels = {"topic": "telemetry", "partition": "1"}
    assert value("canarystream_faust_committed_offset", labels) == 8
