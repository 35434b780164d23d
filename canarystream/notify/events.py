"""What in a decision is worth telling a person: the notification events, most urgent first.

* ``page`` -- the decision asks for a person now (``page: true``: a frozen rollout, a
  rollback that does not recover);
* ``rollback_not_recovering`` -- after a rollback, the service did not return to its levels;
* ``rollback`` -- the canary's traffic went back to the baseline;
* ``promote`` -- the canary took all traffic;
* ``held`` -- the rollout stopped where it is and waits: for an approval, for a non-critical
  regression to be acknowledged, past a stage's deadline, during a shared degradation, or
  frozen. A hold that is only a person's own pause (``paused by ...``) is not one: that
  person knows.

>>> from canarystream.contracts.decision import Action, Phase, decision_id_for
>>> def d(action, summary="", page=False):
...     return Decision(decision_id=decision_id_for("d1", 3, action.value), deployment="d1",
...         service="shop", seq=3, action=action, ts=0.0, stage=1, traffic_percent=0.0,
...         phase=Phase.ROLLED_BACK, baseline_version="v1", canary_version="v2",
...         policy="default", summary=summary, page=page)
>>> events_of(d(Action.ROLLBACK_NOT_RECOVERING, page=True))
[<EventKind.PAGE: 'page'>, <EventKind.ROLLBACK_NOT_RECOVERING: 'rollback_not_recovering'>]
>>> events_of(d(Action.HOLD, "paused by alice")), events_of(d(Action.ADVANCE))
([], [])
"""

from __future__ import annotations

import re
from enum import StrEnum

from canarystream.contracts.decision import Action, Decision

__all__ = ["EventKind", "events_of"]


class EventKind(StrEnum):
    """A reason to notify, as routes name it."""

    PAGE = "page"
    ROLLBACK_NOT_RECOVERING = "rollback_not_recovering"
    ROLLBACK = "rollback"
    PROMOTE = "promote"
    HELD = "held"


_BY_ACTION = {
    Action.ROLLBACK_NOT_RECOVERING: EventKind.ROLLBACK_NOT_RECOVERING,
    Action.ROLLBACK: EventKind.ROLLBACK,
    Action.PROMOTE: EventKind.PROMOTE,
    Action.HOLD: EventKind.HELD,
    Action.FREEZE: EventKind.HELD,
}
# The engine joins a hold's causes with "; "; a person's pause alone reads "paused by NAME".
_PAUSE_ONLY = re.compile(r"^paused by [^;]*$")


def events_of(decision: Decision) -> list[EventKind]:
    """The decision's notification events, most urgent first (empty: nothing to tell)."""
    events = [EventKind.PAGE] if decision.page else []
    event = _BY_ACTION.get(decision.action)
    if decision.action is Action.HOLD and _PAUSE_ONLY.match(decision.summary):
        event = None
    if event is not None:
        events.append(event)
    return events
