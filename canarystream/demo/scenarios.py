"""The two rollouts of the demo: a healthy ``checkout`` and a ``payments`` that regresses."""

from __future__ import annotations

from typing import Any

from canarystream.demo.plan import PLAN_MINUTES
from canarystream.simulate.presets import build_preset
from canarystream.simulate.scenario import Scenario, scenario_from_mapping

__all__ = ["PLAN_MINUTES", "ROUTER_DELAY", "demo_scenarios"]

ROUTER_DELAY = 15.0
"""Event seconds from a decision to the demo's router applying it (live and offline alike)."""

_STAGES = (1, 5, 10, 25, 50)  # the default policy's traffic plan, %
_ONSET = 540.0 / (PLAN_MINUTES * 60.0)  # the regression begins at 9 of 40 minutes


def demo_scenarios(
    start_ts: float = 1_790_000_000.0, minutes: float = PLAN_MINUTES
) -> list[Scenario]:
    """A healthy canary of ``checkout`` and one of ``payments`` whose errors triple at 9 min.

    A shorter plan (``minutes`` < 40) scales everything down with it: the regression's onset,
    and each stage's minimum duration through an inline policy (``demo-<minutes>m``) that is
    otherwise the default.

    >>> [s.deployment for s in demo_scenarios()]
    ['checkout-healthy', 'payments-errors-x3']
    >>> short = demo_scenarios(minutes=16)
    >>> short[1].regression.onset, short[1].policy["stages"][0]["min_duration"]
    (216.0, 144.0)
    """
    if not 0 < minutes <= PLAN_MINUTES:
        raise ValueError(f"minutes must lie within (0, {PLAN_MINUTES:g}]")
    scale = minutes / PLAN_MINUTES
    seconds = minutes * 60.0
    policy: dict[str, Any] | None = None
    if minutes != PLAN_MINUTES:
        policy = {
            "name": f"demo-{minutes:g}m",
            "description": f"The default policy with stages {scale:g} x as long.",
            "stages": [
                {"traffic_percent": p, "min_duration": round(360.0 * scale, 3)} for p in _STAGES
            ],
        }
    out = []
    for preset, service in (("healthy", "checkout"), ("errors-x3", "payments")):
        data = build_preset(
            preset, service=service, duration=seconds, start_ts=start_ts
        ).model_dump()
        if data.get("regression") is not None:
            data["regression"]["onset"] = round(_ONSET * seconds, 3)
        if policy is not None:
            data["policy"] = policy
        out.append(scenario_from_mapping(data, source=f"demo scenario {service!r}"))
    return out
