"""A stage that passed and waits for approval stays held while its evidence wavers.

The wait is a hold of its own: it ends with an approval, not when the evidence stops showing
no harm. A new endpoint appearing during the wait (a fresh unit of a breakdown check, without
evidence yet) must neither announce the hold cleared nor let the stage go unapproved.
"""

from __future__ import annotations

from canarystream.contracts.decision import Action, Phase
from canarystream.engine import Engine
from tests.support.streams import DEPLOYMENT, Stream, fast_policy, merge, restarted, run, seconds

GATED_BY_ENDPOINT = fast_policy(
    name="gated-by-endpoint",
    stages=[
        {"traffic_percent": 10, "min_duration": 60, "min_samples": 50, "approval": True},
        {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
    ],
    checks=[{"kind": "error_rate", "breakdown": "endpoint", "advance_abs_margin": 0.01}],
)
AWAITING = "stage 0 passed; awaiting approval"


def _events(stream: Stream, until: float) -> list[dict[str, object]]:
    """/cart alone until the stage passes at 60 s; /pay appears from then on."""
    return [
        stream.started(policy=GATED_BY_ENDPOINT),
        *stream.requests(0, 60, endpoints=("/cart",)),
        *stream.requests(60, until, endpoints=("/cart", "/pay")),
    ]


def test_a_new_endpoint_during_the_wait_does_not_clear_the_hold() -> None:
    engine = Engine()
    decisions = run(_events(Stream(0), 200), engine)

    # /pay is inconclusive from 65 s and shows no harm again later: nothing is announced.
    assert [(d.action, seconds(d), d.summary) for d in decisions[1:]] == [
        (Action.HOLD, 60, AWAITING)
    ]
    rollout = engine.rollouts[DEPLOYMENT]
    assert (rollout.phase, rollout.awaiting_approval, rollout.hold_summary) == (
        Phase.HELD,
        True,
        AWAITING,
    )
    (again,) = restarted(engine).rollouts_of(rollout.service)
    assert (again.phase, again.awaiting_approval) == (Phase.HELD, True)


def test_the_approval_ends_the_wait_even_with_the_new_endpoint_still_inconclusive() -> None:
    stream = Stream(0)
    events = merge(_events(stream, 200), [stream.control("approved", 70.5)])
    decisions = run(events)[1:]

    assert [(d.action, seconds(d), d.stage) for d in decisions[:2]] == [
        (Action.HOLD, 60, 0),
        (Action.ADVANCE, 70.5, 1),
    ]
    assert decisions[1].summary == ("stage 0 approved by alice; stage 1 at 50% traffic")
