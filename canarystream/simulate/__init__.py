"""Scenario generator for demos, tests and benchmarks.

A :class:`Scenario` describes one rollout; a :class:`Fleet` turns it into telemetry in the
public event contract; :func:`simulate` runs several scenarios in closed loop with the engine,
so that each canary's share of traffic follows the decisions.
"""

from canarystream.simulate.closed_loop import FixedShareEngine, share_after, simulate
from canarystream.simulate.fleet import ERROR_STATUSES, Fleet
from canarystream.simulate.presets import PRESETS, build_preset, preset_names
from canarystream.simulate.scenario import Scenario, load_scenarios, scenario_from_mapping

__all__ = [
    "ERROR_STATUSES",
    "PRESETS",
    "FixedShareEngine",
    "Fleet",
    "Scenario",
    "build_preset",
    "load_scenarios",
    "preset_names",
    "scenario_from_mapping",
    "share_after",
    "simulate",
]
