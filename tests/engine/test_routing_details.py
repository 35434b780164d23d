"""Details of :class:`Routing`: the share tolerance, changes, the first observation, state."""

from __future__ import annotations

import pytest

from canarystream.engine.routing import SHARE_TOLERANCE, Routing
from canarystream.errors import StateFormatError


def test_a_share_exactly_the_tolerance_away_still_routes_the_decided_share() -> None:
    routing = Routing()
    routing.observe(0.0, 10.0 + SHARE_TOLERANCE, None, 10.0, True)
    assert routing.routes(10.0)
    assert not routing.routes(10.0 - 2 * SHARE_TOLERANCE)
    assert routing.awaited is None


def test_a_shift_to_the_share_already_observed_is_no_change() -> None:
    routing = Routing()
    assert routing.observe(0.0, 10.0, None, 10.0, True)
    assert not routing.observe(1.0, 10.0, None, 10.0, True)
    assert routing.observe(2.0, 12.0, None, 10.0, True)


def test_a_first_shift_before_any_decision_awaits_the_latest_decision_by_that_name() -> None:
    routing = Routing()
    routing.observe(100.0, 30.0, None, 10.0, True)
    assert (routing.awaited, routing.awaited_since) == ("the latest decision", 100.0)
    assert routing.overdue(160.0, 60.0, 10.0) == (
        "decision not applied: the latest decision set the canary's share to 10%, "
        "routing observed at 30% for 1m 00s (actuation_deadline 1m 00s)"
    )


@pytest.mark.parametrize("awaiting", [False, True])
def test_the_state_of_a_routing_reads_back_as_written(awaiting: bool) -> None:
    routing = Routing()
    if awaiting:
        routing.decide("d-1", 50.0, 5.0, True)  # nothing observed: taken as routed
        routing.observe(10.0, 10.0, None, 50.0, True)
        routing.page()
    state = routing.to_state()
    assert Routing.from_state(state).to_state() == state


def test_a_bad_routing_state_names_the_field() -> None:
    state = Routing().to_state() | {"decided": 3}
    with pytest.raises(StateFormatError, match=r"^Routing\.decided: expected a string or null"):
        Routing.from_state(state)
