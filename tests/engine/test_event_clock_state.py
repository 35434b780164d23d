"""Events waiting for a rollout's clock survive a restart, and a stored one that does not fit
is refused naming its path.

A restart can come while events stamped in a later tick wait (pending) for the clock to move;
they are stored with the rollout and must come back as they were, in their order, so that the
restarted worker applies them to the same ticks. A stored item of the wrong shape is refused
(what a dead letter carries), never applied half read.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from canarystream.engine.admission import METRIC, PROBE, REQUEST, EventClock
from canarystream.errors import ContractError, StateFormatError
from canarystream.policy.model import Admission
from canarystream.readable import duration, instant

ADMISSION = Admission()
REQUEST_EVENT = {"type": "request", "version": "v2"}
METRIC_EVENT = {"type": "metric", "name": "cpu", "value": 0.5}
PROBE_EVENT = {"type": "probe", "probe": "login", "ok": True}


def _held(
    clock: EventClock,
    ts: float,
    kind: int,
    cohort: int,
    payload: Any,
    *,
    arrived: int,
    message: str | None = None,
) -> float | None:
    """Hold one event and count it as a witness, as a rollout does with an event ahead."""
    clock.hold(ts, kind, cohort, payload)
    return clock.witness(ts, arrived, message)


def _waiting() -> EventClock:
    clock = EventClock(ADMISSION)
    _held(clock, 107.0, REQUEST, 1, (41.5, 200, REQUEST_EVENT), arrived=10)
    _held(clock, 106.0, METRIC, 0, METRIC_EVENT, arrived=11)
    _held(clock, 106, PROBE, 1, PROBE_EVENT, arrived=12)
    return clock


def _through_json(clock: EventClock) -> EventClock:
    return EventClock.from_state(orjson.loads(orjson.dumps(clock.to_state())), clock.admission)


def test_pending_events_come_back_in_their_order_with_their_payloads() -> None:
    clock = _waiting()
    again = _through_json(clock)

    assert again.pending == clock.pending
    assert again.to_state() == clock.to_state()
    # Due in event-time order, ties in arrival order; a request's payload is a tuple again.
    assert again.due(200.0) == [
        (METRIC, 0, METRIC_EVENT, 106.0),
        (PROBE, 1, PROBE_EVENT, 106),
        (REQUEST, 1, (41.5, 200, REQUEST_EVENT), 107.0),
    ]
    assert (again.order, again.witness_score, again.witness_mark) == (3, 3, 13)


def _stored(item: Any) -> dict[str, Any]:
    return {**_waiting().to_state(), "pending": [item]}


SHAPE = "EventClock.pending.0: expected [ts, order, kind, cohort, event]"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ((106.0, 0, METRIC, 0, METRIC_EVENT), SHAPE),  # not a list
        ([106.0, 0, METRIC, 0], SHAPE),
        ([106.0, 0, METRIC, 0, METRIC_EVENT, 1], SHAPE),
        (["106", 0, METRIC, 0, METRIC_EVENT], SHAPE),
        ([106.0, 0.0, METRIC, 0, METRIC_EVENT], SHAPE),
        ([106.0, 0, 1.0, 0, METRIC_EVENT], SHAPE),
        ([106.0, 0, 3, 0, METRIC_EVENT], SHAPE),
        ([106.0, 0, METRIC, 0.0, METRIC_EVENT], SHAPE),
        ([106.0, 0, METRIC, 2, METRIC_EVENT], SHAPE),
        ([106.0, 0, METRIC, 0, [1]], "EventClock.pending.0.4: expected an event"),
        ([106.0, 0, PROBE, 1, "ok"], "EventClock.pending.0.4: expected an event"),
        (
            [106.0, 0, REQUEST, 1, REQUEST_EVENT],
            "EventClock.pending.0.4: expected [latency, status, event]",
        ),
        (
            [106.0, 0, REQUEST, 1, [41.5, 200]],
            "EventClock.pending.0.4: expected [latency, status, event]",
        ),
        (
            [106.0, 0, REQUEST, 1, ["41.5", 200, REQUEST_EVENT]],
            "EventClock.pending.0.4: expected [latency, status, event]",
        ),
        (
            [106.0, 0, REQUEST, 1, [41.5, 200.0, REQUEST_EVENT]],
            "EventClock.pending.0.4: expected [latency, status, event]",
        ),
        (
            [106.0, 0, REQUEST, 1, [41.5, 200, "event"]],
            "EventClock.pending.0.4: expected [latency, status, event]",
        ),
    ],
)
def test_a_stored_pending_event_of_the_wrong_shape_is_refused(item: Any, message: str) -> None:
    with pytest.raises(StateFormatError) as refused:
        EventClock.from_state(_stored(item), ADMISSION)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "item",
    [
        [106, 0, METRIC, 0, METRIC_EVENT],  # an integer time
        [106.0, 5, PROBE, 1, PROBE_EVENT],
        [106.0, 0, REQUEST, 0, [41, 503, REQUEST_EVENT]],  # an integer latency
    ],
)
def test_every_shape_of_a_pending_event_is_read(item: list[Any]) -> None:
    (pending,) = EventClock.from_state(_stored(item), ADMISSION).pending
    expected = tuple(item[:4]) + ((tuple(item[4]),) if item[2] == REQUEST else (item[4],))
    assert pending == expected


# ------------------------------------------------------------------ far events and gaps

GAP = Admission(gap_witnesses=3)


def _far(clock: EventClock, ts: float, arrived: int, message: str | None = None) -> float | None:
    try:
        return clock.beyond(ts, 100.0, arrived, message)
    except ContractError as refused:
        assert refused.reason == "ts_out_of_range"
        assert str(refused) == (
            f"ts {ts:.3f} ({instant(ts)}) is {duration(ts - 100.0)} ahead of the rollout's "
            f"clock ({instant(100.0)}); at most 5m 00s (admission.max_skew)"
        )
        return None


def test_a_far_event_is_refused_saying_how_far_ahead_and_counted_once() -> None:
    clock = EventClock(GAP)
    assert _far(clock, 1000.0, arrived=0) is None
    assert _far(clock, 1001.0, arrived=0) is None
    assert clock.rejected == 2


def test_a_gap_needs_its_witnesses_again_after_the_clock_moved_over_one() -> None:
    clock = EventClock(GAP)
    assert [_far(clock, ts, arrived=0) for ts in (1002.0, 1000.0, 1001.0)] == [None, None, 1000.0]
    assert clock.far_score == 0
    # The next gap is shown by three new far events, not two.
    assert [_far(clock, ts, arrived=0) for ts in (5000.0, 5001.0)] == [None, None]
    assert _far(clock, 5002.0, arrived=0) == 5000.0


def test_far_events_cancelled_by_in_range_arrivals_are_forgotten() -> None:
    clock = EventClock(GAP)
    assert _far(clock, 900.0, arrived=0) is None
    # One in-range event arrived since: the one far witness is cancelled (score back to 0),
    # so it does not count towards the next gap nor set where the clock moves.
    moves = [_far(clock, ts, arrived=1) for ts in (2000.0, 2001.0, 2002.0)]
    assert moves == [None, None, 2000.0]


def test_an_event_past_the_pending_limit_is_refused_and_counted() -> None:
    clock = EventClock(Admission(max_pending=2))
    _held(clock, 106.0, METRIC, 0, METRIC_EVENT, arrived=0)
    assert not clock.full()
    _held(clock, 107.0, METRIC, 0, METRIC_EVENT, arrived=1)
    assert clock.full()
    refused = clock.refuse(108.0)
    assert isinstance(refused, ContractError)
    assert refused.reason == "ts_out_of_range"
    assert str(refused) == (
        "2 events already wait for the rollout's clock (admission.max_pending); "
        "ts 108.000 not admitted"
    )
    # A refused event is still a witness, but no arrival: the score goes up by one and the
    # next in-range event counts down from there.
    assert clock.witness(108.0, 2, None, held=False) is None
    assert (clock.witness_score, clock.witness_mark, clock.rejected) == (3, 2, 1)
    assert len(clock.pending) == 2


def test_the_heartbeat_mark_and_the_last_far_message_survive_a_restart() -> None:
    clock = EventClock(GAP)
    assert not clock.idle_since_last_heartbeat(arrived=4)
    _far(clock, 1000.0, arrived=4, message="m1")
    again = _through_json(clock)
    assert (again.heartbeat_mark, again.far_message) == (4, "m1")
    assert again.idle_since_last_heartbeat(arrived=4)
    # The same message again is no new witness of a gap.
    _far(again, 1001.0, arrived=4, message="m1")
    assert (again.far_score, list(again.far)) == (1, [1000.0])


def test_stored_witnesses_beyond_what_the_policy_keeps_are_refused() -> None:
    state = EventClock(GAP).to_state()
    kept = EventClock.from_state({**state, "far": [1.0, 2.0, 3.0]}, GAP)
    assert list(kept.far) == [1.0, 2.0, 3.0]
    with pytest.raises(StateFormatError) as refused:
        EventClock.from_state({**state, "far": [1.0, 2.0, 3.0, 4.0]}, GAP)
    assert str(refused.value) == "EventClock.far: more than the 3 the policy keeps"


def test_the_very_first_event_ahead_is_one_witness_only() -> None:
    # Nothing arrived yet: the first event of a later tick is one witness of two, not two.
    clock = EventClock(Admission(witnesses=2))
    assert _held(clock, 106.0, METRIC, 0, METRIC_EVENT, arrived=0) is None
    assert _held(clock, 107.0, METRIC, 0, METRIC_EVENT, arrived=1) == 106.0


def test_only_events_stamped_before_the_limit_are_due() -> None:
    clock = _waiting()
    assert clock.due(107.0) == [(METRIC, 0, METRIC_EVENT, 106.0), (PROBE, 1, PROBE_EVENT, 106)]
    assert clock.due(107.0) == []
    assert [ts for *_, ts in clock.due(107.5)] == [107.0]


def test_the_events_of_one_message_are_one_witness() -> None:
    clock = EventClock(Admission(witnesses=2))
    # Any number of events of message m1 ahead: one witness, at its first event's time.
    for arrived, ts in enumerate((106.0, 105.5, 107.0)):
        assert _held(clock, ts, METRIC, 0, METRIC_EVENT, arrived=arrived, message="m1") is None
    assert (clock.witness_score, list(clock.witnesses), len(clock.pending)) == (1, [106.0], 3)
    # A second message is the second witness: the clock moves to the earliest witness.
    assert _held(clock, 108.0, METRIC, 0, METRIC_EVENT, arrived=3, message="m2") == 106.0
    # Events of no named message are each a message of their own.
    single = EventClock(Admission(witnesses=2))
    assert _held(single, 106.0, METRIC, 0, METRIC_EVENT, arrived=0) is None
    assert _held(single, 107.0, METRIC, 0, METRIC_EVENT, arrived=1) == 106.0


def test_a_message_whose_witness_was_cancelled_counts_again_but_never_twice_at_once() -> None:
    clock = EventClock(Admission(witnesses=2))
    assert _held(clock, 106.0, METRIC, 0, METRIC_EVENT, arrived=0, message="m1") is None
    # One in-range event of m1 arrived since: the witness is cancelled, the next one counts.
    assert _held(clock, 107.0, METRIC, 0, METRIC_EVENT, arrived=2, message="m1") is None
    assert (clock.witness_score, list(clock.witnesses)) == (1, [107.0])


def test_the_last_witness_message_survives_a_restart() -> None:
    clock = EventClock(Admission(witnesses=2))
    _held(clock, 106.0, METRIC, 0, METRIC_EVENT, arrived=0, message="telemetry/0@41")
    again = _through_json(clock)
    assert again.witness_message == "telemetry/0@41"
    # The rest of the same message, after the restart, is no second witness.
    assert _held(again, 107.0, METRIC, 0, METRIC_EVENT, arrived=1, message="telemetry/0@41") is None
    assert (
        _held(again, 107.0, METRIC, 0, METRIC_EVENT, arrived=2, message="telemetry/0@42") == 106.0
    )


def test_a_witness_stamped_at_the_new_tick_start_stays_a_witness() -> None:
    clock = _waiting()
    clock.moved(107.0)
    assert (list(clock.witnesses), clock.witness_score) == ([107.0], 1)
