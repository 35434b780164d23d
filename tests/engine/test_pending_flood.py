"""A flood of events stamped ahead never freezes a rollout's clock.

The attack: one producer sends messages of events stamped ahead of the clock (inside
``admission.max_skew``) until ``admission.max_pending`` events wait. Every later event
stamped past the open tick was then refused before it could count as a witness that time
moved on, so the clock never moved again: a healthy canary was never promoted and a
regressed one never rolled back, for as long as the flood's events were ahead.

Now an event refused because too many wait still counts as a witness: the clock moves with
the producers' own time, the flood's events are applied when their ticks come, and only
events that find no room are lost (each refused, so dead-lettered with its reason).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from canarystream.contracts.decision import Action, Decision
from canarystream.engine import Engine
from canarystream.errors import ContractError
from tests.support.streams import (
    BASELINE,
    CANARY,
    HEALTHY,
    T0,
    Cohort,
    Stream,
    fast_policy,
    refuse,
    request_at,
)

MAX_PENDING = 2_000
FLOOD = 500  # events per flooding message
END = (Action.PROMOTE, Action.ROLLBACK)


def rollout(canary: Cohort, seed: int) -> list[dict[str, Any]]:
    stream = Stream(seed, canary=canary)
    policy = fast_policy(admission={"max_pending": MAX_PENDING})
    return [stream.started(policy=policy), *stream.requests(0, 200, rate=40)]


def flood(at: float, skew: float, canary: Cohort) -> list[dict[str, Any]]:
    """One message stamped ``skew`` past ``at``, the cohorts in turn, as the stream's own:
    what it holds changes no verdict, only where and when it is stamped does."""
    every = [round(1 / cohort.error_rate) for cohort in (HEALTHY, canary)]  # an error each
    return [
        request_at(
            at + skew + i * 0.001,
            CANARY if i % 2 else BASELINE,
            503 if i // 2 % every[i % 2] == 0 else 200,
            instance="flooder",
        )
        for i in range(FLOOD)
    ]


def outcome(decisions: list[Decision]) -> list[tuple[Action, int | None]]:
    return [(d.action, d.stage) for d in decisions]


@pytest.mark.parametrize("skew", [10.0, 100.0, 290.0])
@pytest.mark.parametrize("every", [20, 200, None], ids=["dense", "sparse", "once"])
@pytest.mark.parametrize(
    "canary", [Cohort(), Cohort(error_rate=0.03)], ids=["healthy", "regressed"]
)
def test_a_flood_of_events_ahead_never_freezes_the_clock(
    canary: Cohort, every: int | None, skew: float
) -> None:
    events = rollout(canary, seed=5)
    reference = Engine().process_all(events)
    assert reference[-1].action in (Action.PROMOTE, Action.ROLLBACK)

    engine = Engine()
    refused: Counter[str] = Counter()

    def count(index: int, error: ContractError) -> None:
        refused[error.reason] += 1

    decisions = engine.process_batch(events[:400], count)
    [state] = engine.rollouts.values()
    floods = 0
    for index in range(400, len(events)):
        decisions += engine.process_batch([events[index]], count)
        due = index % every == 0 if every is not None else floods < 5
        if due:  # the clock as the flooder sees it: where the stream is now
            floods += 1
            decisions += engine.process_batch(
                flood(float(events[index]["ts"]), skew, canary), count, f"flood-{index}"
            )
    assert refused["ts_out_of_range"] > 0  # the flood filled the waiting room
    assert len(state.admission.pending) <= MAX_PENDING

    # The rollout ends as it would have, within a few ticks (the flood's own events, applied
    # at their ticks, are evidence too: they may settle it a little sooner or later).
    assert outcome(decisions) == outcome(reference)
    assert decisions[-1].ts <= reference[-1].ts + 6 * state.tick
    # Its clock kept up with the stream, not with the flood.
    last = max(float(e["ts"]) for e in events[1:])
    assert last - 2 * state.tick <= state.clock or decisions[-1].action in END
    assert decisions[-1].ts - T0 <= 200


def test_an_event_that_completes_a_move_with_a_decision_is_kept_not_refused() -> None:
    """No room, and the event that completes the run lies beyond the tick the clock moves
    to: refusing it would lose the decision the move took, so it waits, one over the limit."""
    stream = Stream(5)
    policy = fast_policy(admission={"max_pending": 10, "witnesses": 3})
    events = [stream.started(policy=policy), *stream.requests(0, 59.9, rate=40)]
    engine = Engine()
    engine.process_batch(events, refuse)
    [state] = engine.rollouts.values()
    assert (state.clock - T0, state.stage) == (55.0, 0)

    def ahead(at: float) -> dict[str, Any]:
        return {**events[-1], "ts": T0 + at}

    engine.process_batch([ahead(255.0 + i * 0.01) for i in range(10)], refuse, "flood")
    assert state.admission.full()
    engine.process_batch([ahead(59.95), ahead(59.96)], refuse, "stragglers")  # in range
    with pytest.raises(ContractError):
        engine.process(ahead(60.5), message="b")
    with pytest.raises(ContractError):
        engine.process(ahead(66.0), message="c")
    arrived = state.arrived
    decided = engine.process(ahead(66.5), message="d")  # the third witness: the clock moves

    assert [(d.action, d.ts - T0, d.stage) for d in decided] == [(Action.ADVANCE, 60.0, 1)]
    assert state.clock - T0 == 60.0
    assert len(state.admission.pending) == 11
    assert state.arrived == arrived + 1  # it arrived (b and c, refused, did not)
    assert min(item[0] for item in state.admission.pending) == T0 + 66.5
