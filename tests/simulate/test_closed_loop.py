"""Closed loop: the canary's share of each scenario follows the engine's decisions."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from canarystream.contracts.decision import Phase
from canarystream.simulate.closed_loop import FixedShareEngine, simulate
from canarystream.simulate.scenario import Scenario

START = 1_790_000_000.0


@dataclass(frozen=True)
class FakeDecision:
    deployment: str
    traffic_percent: float
    phase: str = "running"
    ts: float = 0.0


class FakeEngine:
    """Starts each rollout at ``percent``; then follows ``script``: (seconds, percent, phase)."""

    def __init__(
        self, percent: float = 10.0, script: dict[str, list[tuple[float, float, str]]] | None = None
    ) -> None:
        self.percent = percent
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.seen: list[dict[str, Any]] = []
        self.starts: dict[str, float] = {}
        self.services: dict[str, str] = {}

    def process(self, event: dict[str, Any]) -> list[FakeDecision]:
        self.seen.append(event)
        if event["type"] == "deployment_started":
            self.starts[event["deployment"]] = event["ts"]
            self.services[event["service"]] = event["deployment"]
            return [FakeDecision(event["deployment"], self.percent, ts=event["ts"])]
        deployment = self.services.get(event["service"])
        steps = self.script.get(deployment or "")
        if steps and event["ts"] >= self.starts[deployment] + steps[0][0]:
            _, percent, phase = steps.pop(0)
            return [FakeDecision(deployment, percent, phase, event["ts"])]
        return []


def make(name: str = "d1", **fields: Any) -> Scenario:
    data = {"deployment": name, "service": name, "traffic": {"total_rps": 200.0}}
    return Scenario.model_validate({**data, "duration": 120, **fields})


def requests(events: list[dict], version: str, lo: float, hi: float, service: str = "d1") -> int:
    return sum(
        1
        for e in events
        if e["type"] == "request"
        and e["service"] == service
        and e["version"] == version
        and START + lo <= e["ts"] < START + hi
    )


def test_every_event_goes_to_the_engine_in_the_order_yielded() -> None:
    engine = FakeEngine()
    events = list(simulate([make()], seed=1, engine=engine))
    assert events[0]["type"] == "deployment_started"
    assert engine.seen == events
    assert all(a is b for a, b in zip(engine.seen, events, strict=True))
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    assert ts[0] >= START and ts[-1] < START + 120


def test_the_canary_gets_nothing_before_the_first_decision() -> None:
    class Silent(FakeEngine):
        def process(self, event: dict[str, Any]) -> list[FakeDecision]:
            self.seen.append(event)
            return []

    events = list(simulate([make()], seed=1, engine=Silent()))
    assert requests(events, "v1", 0, 120) > 20_000
    assert not [e for e in events if e.get("version") == "v2"]


def test_the_share_follows_the_decisions() -> None:
    script = {"d1": [(40.0, 50.0, "running"), (80.0, 0.0, "rolled_back")]}
    events = list(simulate([make()], seed=2, engine=FakeEngine(10.0, script)))
    # the first decision is known once deployment_started is processed: from the next step
    assert requests(events, "v2", 0, 1) == 0
    for lo, hi, share in ((1, 40, 0.10), (41, 80, 0.50)):
        canary, baseline = requests(events, "v2", lo, hi), requests(events, "v1", lo, hi)
        n = canary + baseline
        assert abs(canary - share * n) < 5 * np.sqrt(n * share * (1 - share))
    # rolled back at 80 s: no canary telemetry of any kind after that step
    assert not [e for e in events if e.get("version") == "v2" and e["ts"] >= START + 81]
    assert requests(events, "v1", 81, 120) > 7_000


def test_a_router_delay_postpones_each_decision_by_that_much_event_time() -> None:
    script = {"d1": [(40.0, 50.0, "running"), (80.0, 0.0, "rolled_back")]}
    events = list(simulate([make()], seed=2, engine=FakeEngine(10.0, script), delay=10.0))
    assert requests(events, "v2", 0, 10) == 0  # the first decision applies at 10 s
    for lo, hi, share in ((10, 50, 0.10), (51, 90, 0.50)):
        canary, baseline = requests(events, "v2", lo, hi), requests(events, "v1", lo, hi)
        n = canary + baseline
        assert abs(canary - share * n) < 5 * np.sqrt(n * share * (1 - share))
    assert requests(events, "v2", 80, 90) > 0  # rolled back at 80 s, applied at 90 s
    assert not [e for e in events if e.get("version") == "v2" and e["ts"] >= START + 91]
    with pytest.raises(ValueError, match="delay"):
        list(simulate([make()], engine=FakeEngine(), delay=-1.0))


def test_a_promoted_canary_takes_all_traffic() -> None:
    script = {"d1": [(60.0, 100.0, "promoted")]}
    events = list(simulate([make()], seed=3, engine=FakeEngine(25.0, script)))
    assert not [e for e in events if e.get("version") == "v1" and e["ts"] >= START + 61]
    canary = requests(events, "v2", 61, 120)
    assert abs(canary - 200 * 59) < 5 * np.sqrt(200 * 59)


def test_paired_cohorts_keep_their_rate_until_a_terminal_decision() -> None:
    paired = {
        "traffic": {"baseline_mode": "paired", "cohort_rps": 30.0, "total_rps": 200.0},
        "policy": {"name": "paired", "baseline_mode": "paired"},
    }
    rolled = make("rb", **paired)
    promoted = make("pr", **paired)
    script = {
        "rb": [(30.0, 25.0, "running"), (60.0, 0.0, "rolled_back")],
        "pr": [(30.0, 25.0, "running"), (60.0, 100.0, "promoted")],
    }
    events = list(simulate([rolled, promoted], seed=4, engine=FakeEngine(1.0, script)))
    for service in ("rb", "pr"):
        for lo, hi in ((1, 30), (31, 60)):  # 1 % then 25 %: the same 30 requests/s each
            for version in ("v1", "v2"):
                count = requests(events, version, lo, hi, service)
                expected = 30.0 * (hi - lo)
                assert abs(count - expected) < 5 * np.sqrt(expected)
    assert requests(events, "v2", 61, 120, "rb") == 0
    assert abs(requests(events, "v1", 61, 120, "rb") - 30 * 59) < 5 * np.sqrt(30 * 59)
    assert requests(events, "v1", 61, 120, "pr") == 0
    assert abs(requests(events, "v2", 61, 120, "pr") - 200 * 59) < 5 * np.sqrt(200 * 59)


def test_scenarios_merge_in_time_order_each_with_its_own_share() -> None:
    early = make("a")
    late = make("b", start_ts=START + 30.5)
    engine = FakeEngine(20.0, {"b": [(10.0, 80.0, "running")]})
    events = list(simulate([late, early], seed=5, engine=engine))
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    starts = [e for e in events if e["type"] == "deployment_started"]
    assert [(e["deployment"], e["ts"]) for e in starts] == [("a", START), ("b", START + 30.5)]
    assert min(e["ts"] for e in events if e.get("service") == "b") >= START + 30.5
    for service, lo, share in (("a", 1, 0.2), ("b", 42, 0.8)):
        canary = requests(events, "v2", lo, 120, service)
        n = canary + requests(events, "v1", lo, 120, service)
        assert abs(canary - share * n) < 5 * np.sqrt(n * share * (1 - share))


def test_runs_are_reproducible_and_scenarios_draw_independently() -> None:
    def run(seed: int) -> list[dict]:
        return list(simulate([make("a"), make("b")], seed=seed, engine=FakeEngine()))

    first = run(6)
    assert run(6) == first
    assert run(7) != first
    latency = {
        service: [
            e["latency_ms"] for e in first if e.get("service") == service and e["type"] == "request"
        ][:100]
        for service in ("a", "b")
    }
    assert latency["a"] != latency["b"]


def test_a_smaller_step_keeps_the_loop_and_the_order() -> None:
    script = {"d1": [(20.0, 0.0, "aborted")]}
    events = list(simulate([make(duration=40)], engine=FakeEngine(50.0, script), step=0.25))
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    canary_ts = [e["ts"] for e in events if e.get("version") == "v2"]
    assert min(canary_ts) >= START + 0.25 and max(canary_ts) < START + 20.25


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate deployment"):
        list(simulate([make("x"), make("x")], engine=FakeEngine()))
    with pytest.raises(ValueError, match="step"):
        list(simulate([make()], engine=FakeEngine(), step=0))
    assert list(simulate([], engine=FakeEngine())) == []


def test_without_an_engine_the_loop_builds_one(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[FakeEngine] = []

    class Engine(FakeEngine):
        def __init__(self) -> None:
            super().__init__(30.0)
            built.append(self)

    module = types.ModuleType("canarystream.engine")
    module.Engine = Engine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "canarystream.engine", module)
    events = list(simulate([make(duration=10)], seed=1))
    assert len(built) == 1 and built[0].seen == events
    assert any(e.get("version") == "v2" for e in events)


def test_fixed_share_engine_answers_each_start_with_a_real_decision() -> None:
    engine = FixedShareEngine(40.0)
    events = list(simulate([make(duration=60)], seed=9, engine=engine))
    canary, baseline = requests(events, "v2", 1, 60), requests(events, "v1", 1, 60)
    n = canary + baseline
    assert abs(canary - 0.4 * n) < 5 * np.sqrt(n * 0.24)
    (decision,) = engine.process(events[0])
    assert (decision.deployment, decision.traffic_percent, decision.phase) == (
        "d1",
        40.0,
        Phase.RUNNING,
    )
    assert engine.process(events[1]) == []
    with pytest.raises(ValueError):
        FixedShareEngine(150.0)
