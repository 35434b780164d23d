"""Named scenarios for demos, tests and benchmarks.

Every preset starts from the same service (three endpoints over a cache, a database and an
external API; 200 requests/s; a 50 ms median; two gauges and a health probe) and changes one
thing. The service and deployment are named after the preset so that several presets can
run side by side.
"""

from __future__ import annotations

from typing import Any

from canarystream.errors import ConfigError
from canarystream.simulate.scenario import Scenario, scenario_from_mapping

__all__ = ["PRESETS", "build_preset", "preset_names"]

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "healthy": ("Canary identical to the baseline (an A/A test).", {}),
    "errors-x3": (
        "Canary error rate x3 from the start.",
        {"regression": {"kind": "errors_mult", "factor": 3.0}},
    ),
    "errors-x1.5": (
        "Canary error rate x1.5 from the start.",
        {"regression": {"kind": "errors_mult", "factor": 1.5}},
    ),
    "errors-plus-2pp": (
        "Canary error rate +2 percentage points from the start.",
        {"regression": {"kind": "errors_add", "add": 0.02}},
    ),
    "latency-x1.25": (
        "Every canary request 25 % slower.",
        {"regression": {"kind": "latency_mult", "factor": 1.25}},
    ),
    "latency-x1.1": (
        "Every canary request 10 % slower.",
        {"regression": {"kind": "latency_mult", "factor": 1.1}},
    ),
    "tail-only": (
        "The slowest 5 % of canary requests twice as slow; the median is unchanged.",
        {"regression": {"kind": "tail_only", "factor": 2.0, "fraction": 0.05}},
    ),
    "gradual-latency": (
        "Canary latency drifts up from 2 min: +20 % 10 min later, and growing.",
        {
            "regression": {
                "kind": "gradual",
                "target": "latency",
                "factor": 1.2,
                "ramp": 600.0,
                "onset": 120.0,
            }
        },
    ),
    "endpoint-only": (
        "Only the canary's /cart requests are 50 % slower.",
        {"regression": {"kind": "latency_mult", "factor": 1.5, "endpoint": "/cart"}},
    ),
    "dependency-only": (
        "Only canary requests through payments-api fail 8 times as often.",
        {"regression": {"kind": "errors_mult", "factor": 8.0, "dependency": "payments-api"}},
    ),
    "gauge-only": (
        "Canary cpu_utilization 0.15 higher; requests unaffected.",
        {"regression": {"kind": "gauge_only", "gauge": "cpu_utilization", "add": 0.15}},
    ),
    "global-incident": (
        "A shared incident at 10 min for 3 min: +3 pp errors, latency x1.5, in both cohorts.",
        {
            "incidents": [
                {"start": 600.0, "duration": 180.0, "error_add": 0.03, "latency_mult": 1.5}
            ]
        },
    ),
    "low-traffic": (
        "A healthy canary of a service with 2 requests/s.",
        {"traffic": {"total_rps": 2.0}},
    ),
    "silent-canary": (
        "The canary stops sending telemetry 4 min after the start.",
        {"canary_silent_from": 240.0},
    ),
    "benign-offset": (
        "Canary 2 % slower: within the default latency tolerance.",
        {"canary_latency_factor": 1.02},
    ),
    "heterogeneity": (
        "Healthy canary on instances that differ by about 3 % in latency.",
        {"instances": 4, "instance_spread": 0.03},
    ),
    "shared-ramp": (
        "Healthy canary while load triples over the run; latency rises with load in both.",
        {"traffic": {"load": {"ramp_factor": 3.0}}, "latency": {"load_sensitivity": 0.15}},
    ),
    "diurnal": (
        "Healthy canary under a compressed daily cycle (±50 % load, 20 min period).",
        {
            "traffic": {"load": {"diurnal_amplitude": 0.5, "diurnal_period": 1200.0}},
            "latency": {"load_sensitivity": 0.15},
        },
    ),
}
"""Preset name → (one-line description, scenario fields it sets)."""


def preset_names() -> list[str]:
    """Names of the presets, in their documented order."""
    return list(PRESETS)


def build_preset(  # noqa: PLR0913 -- keyword-only overrides
    name: str,
    *,
    rps: float | None = None,
    seed_offset: int = 0,
    service: str | None = None,
    duration: float | str | None = None,
    start_ts: float | None = None,
    routing: list[dict[str, float]] | None = None,
) -> Scenario:
    """The scenario of preset ``name``, with optional overrides.

    ``service`` defaults to the preset's name; the deployment id is the preset's name, or
    ``<service>-<name>`` when a service is given. ``rps`` sets the service's request rate;
    ``routing`` (open loop) the canary's share over time.

    >>> build_preset("errors-x3").regression.factor
    3.0
    >>> build_preset("healthy", service="checkout", rps=50).deployment
    'checkout-healthy'
    """
    try:
        _, fields = PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(preset_names())}") from None
    data: dict[str, Any] = {
        "deployment": name if service is None else f"{service}-{name}",
        "service": service or name,
        **fields,
    }
    scenario = scenario_from_mapping(data, source=f"preset {name!r}")
    return scenario.override(
        rps=rps, duration=duration, seed_offset=seed_offset, start_ts=start_ts, routing=routing
    )
