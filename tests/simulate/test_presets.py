"""Named presets: each builds, produces valid telemetry, and changes what it names."""

from __future__ import annotations

import pytest

from canarystream.contracts.codec import is_valid_telemetry
from canarystream.contracts.events import input_event_adapter
from canarystream.errors import ConfigError
from canarystream.simulate.fleet import Fleet
from canarystream.simulate.presets import build_preset, preset_names
from canarystream.simulate.scenario import Scenario

EXPECTED = [
    "healthy",
    "errors-x3",
    "errors-x1.5",
    "errors-plus-2pp",
    "latency-x1.25",
    "latency-x1.1",
    "tail-only",
    "gradual-latency",
    "endpoint-only",
    "dependency-only",
    "gauge-only",
    "global-incident",
    "low-traffic",
    "silent-canary",
    "benign-offset",
    "heterogeneity",
    "shared-ramp",
    "diurnal",
]


def test_the_documented_presets_exist() -> None:
    assert preset_names() == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_each_preset_produces_valid_telemetry(name: str) -> None:
    scenario = build_preset(name)
    assert (scenario.deployment, scenario.service) == (name, name)
    fleet = Fleet(scenario, 1)
    assert input_event_adapter.validate_python(fleet.deployment_event())
    events = fleet.step(scenario.start_ts, 20.0, 0.5)
    assert events
    assert all(is_valid_telemetry(e) for e in events)
    for event in events[:: max(1, len(events) // 200)]:
        input_event_adapter.validate_python(event)


def test_presets_change_only_what_they_name() -> None:
    healthy = build_preset("healthy").model_dump(exclude={"deployment", "service"})

    def changed(name: str) -> set[str]:
        dumped = build_preset(name).model_dump(exclude={"deployment", "service"})
        return {key for key in dumped if dumped[key] != healthy[key]}

    assert changed("errors-x3") == {"regression"}
    assert build_preset("errors-x3").regression.factor == 3.0
    assert build_preset("errors-plus-2pp").regression.add == 0.02
    assert build_preset("endpoint-only").regression.endpoint == "/cart"
    assert build_preset("dependency-only").regression.dependency == "payments-api"
    assert changed("global-incident") == {"incidents"}
    assert changed("silent-canary") == {"canary_silent_from"}
    assert changed("benign-offset") == {"canary_latency_factor"}
    assert changed("low-traffic") == {"traffic"}
    assert changed("heterogeneity") == {"instances", "instance_spread"}
    assert changed("shared-ramp") == {"traffic", "latency"}


def test_overrides_apply() -> None:
    scenario = build_preset("tail-only", rps=30, seed_offset=2, service="checkout", duration="5m")
    assert scenario.traffic.total_rps == 30
    assert scenario.seed_offset == 2
    assert (scenario.service, scenario.deployment) == ("checkout", "checkout-tail-only")
    assert scenario.duration == 300
    assert isinstance(scenario, Scenario)


def test_a_seed_offset_gives_other_draws() -> None:
    def first_events(offset: int) -> list[dict]:
        scenario = build_preset("healthy", seed_offset=offset)
        return Fleet(scenario, 0).step(scenario.start_ts, 2.0, 0.5)

    assert first_events(0) == first_events(0)
    assert first_events(0) != first_events(1)


def test_an_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope'") as caught:
        build_preset("nope")
    assert all(name in str(caught.value) for name in EXPECTED)
