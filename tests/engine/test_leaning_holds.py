"""A canary whose errors lean toward harm waits at its stage instead of advancing on the
blast-radius margin (the default policy, closed loop, the router 15 s behind the decisions).

Errors ×3 at 200 req/s, 1 % of it to the canary: at the first stage's minimum duration the
error ratio's bound is still wide, but its extra errors at 5 % of all traffic are within the
margin. The evidence already leans toward harm, so the rollout stays at 1 % until the change
detector fails it; no user beyond the first 1 % ever meets the regression.
"""

from __future__ import annotations

import pytest

from canarystream.contracts.decision import Action
from canarystream.engine import Engine
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset


@pytest.mark.parametrize("seed", [0, 2, 3, 4])
def test_errors_x3_are_rolled_back_from_the_first_stage_never_advanced_on_the_margin(
    seed: int,
) -> None:
    scenario = build_preset("errors-x3", rps=200, duration=800)
    events = list(simulate([scenario], seed=seed, delay=15.0))
    decisions = Engine().process_all(events)

    actions = [(d.action, d.stage, d.traffic_percent) for d in decisions]
    assert actions[0] == (Action.ADVANCE, 0, 1.0)
    rollback = next(i for i, d in enumerate(decisions) if d.action is Action.ROLLBACK)
    assert all(action is not Action.ADVANCE for action, _, _ in actions[1:rollback])
    assert (decisions[rollback].stage, decisions[rollback].summary) == (
        0,
        "critical regression: error_rate",
    )
