"""The worker's per-rollout metrics: what a decision sets, and that a finished rollout
leaves no series behind."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import generate_latest

from canarystream.contracts.decision import Action, CheckReason, Phase, Verdict
from canarystream.engine import Engine
from canarystream.streaming.metrics import WorkerMetrics
from tests.support.actuators import make_decision
from tests.support.streams import Stream, fast_policy


def _value(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _held(seq: int, **update: Any) -> Any:
    reason = CheckReason(
        check="error_rate",
        kind="error_rate",
        verdict=Verdict.INCONCLUSIVE,
        estimate=1.4,
        lower=0.9,
        upper=2.1,
        tolerance=1.5,
        advance_tolerance=1.2,
    )
    decision = make_decision(seq, Action.HOLD, 25.0, Phase.HELD, ts=1_790_000_000.0)
    return decision.model_copy(update={"reasons": [reason], **update})


def test_a_decision_sets_phase_share_clock_and_checks() -> None:
    metrics = WorkerMetrics()
    decision = _held(2)
    metrics.record_decisions([decision], now=decision.ts + 7.5)
    d = decision.deployment
    assert _value(metrics, "canarystream_rollout_phase", deployment=d, phase="held") == 1
    assert _value(metrics, "canarystream_rollout_phase", deployment=d, phase="running") == 0
    assert _value(metrics, "canarystream_rollout_traffic_ratio", deployment=d) == 0.25
    assert _value(metrics, "canarystream_rollout_clock_timestamp_seconds", deployment=d) == (
        decision.ts
    )
    info = {
        "deployment": d,
        "service": "shop",
        "baseline_version": "v1",
        "canary_version": "v2",
        "policy": "default",
    }
    assert _value(metrics, "canarystream_rollout_info", **info) == 1
    check = {"deployment": d, "check": "error_rate"}
    assert _value(metrics, "canarystream_check_verdict", **check, verdict="inconclusive") == 1
    assert _value(metrics, "canarystream_check_verdict", **check, verdict="pass") == 0
    assert _value(metrics, "canarystream_check_estimate", **check) == 1.4
    assert _value(metrics, "canarystream_check_lower_bound", **check) == 0.9
    assert _value(metrics, "canarystream_check_upper_bound", **check) == 2.1
    assert _value(metrics, "canarystream_check_tolerance", **check) == 1.5
    assert _value(metrics, "canarystream_check_advance_tolerance", **check) == 1.2
    assert _value(metrics, "canarystream_decisions_total", action="hold", service="shop") == 1
    assert _value(metrics, "canarystream_decision_lag_seconds_sum") == 7.5
    assert _value(metrics, "canarystream_decision_lag_seconds_bucket", le="10.0") == 1
    assert _value(metrics, "canarystream_decision_lag_seconds_bucket", le="5.0") == 0


def test_a_finished_rollout_leaves_no_series_and_a_live_one_keeps_its_own() -> None:
    metrics = WorkerMetrics()
    other = _held(0, deployment="cart-1", service="cart")
    metrics.record_decisions([_held(1), other], now=other.ts)
    ended = _held(2, action=Action.ROLLBACK, phase=Phase.ROLLED_BACK, traffic_percent=0.0)
    metrics.record_decisions([ended], now=ended.ts)
    metrics.record_rollouts([], [SimpleNamespace(deployment=ended.deployment)])  # type: ignore[list-item]
    text = generate_latest(metrics.registry).decode()
    assert f'deployment="{ended.deployment}"' not in text
    assert 'deployment="cart-1"' in text
    assert _value(metrics, "canarystream_decisions_total", action="rollback", service="shop") == 1


def test_the_clock_follows_live_rollouts_between_decisions() -> None:
    metrics = WorkerMetrics()
    live = SimpleNamespace(
        deployment="d1", is_live=True, clock=1_790_000_060.0, consumed={}, late_events=0
    )
    done = SimpleNamespace(
        deployment="d2", is_live=False, clock=1_790_000_060.0, consumed={}, late_events=0
    )
    metrics.record_consumed([live, done])  # type: ignore[list-item]
    name = "canarystream_rollout_clock_timestamp_seconds"
    assert _value(metrics, name, deployment="d1") == 1_790_000_060.0
    assert _value(metrics, name, deployment="d2") is None


def test_late_requests_are_counted_once_each() -> None:
    """A request stamped before its rollout's open tick (but not before the start) is
    judged in the open tick and counted as late, once, however often the worker looks."""
    stream = Stream(1)
    events = [stream.started(policy=fast_policy()), *stream.requests(0, 30, rate=10)]
    engine = Engine()
    engine.process_all(events)
    [rollout] = engine.rollouts.values()
    metrics = WorkerMetrics()
    metrics.record_consumed([rollout])
    assert _value(metrics, "canarystream_late_requests_total") == 0.0

    late = {**events[-1], "ts": rollout.clock - 12.0}  # two ticks behind the clock
    engine.process_all([late, late])
    metrics.record_consumed([rollout])
    metrics.record_consumed([rollout])
    assert _value(metrics, "canarystream_late_requests_total") == 2.0
