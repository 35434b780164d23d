"""Details of :class:`Engine`: shifts for unknown or finished rollouts, the skew of control
inputs, and the order of decisions when event time is advanced."""

from __future__ import annotations

from typing import Any

import pytest

from canarystream.engine import Engine
from canarystream.errors import ContractError
from tests.support.streams import DEPLOYMENT, SERVICE, T0, Stream, fast_policy, run


def _shift(at: float, deployment: str = DEPLOYMENT) -> dict[str, Any]:
    return {
        "type": "traffic_shifted",
        "ts": T0 + at,
        "deployment": deployment,
        "service": SERVICE,
        "traffic_percent": 0,
        "backend": "test",
    }


def test_shifts_for_a_forgotten_finished_deployment_are_counted_each() -> None:
    engine = Engine()
    engine.remember(SERVICE, {"checkout-41": T0})
    assert run([_shift(1, "checkout-41"), _shift(2, "checkout-41")], engine) == []
    assert engine.counters["traffic_shifted_after_finish"] == 2


def test_shifts_after_the_end_of_a_known_rollout_are_counted_each() -> None:
    stream = Stream()
    engine = Engine()
    run([stream.started(policy=fast_policy()), stream.control("aborted", 1)], engine)
    assert run([_shift(2), _shift(3)], engine) == []
    assert engine.counters["traffic_shifted_after_finish"] == 2


def test_a_shift_for_an_unknown_deployment_says_which() -> None:
    with pytest.raises(ContractError, match=r"^deployment 'nope' is unknown$") as refused:
        Engine().process(_shift(1, "nope"))
    assert refused.value.reason == "unknown_deployment"


def test_a_control_input_exactly_max_skew_ahead_is_taken() -> None:
    stream = Stream()
    engine = Engine()
    run([stream.started(policy=fast_policy())], engine)
    run([stream.control("paused", 300)], engine)  # admission.max_skew: 5 min by default
    assert engine.rollouts[DEPLOYMENT].clock == T0 + 300


def test_a_control_input_further_ahead_is_refused_saying_how_far() -> None:
    stream = Stream()
    engine = Engine()
    run([stream.started(policy=fast_policy())], engine)
    with pytest.raises(ContractError) as refused:
        engine.process(stream.control("paused", 1000))
    assert refused.value.reason == "ts_out_of_range"
    assert str(refused.value) == (
        f"ts {T0 + 1000:.3f} (2026-09-21T14:30:00Z) is 16m 40s ahead of the clock of "
        "deployment 'checkout-42'; at most 5m 00s (admission.max_skew)"
    )


def test_advancing_event_time_decides_rollout_by_rollout_in_deployment_order() -> None:
    engine = Engine()
    later = Stream(deployment="alpha-1").started(policy=fast_policy()) | {"service": "zeta"}
    run([Stream().started(policy=fast_policy()), later], engine)
    deployments = [d.deployment for d in engine.advance_to(T0 + 1000)]
    assert deployments[0] == "alpha-1"
    assert deployments == sorted(deployments)
    assert set(deployments) == {"alpha-1", DEPLOYMENT}
