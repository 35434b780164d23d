"""Small rollouts through the state format, field by field (fast: no recorded case).

The recorded cases of ``test_state.py`` cover rollouts in every phase; the three here are built
in a second each: held and paged for a decision not applied, with observed routing; frozen past
its rollback-unsafe stage with hooks, paused by a command; promoted. Fields the inputs here do
not set (signed commands, approvals, accepted failures, breakdown trackers) are set in the
state by hand and must come back as written; damaged states are refused naming the field.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from canarystream.engine import Engine
from canarystream.engine.rollout import Rollout
from canarystream.errors import StateFormatError
from canarystream.governance.rules import MAX_CONTROLS
from tests.engine.test_state import (
    assert_plain,
    assert_same,
    awaiting_a_decision,
    frozen_with_hooks,
    through_json,
)
from tests.support.streams import Stream, fast_policy


def _promoted() -> list[dict[str, Any]]:
    stream = Stream(5)
    return [stream.started(policy=fast_policy(name="promoted")), *stream.requests(0, 200)]


def _rollout(events: Callable[[], list[dict[str, Any]]]) -> Rollout:
    engine = Engine()
    engine.process_all(events())
    (rollout,) = engine.rollouts.values()
    return rollout


@pytest.mark.parametrize(
    "events", [awaiting_a_decision, frozen_with_hooks, _promoted], ids=lambda f: f.__name__
)
def test_a_small_rollout_survives_the_state_format(
    events: Callable[[], list[dict[str, Any]]],
) -> None:
    rollout = _rollout(events)
    state = rollout.to_state()
    assert_plain(state, "rollout")  # JSON types only: the policy, decision and hooks too

    assert_same(rollout, Rollout.from_state(through_json(state)), "rollout", {})
    assert through_json(Rollout.from_state(through_json(state)).to_state()) == through_json(state)


def _state() -> dict[str, Any]:
    return through_json(_rollout(frozen_with_hooks).to_state())  # type: ignore[no-any-return]


def _edited(**fields: Any) -> dict[str, Any]:
    state = _state()
    state.update(copy.deepcopy(fields))
    return state


def test_fields_the_inputs_here_do_not_set_come_back_as_written() -> None:
    controls = [f"command-{index}" for index in range(MAX_CONTROLS + 2)]
    tracker = _state()["trackers"][0]["tracker"]
    trackers = [
        {"key": None, "tracker": tracker},
        {"key": ["endpoint", "/pay"], "tracker": tracker},
    ]
    state = _edited(
        controls=controls,
        approved_stage=1,
        approved_by="carol",
        noncritical_failed={"gauges[cpu]": 1_790_000_040.0},
        acknowledged=["gauges[cpu]"],
        trackers=trackers,
        last_decision=None,
    )
    restored = Rollout.from_state(state)

    assert restored.controls == controls[-MAX_CONTROLS:]  # the newest kept
    assert (restored.approved_stage, restored.approved_by) == (1, "carol")
    assert restored.noncritical_failed == {"gauges[cpu]": 1_790_000_040.0}
    assert restored.acknowledged == {"gauges[cpu]"}
    assert list(restored.trackers) == [None, ("endpoint", "/pay")]
    assert restored.last_decision is None
    again = through_json(restored.to_state())
    assert again == {**state, "controls": controls[-MAX_CONTROLS:]}


DAMAGE: list[tuple[dict[str, Any], str]] = [
    ({"stage": 2}, "rollout.stage: 2 is not a stage of the policy"),
    ({"stage": -1}, "rollout.stage: -1 is not a stage of the policy"),
    ({"stage_requests": [0, 0, 0]}, "rollout.stage_requests: expected 2 items, got 3"),
    ({"buckets": "three"}, "rollout.buckets: expected a list, got str"),
    ({"consumed": {"request": [1, 2, 3]}}, "rollout.consumed.request: expected 2 items, got 3"),
]


@pytest.mark.parametrize(("fields", "message"), DAMAGE, ids=lambda x: str(x)[:30])
def test_a_damaged_state_is_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(StateFormatError, match=f"^{re.escape(message)}$"):
        Rollout.from_state(_edited(**fields))


@pytest.mark.parametrize("part", ["buckets", "groups"])
def test_a_state_with_one_part_too_many_is_refused_naming_it(part: str) -> None:
    state = _state()
    state[part] = [*state[part], state[part][-1]]
    count = len(state[part])

    with pytest.raises(StateFormatError, match=f"^rollout.{part}: expected {count - 1} items"):
        Rollout.from_state(state)
