"""Open loop: a scenario's ``routing`` sets the canary's share, recorded as traffic_shifted."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from canarystream.cli import app
from canarystream.errors import ConfigError
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.scenario import scenario_from_mapping
from tests.simulate.test_closed_loop import START, FakeEngine, make, requests

runner = CliRunner()


def shifts(events: list[dict[str, Any]], service: str = "d1") -> list[tuple[float, float]]:
    return [
        (e["ts"] - START, e["traffic_percent"])
        for e in events
        if e["type"] == "traffic_shifted" and e["service"] == service
    ]


def test_the_share_follows_the_steps_and_each_is_recorded_when_it_takes_effect() -> None:
    routing = [{"at": 0, "percent": 20.0}, {"at": 40.5, "percent": 60.0}]
    # The engine's decisions would roll back at 10 s: an open-loop scenario ignores them.
    engine = FakeEngine(5.0, {"d1": [(10.0, 0.0, "rolled_back")]})
    events = list(simulate([make(routing=routing)], seed=2, engine=engine))
    assert engine.seen == events
    assert [e["type"] for e in events[:2]] == ["deployment_started", "traffic_shifted"]
    assert shifts(events) == [(0.0, 20.0), (40.5, 60.0)]
    shift = events[1]
    assert shift == {
        "type": "traffic_shifted",
        "ts": START,
        "deployment": "d1",
        "service": "d1",
        "traffic_percent": 20.0,
    }
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    for lo, hi, share in ((0, 40.5, 0.2), (40.5, 120, 0.6)):
        canary, baseline = requests(events, "v2", lo, hi), requests(events, "v1", lo, hi)
        n = canary + baseline
        assert abs(canary - share * n) < 5 * np.sqrt(n * share * (1 - share))
    # exactly at the shift: the last second before it at 20 %, the one after at 60 %
    assert requests(events, "v2", 39.5, 40.5) < requests(events, "v2", 40.5, 41.5)


def test_before_the_first_step_the_canary_gets_nothing_and_a_paired_shift_says_50() -> None:
    paired = {
        "traffic": {"baseline_mode": "paired", "cohort_rps": 30.0},
        "policy": {"name": "paired", "baseline_mode": "paired"},
    }
    scenario = make(routing=[{"at": 30, "percent": 10.0}], **paired)
    events = list(simulate([scenario], seed=3, engine=FakeEngine(50.0)))
    assert requests(events, "v2", 0, 30) == 0
    assert shifts(events) == [(30.0, 50.0)]  # each cohort 30 requests/s: half of them
    assert abs(requests(events, "v2", 30, 120) - 30 * 90) < 5 * np.sqrt(30 * 90)


def test_closed_and_open_loop_scenarios_run_side_by_side() -> None:
    closed, opened = make("a"), make("b", routing=[{"at": 0, "percent": 50.0}])
    engine = FakeEngine(10.0)
    events = list(simulate([closed, opened], seed=4, engine=engine))
    assert shifts(events, "a") == [] and shifts(events, "b") == [(0.0, 50.0)]
    for service, share in (("a", 0.1), ("b", 0.5)):
        canary = requests(events, "v2", 1, 120, service)
        n = canary + requests(events, "v1", 1, 120, service)
        assert abs(canary - share * n) < 5 * np.sqrt(n * share * (1 - share))
    # the closed-loop scenario's events are those it has alone
    alone = list(simulate([closed], seed=4, engine=FakeEngine(10.0)))
    assert [e for e in events if e.get("service") == "a"] == alone


@pytest.mark.parametrize(
    ("routing", "field"),
    [
        ([], "routing"),
        ([{"at": 10, "percent": 5}, {"at": 10, "percent": 6}], "routing.1.at"),
        ([{"at": 0, "percent": 5}, {"at": 120, "percent": 6}], "routing.1.at"),
        ([{"at": 0, "percent": 101}], "routing.0.percent"),
        ([{"at": -1, "percent": 5}], "routing.0.at"),
        ([{"at": "5x", "percent": 5}], "routing.0.at"),
    ],
)
def test_a_bad_routing_is_refused_naming_the_field(routing: list[Any], field: str) -> None:
    data = {"deployment": "d", "service": "s", "duration": 120, "routing": routing}
    with pytest.raises(ConfigError, match=rf"\b{field}:"):
        scenario_from_mapping(data)


def test_simulate_routing_writes_an_open_loop_recording() -> None:
    args = ["simulate", "healthy", "--duration", "30", "--rps", "50"]
    result = runner.invoke(app, [*args, "--routing", "20, 40@10s,60@20"])
    assert result.exit_code == 0, result.output
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert shifts(events, "healthy") == [(0.0, 20.0), (10.0, 40.0), (20.0, 60.0)]
    assert "healthy: open loop, routed 20→40→60 %" in result.stderr
    result = runner.invoke(app, [*args, "--share", "12.5"])
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert shifts(events, "healthy") == [(0.0, 12.5)]


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        ("20,40", "every share after the first needs its time"),
        ("20,x@10s", "'x' is not a percentage"),
        ("20,40@soon", "invalid duration"),
        ("20,40@1h", "routing.1.at: 3600 s is not within the duration"),
    ],
)
def test_simulate_refuses_a_bad_routing_saying_what(routing: str, message: str) -> None:
    result = runner.invoke(app, ["simulate", "healthy", "--duration", "30", "--routing", routing])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    both = ["simulate", "healthy", "--share", "5", "--routing", "5"]
    assert "not both" in runner.invoke(app, both).output
