"""What goes wrong: each regression touches only the canary and only what it says.

A regression changes no random draw, so a regressed scenario and its healthy twin (same
seed) produce the same events one for one; the tests compare the two event by event and then
check the size of the effect.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from canarystream.simulate.fleet import Fleet
from canarystream.simulate.scenario import Scenario

START = 1_790_000_000.0
BASE: dict[str, Any] = {
    "deployment": "d1",
    "service": "shop",
    "error_rate": 0.01,
    "client_error_rate": 0.0,
    "traffic": {"total_rps": 250.0},
    "duration": 240,
}
# Expected error probability of a healthy request over the default routes (weight x multiplier).
P_ERROR = 0.01 * (0.7 * 0.5 + 0.2 * 1.0 + 0.05 * 4.0 + 0.05 * 2.0)


def twins(**change: Any) -> tuple[list[dict], list[dict]]:
    """Events of the healthy scenario and of the changed one, same seed, share 0.5."""
    healthy = Scenario.model_validate({**BASE, **change.pop("both", {})})
    changed = Scenario.model_validate({**healthy.model_dump(), **change})
    h = Fleet(healthy, 21).step(START, healthy.duration, 0.5)
    c = Fleet(changed, 21).step(START, changed.duration, 0.5)
    assert len(h) == len(c)
    return h, c


def differing(h: list[dict], c: list[dict]) -> list[tuple[dict, dict, set[str]]]:
    """Pairs of events that differ, with the fields that differ."""
    out = []
    for a, b in zip(h, c, strict=True):
        if a != b:
            assert (a["ts"], a["type"], a["version"]) == (b["ts"], b["type"], b["version"])
            out.append((a, b, {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}))
    return out


def error_count(events: list[dict]) -> int:
    return sum(e["status"] >= 500 for e in events)


def canary_requests(events: list[dict], **match: Any) -> list[dict]:
    return [
        e
        for e in events
        if e["type"] == "request"
        and e["version"] == "v2"
        and all(e.get(k) == v for k, v in match.items())
    ]


def assert_scaled(pairs: list[tuple[dict, dict, set[str]]], factor: Any) -> None:
    """Changed latencies equal the healthy ones times ``factor(event)``, up to rounding."""
    for a, b, _ in pairs:
        k = factor(a)
        assert abs(b["latency_ms"] - a["latency_ms"] * k) <= 0.005 * (1 + k) + 1e-9


@pytest.mark.parametrize(
    ("regression", "expected_rate"),
    [
        ({"kind": "errors_mult", "factor": 3.0}, 3 * P_ERROR),
        ({"kind": "errors_add", "add": 0.02}, P_ERROR + 0.02),
    ],
)
def test_error_regressions_change_only_canary_statuses(
    regression: dict, expected_rate: float
) -> None:
    h, c = twins(regression=regression)
    pairs = differing(h, c)
    assert pairs
    for a, b, fields in pairs:
        assert a["version"] == "v2"
        assert fields <= {"status", "ok"}  # requests fail, and so do probes
        if "status" in fields:
            assert a["status"] < 500 <= b["status"]
    canary = canary_requests(c)
    n = len(canary)
    sd = np.sqrt(n * expected_rate * (1 - expected_rate))
    assert abs(error_count(canary) - n * expected_rate) < 5 * sd


def test_an_onset_delays_the_regression() -> None:
    h, c = twins(regression={"kind": "errors_mult", "factor": 5.0, "onset": 150})
    pairs = differing(h, c)
    assert pairs
    assert min(a["ts"] for a, _, _ in pairs) >= START + 150


def test_latency_mult_slows_every_canary_request_and_nothing_else() -> None:
    h, c = twins(regression={"kind": "latency_mult", "factor": 1.25})
    pairs = differing(h, c)
    assert all(a["version"] == "v2" and fields == {"latency_ms"} for a, _, fields in pairs)
    assert_scaled(pairs, lambda _: 1.25)
    changed_requests = [p for p in pairs if p[0]["type"] == "request"]
    assert len(changed_requests) > 0.99 * len(canary_requests(h))
    for q in (0.5, 0.9, 0.99):
        healthy = np.quantile([e["latency_ms"] for e in canary_requests(h)], q)
        slowed = np.quantile([e["latency_ms"] for e in canary_requests(c)], q)
        assert slowed / healthy == pytest.approx(1.25, rel=0.01)


def test_tail_only_slows_the_slowest_five_percent() -> None:
    h, c = twins(regression={"kind": "tail_only", "factor": 2.0, "fraction": 0.05})
    pairs = differing(h, c)
    assert all(a["version"] == "v2" and fields == {"latency_ms"} for a, _, fields in pairs)
    assert_scaled(pairs, lambda _: 2.0)
    canary_h, canary_c = canary_requests(h), canary_requests(c)
    n = len(canary_h)
    hit = sum(1 for a, _, _ in pairs if a["type"] == "request")
    assert abs(hit - 0.05 * n) < 5 * np.sqrt(n * 0.05 * 0.95)
    before = np.array([e["latency_ms"] for e in canary_h])
    after = np.array([e["latency_ms"] for e in canary_c])
    assert np.median(after) == np.median(before)
    changed = {id(a) for a, _, _ in pairs}
    for route in {(e["endpoint"], e["dependency"]) for e in canary_h}:
        mine = [
            (a, b)
            for a, b in zip(canary_h, canary_c, strict=True)
            if (a["endpoint"], a["dependency"]) == route
        ]
        # the requests hit are the slowest of their route, never a faster one...
        slow = [a["latency_ms"] for a, _ in mine if id(a) in changed]
        rest = [a["latency_ms"] for a, _ in mine if id(a) not in changed]
        assert slow and min(slow) >= max(rest)
        # ...so the route's p99, inside its slowest 5 %, doubles
        p99_before = np.quantile([a["latency_ms"] for a, _ in mine], 0.99)
        p99_after = np.quantile([b["latency_ms"] for _, b in mine], 0.99)
        assert p99_after / p99_before == pytest.approx(2.0, rel=1e-3)


def test_gradual_latency_drifts_linearly_from_onset() -> None:
    regression = {"kind": "gradual", "target": "latency", "factor": 1.5, "onset": 60, "ramp": 60}
    h, c = twins(regression=regression)
    pairs = differing(h, c)
    assert all(a["version"] == "v2" and fields == {"latency_ms"} for a, _, fields in pairs)
    assert min(a["ts"] for a, _, _ in pairs) >= START + 60
    # 1 at onset, 1.5 after ramp seconds, 2.0 after twice that: the drift keeps growing.
    assert_scaled(pairs, lambda e: 1 + 0.5 * (e["ts"] - START - 60) / 60)
    assert max(b["latency_ms"] / a["latency_ms"] for a, b, _ in pairs) > 2.4


def test_gradual_errors_drift_only_after_onset() -> None:
    h, c = twins(
        regression={"kind": "gradual", "target": "errors", "factor": 4.0, "onset": 60, "ramp": 240}
    )
    pairs = differing(h, c)
    assert pairs and all(fields <= {"status", "ok"} for _, _, fields in pairs)
    assert min(a["ts"] for a, _, _ in pairs) >= START + 60
    late = [e for e in canary_requests(c) if e["ts"] >= START + 180]
    # the multiplier grows from 1 at 60 s to 4 at 300 s: 2.5 to 3.25 over the last minute
    expected = sum(P_ERROR * (1 + 3 * (e["ts"] - START - 60) / 240) for e in late)
    assert abs(error_count(late) - expected) < 5 * np.sqrt(expected)
    early = [e for e in canary_requests(c) if e["ts"] < START + 60]
    assert error_count(early) == error_count(
        [e for e in canary_requests(h) if e["ts"] < START + 60]
    )


def test_endpoint_only_leaves_other_endpoints_unchanged() -> None:
    h, c = twins(regression={"kind": "latency_mult", "factor": 1.5, "endpoint": "/cart"})
    pairs = differing(h, c)
    assert len(pairs) == len(canary_requests(h, endpoint="/cart"))
    assert all(
        a["version"] == "v2" and a["endpoint"] == "/cart" and fields == {"latency_ms"}
        for a, _, fields in pairs
    )
    assert_scaled(pairs, lambda _: 1.5)
    for endpoint in ("/browse", "/pay"):
        assert canary_requests(c, endpoint=endpoint) == canary_requests(h, endpoint=endpoint)


def test_dependency_only_reaches_every_endpoint_using_it_and_nothing_else() -> None:
    h, c = twins(regression={"kind": "errors_mult", "factor": 8.0, "dependency": "payments-api"})
    pairs = differing(h, c)
    assert pairs
    assert all(
        a["version"] == "v2" and a.get("dependency") == "payments-api" and fields == {"status"}
        for a, _, fields in pairs
    )
    hit = canary_requests(c, dependency="payments-api")
    rate = 8 * 0.01 * 4.0
    assert abs(error_count(hit) - rate * len(hit)) < 5 * np.sqrt(len(hit) * rate * (1 - rate))
    # /pay through postgres shares the endpoint but not the dependency: untouched
    assert canary_requests(c, dependency="postgres") == canary_requests(h, dependency="postgres")


def test_gauge_only_shifts_one_canary_gauge_after_onset() -> None:
    h, c = twins(
        regression={"kind": "gauge_only", "gauge": "cpu_utilization", "add": 0.15, "onset": 100}
    )
    pairs = differing(h, c)
    assert pairs
    for a, b, fields in pairs:
        assert (a["type"], a["version"], a["name"], fields) == (
            "metric",
            "v2",
            "cpu_utilization",
            {"value"},
        )
        assert a["ts"] >= START + 100
        assert b["value"] - a["value"] == pytest.approx(0.15, abs=1.5e-4)
    shifted = [e for e in c if e.get("name") == "cpu_utilization" and e["ts"] >= START + 100]
    assert len(pairs) == len([e for e in shifted if e["version"] == "v2"])


def test_a_global_incident_hits_both_cohorts_during_its_window_only() -> None:
    incident = {"start": 100, "duration": 60, "error_add": 0.05, "latency_mult": 1.5}
    h, c = twins(incidents=[incident])
    pairs = differing(h, c)
    assert {a["version"] for a, _, _ in pairs} == {"v1", "v2"}
    assert all(START + 100 <= a["ts"] < START + 160 for a, _, _ in pairs)
    requests = [p for p in pairs if p[0]["type"] == "request"]
    assert_scaled([p for p in requests if "latency_ms" in p[2]], lambda _: 1.5)
    during = [e for e in c if e["type"] == "request" and START + 100 <= e["ts"] < START + 160]
    for version in ("v1", "v2"):
        mine = [e for e in during if e["version"] == version]
        rate = P_ERROR + 0.05
        sd = np.sqrt(len(mine) * rate * (1 - rate))
        assert abs(error_count(mine) - rate * len(mine)) < 5 * sd


def test_a_benign_offset_slows_the_canary_slightly_and_only_it() -> None:
    h, c = twins(canary_latency_factor=1.02)
    pairs = differing(h, c)
    assert all(a["version"] == "v2" and fields == {"latency_ms"} for a, _, fields in pairs)
    assert_scaled(pairs, lambda _: 1.02)


@pytest.mark.parametrize("silent_from", [0.0, 100.0])
def test_a_silent_canary_emits_nothing_from_its_time(silent_from: float) -> None:
    scenario = Scenario.model_validate({**BASE, "canary_silent_from": silent_from})
    events = Fleet(scenario, 2).step(START, scenario.duration, 0.5)
    canary = [e for e in events if e["version"] == "v2"]
    assert all(e["ts"] < START + silent_from for e in canary)
    if silent_from:
        assert {e["type"] for e in canary} == {"request", "metric", "probe"}
        assert max(e["ts"] for e in canary) > START + silent_from - 1
    baseline_late = [e for e in events if e["version"] == "v1" and e["ts"] >= START + 150]
    assert {e["type"] for e in baseline_late} == {"request", "metric", "probe"}
