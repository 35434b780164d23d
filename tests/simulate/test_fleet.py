"""The generator: contract, determinism, and the configured rates, errors and latencies."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from scipy import stats

from canarystream.contracts.codec import is_valid_telemetry
from canarystream.contracts.events import input_event_adapter
from canarystream.simulate.fleet import Fleet
from canarystream.simulate.scenario import Scenario

START = 1_790_000_000.0
REQUEST_KEYS = {
    "type",
    "ts",
    "service",
    "version",
    "latency_ms",
    "status",
    "endpoint",
    "dependency",
    "instance",
}
SINGLE_ROUTE = {"endpoints": [{"name": "/", "weight": 1.0}], "dependencies": []}


def make(**fields: Any) -> Scenario:
    return Scenario.model_validate({"deployment": "d1", "service": "shop", **fields})


def generate(scenario: Scenario, share: float, seconds: float | None = None, seed: int = 0):
    fleet = Fleet(scenario, seed)
    return fleet.step(scenario.start_ts, seconds or scenario.duration, share)


def of(events: list[dict], kind: str = "request", **match: Any) -> list[dict]:
    return [e for e in events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]


def within(observed: float, expected: float, sd: float, sigmas: float = 5.0) -> bool:
    return abs(observed - expected) <= sigmas * sd


# -- contract and determinism --------------------------------------------------------------


def test_same_seed_gives_the_same_events_and_another_seed_others() -> None:
    scenario = make(
        incidents=[{"start": 5, "duration": 5, "error_add": 0.1}],
        regression={"kind": "tail_only", "factor": 2.0},
    )

    def run(seed: int) -> list[dict]:
        fleet = Fleet(scenario, seed)
        return [e for k in range(20) for e in fleet.step(START + k, 1.0, 0.3)]

    first = run(11)
    assert len(first) > 3000
    assert run(11) == first
    assert run(12) != first


def test_events_follow_the_contract_and_are_sorted_and_rounded() -> None:
    scenario = make(
        endpoints=[
            {"name": "/a", "weight": 2, "dependencies": ["db", "cache"]},
            {"name": "/health", "weight": 1},  # no dependency: the key is omitted
        ],
        dependencies=[{"name": "db", "kind": "db"}, {"name": "cache", "kind": "cache"}],
        error_rate=0.05,
        incidents=[{"start": 10, "duration": 10, "error_add": 0.05, "latency_mult": 2}],
        regression={"kind": "errors_mult", "factor": 2, "endpoint": "/a"},
    )
    t0, dt = START + 3.4567, 41.3
    events = Fleet(scenario, 3).step(t0, dt, 0.4)
    kinds = Counter(e["type"] for e in events)
    assert kinds["request"] > 5000 and kinds["metric"] > 0 and kinds["probe"] > 0
    for event in events:
        input_event_adapter.validate_python(event)
        assert is_valid_telemetry(event)
        assert t0 <= event["ts"] < t0 + dt
        assert abs(event["ts"] * 1000 - round(event["ts"] * 1000)) < 1e-3
        if event["type"] == "request":
            expected = REQUEST_KEYS - ({"dependency"} if event["endpoint"] == "/health" else set())
            assert set(event) == expected
            assert event["latency_ms"] == round(event["latency_ms"], 2)
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    assert {e["version"] for e in events} == {"v1", "v2"}
    assert Fleet(scenario).deployment_event() == {
        "type": "deployment_started",
        "ts": START,
        "deployment": "d1",
        "service": "shop",
        "baseline_version": "v1",
        "canary_version": "v2",
    }


def test_nothing_is_emitted_outside_the_scenario() -> None:
    scenario = make(duration=10)
    fleet = Fleet(scenario, 1)
    assert fleet.step(START - 10, 5, 0.5) == []
    events = fleet.step(START - 5, 30, 0.5)
    assert events and all(START <= e["ts"] < START + 10 for e in events)
    assert fleet.step(START + 10, 5, 0.5) == []


@pytest.mark.parametrize("step", [1.0, 1 / 3, 0.7, 25.0])
def test_gauge_and_probe_ticks_do_not_depend_on_the_step_size(step: float) -> None:
    scenario = make(traffic={"total_rps": 0}, duration=100)

    def ticks(events: list[dict]) -> list[tuple]:
        return [(e["ts"], e["version"], e.get("instance"), e.get("name")) for e in events]

    whole = Fleet(scenario, 2).step(START, 100, 0.5)
    fleet = Fleet(scenario, 2)
    pieces: list[dict] = []
    k = 0
    while k * step < 100:
        pieces += fleet.step(START + k * step, step, 0.5)
        k += 1
    assert ticks(pieces) == ticks(whole)
    # 2 gauges x 3 instances x 2 cohorts every 10 s, 1 probe x 2 cohorts every 15 s
    assert len(whole) == 2 * 3 * 2 * 10 + 2 * 7


# -- traffic -------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.0, 0.1, 0.5, 1.0])
def test_stable_mode_splits_total_rps_by_the_share(share: float) -> None:
    scenario = make(traffic={"total_rps": 300.0}, duration=200)
    events = generate(scenario, share)
    expected = 300.0 * 200
    for version, part in (("v1", 1 - share), ("v2", share)):
        count = len(of(events, version=version))
        assert within(count, expected * part, np.sqrt(expected * part) + 1e-9)
        # a cohort without traffic runs no instance: no gauge, no probe either
        ticks = [e for e in events if e["type"] != "request" and e["version"] == version]
        assert bool(ticks) == (part > 0)


@pytest.mark.parametrize(
    ("share", "baseline_rps", "canary_rps"),
    [(0.0, 40.0, 0.0), (0.01, 40.0, 40.0), (0.5, 40.0, 40.0), (1.0, 0.0, 500.0)],
)
def test_paired_mode_gives_each_cohort_its_own_rate(
    share: float, baseline_rps: float, canary_rps: float
) -> None:
    scenario = make(
        traffic={"baseline_mode": "paired", "cohort_rps": 40.0, "total_rps": 500.0},
        policy={"name": "paired", "baseline_mode": "paired"},
        duration=200,
    )
    events = generate(scenario, share)
    for version, rps in (("v1", baseline_rps), ("v2", canary_rps)):
        count = len(of(events, version=version))
        assert within(count, rps * 200, np.sqrt(rps * 200) + 1e-9)


def _rate_test(scenario: Scenario, bins: int) -> None:
    events = generate(scenario, 0.0, seed=4)
    rel = np.array([e["ts"] for e in of(events)]) - START
    observed, edges = np.histogram(rel, bins=bins, range=(0, scenario.duration))
    grid = np.linspace(0, scenario.duration, 20_001)
    rate = scenario.traffic.total_rps * scenario.traffic.load.multiplier(grid, scenario.duration)
    cumulative = np.concatenate([[0], np.cumsum((rate[1:] + rate[:-1]) / 2 * np.diff(grid))])
    expected = np.diff(np.interp(edges, grid, cumulative))
    assert within(observed.sum(), expected.sum(), np.sqrt(expected.sum()))
    result = stats.chisquare(observed, expected * observed.sum() / expected.sum())
    assert result.pvalue > 1e-3


def test_a_linear_ramp_shapes_the_rate() -> None:
    scenario = make(traffic={"total_rps": 100.0, "load": {"ramp_factor": 3.0}}, duration=600)
    _rate_test(scenario, bins=20)


def test_a_diurnal_cycle_shapes_the_rate() -> None:
    load = {"diurnal_amplitude": 0.6, "diurnal_period": 300}
    scenario = make(traffic={"total_rps": 100.0, "load": load}, duration=600)
    _rate_test(scenario, bins=40)


# -- latency, errors, statuses ---------------------------------------------------------------


def test_latency_is_lognormal_with_the_configured_median_and_sigma() -> None:
    scenario = make(
        **SINGLE_ROUTE,
        latency={"median_ms": 80.0, "sigma": 0.5},
        instances=1,
        traffic={"total_rps": 200.0},
        duration=100,
    )
    latency = np.array([e["latency_ms"] for e in of(generate(scenario, 0.0))])
    assert len(latency) > 19_000
    reference = stats.lognorm(s=0.5, scale=80.0)
    assert stats.kstest(latency, reference.cdf).pvalue > 1e-3
    for q, tolerance in ((0.5, 0.02), (0.9, 0.03), (0.99, 0.06)):
        assert np.quantile(latency, q) == pytest.approx(reference.ppf(q), rel=tolerance)


def test_routes_follow_endpoint_weights_and_multipliers() -> None:
    scenario = make(error_rate=0.02, client_error_rate=0.0, traffic={"total_rps": 500.0})
    requests = of(generate(scenario, 0.0, seconds=200))
    n = len(requests)
    # (endpoint, dependency): probability, latency multiplier, error multiplier
    routes = {
        ("/browse", "cache"): (0.7, 0.8, 0.5),
        ("/cart", "postgres"): (0.2, 1.3, 1.0),
        ("/pay", "payments-api"): (0.05, 1.5 * 1.8, 2.0 * 2.0),
        ("/pay", "postgres"): (0.05, 1.5 * 1.3, 2.0),
    }
    seen = Counter((e["endpoint"], e["dependency"]) for e in requests)
    assert set(seen) == set(routes)
    for route, (p, lat, err) in routes.items():
        group = [e for e in requests if (e["endpoint"], e["dependency"]) == route]
        assert within(len(group), n * p, np.sqrt(n * p * (1 - p)))
        median = np.median([e["latency_ms"] for e in group])
        assert median == pytest.approx(50.0 * lat, rel=0.03)
        failures = sum(e["status"] >= 500 for e in group)
        rate = 0.02 * err
        assert within(failures, len(group) * rate, np.sqrt(len(group) * rate * (1 - rate)))


def test_statuses_errors_and_client_errors() -> None:
    scenario = make(
        **SINGLE_ROUTE, error_rate=0.2, client_error_rate=0.05, traffic={"total_rps": 500.0}
    )
    statuses = Counter(e["status"] for e in of(generate(scenario, 0.0, seconds=100)))
    n = sum(statuses.values())
    assert set(statuses) == {200, 400, 404, 500, 502, 503}
    failed = statuses[500] + statuses[502] + statuses[503]
    assert within(failed, 0.2 * n, np.sqrt(n * 0.2 * 0.8))
    client = statuses[400] + statuses[404]
    assert within(client, 0.8 * 0.05 * n, np.sqrt(n * 0.04 * 0.96))
    for status, share in ((500, 0.5), (502, 0.2), (503, 0.3)):
        assert within(statuses[status], share * failed, np.sqrt(failed * share * (1 - share)))


def test_instances_share_traffic_and_carry_their_own_latency_multiplier() -> None:
    scenario = make(
        **SINGLE_ROUTE,
        instances=5,
        instance_spread=0.1,
        latency={"sigma": 0.3},
        traffic={"total_rps": 500.0},
        duration=100,
    )
    fleet = Fleet(scenario, 8)
    requests = of(fleet.step(START, 100, 0.5))
    names = [f"shop-{v}-{i}" for v in ("v1", "v2") for i in range(5)]
    counts = Counter(e["instance"] for e in requests)
    assert stats.chisquare([counts[name] for name in names]).pvalue > 1e-3
    multipliers = fleet.instance_latency_mult
    assert 0.03 < np.std(np.log(multipliers)) < 0.25
    for name, multiplier in zip(names, multipliers, strict=True):
        median = np.median([e["latency_ms"] for e in requests if e["instance"] == name])
        assert median == pytest.approx(50.0 * multiplier, rel=0.02)
        assert name.startswith("shop-v2") == all(
            e["version"] == "v2" for e in requests if e["instance"] == name
        )


# -- gauges and probes ---------------------------------------------------------------------


def test_every_instance_samples_every_gauge_every_ten_seconds() -> None:
    scenario = make(traffic={"total_rps": 1.0}, duration=1200)
    metrics = of(generate(scenario, 0.5), "metric")
    series: dict[tuple[str, str], list[float]] = {}
    for e in metrics:
        series.setdefault((e["instance"], e["name"]), []).append(e["ts"])
    assert len(series) == 2 * 3 * 2
    for ts in series.values():
        assert np.allclose(np.diff(ts), 10.0, atol=1e-3)
    cpu = np.array([e["value"] for e in metrics if e["name"] == "cpu_utilization"])
    assert within(cpu.mean(), 0.45, 0.03 / np.sqrt(len(cpu)))
    assert np.std(cpu) == pytest.approx(0.03, rel=0.1)
    assert all(0.0 <= e["value"] <= 1.0 for e in metrics)


def test_gauges_follow_the_shared_load() -> None:
    scenario = make(traffic={"total_rps": 1.0, "load": {"ramp_factor": 2.0}}, duration=1200)
    metrics = of(generate(scenario, 0.5), "metric", name="cpu_utilization")
    late = [e["value"] for e in metrics if e["ts"] >= START + 1100]
    # level = 0.45 x (1 + 0.8 x (load - 1)) with load ~ 1.96 over the last 100 s
    assert np.mean(late) == pytest.approx(0.45 * (1 + 0.8 * 0.958), abs=0.02)


def test_probes_run_per_cohort_at_their_interval_and_failure_rate() -> None:
    scenario = make(
        traffic={"total_rps": 0.0},
        probes=[{"name": "login", "interval": 5, "failure_rate": 0.1}],
        duration=3000,
    )
    probes = of(generate(scenario, 0.5), "probe")
    for version in ("v1", "v2"):
        mine = [e for e in probes if e["version"] == version]
        assert len(mine) == 600
        assert np.allclose(np.diff([e["ts"] for e in mine]), 5.0, atol=1e-3)
        failed = sum(not e["ok"] for e in mine)
        assert within(failed, 60, np.sqrt(600 * 0.1 * 0.9))
        assert {e["probe"] for e in mine} == {"login"}
