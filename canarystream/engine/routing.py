"""A rollout's routing as observed (``traffic_shifted``), and the decision it awaits.

Until the first observation nothing here applies: the share a rollout decided is taken as
routed, as it always was. From then on the latest observed share is what was routed, and a
decision that changes the canary's share is *awaited* until a shift names it or routes its
share within :data:`SHARE_TOLERANCE`; one awaited for longer than the policy's
``actuation_deadline`` of event time counts as not applied (the rollout holds and pages).
"""

from __future__ import annotations

from canarystream.analysis.state import Reader, State, reader
from canarystream.readable import duration

__all__ = ["SHARE_TOLERANCE", "Routing"]

SHARE_TOLERANCE = 0.5
"""Percentage points by which an observed share may differ from a decision's and still count
as that decision applied (as an actuator's read-back tolerance does by default)."""
_SAME = 1e-9


class Routing:
    """The latest observed canary share of one rollout and the decision awaited, if any."""

    def __init__(self) -> None:
        self.share: float | None = None  # latest observed share, %; None: none observed yet
        self.at: float | None = None  # its event time
        self.decided: str | None = None  # the latest decision that set the canary's share
        self.awaited: str | None = None  # a decision whose share is not observed yet
        self.awaited_since: float | None = None  # since when the routing differs from it
        self.paged: str | None = None  # the awaited decision already paged about

    @property
    def observed(self) -> bool:
        """Whether any shift was observed (else the decided share is taken as routed)."""
        return self.share is not None

    def routes(self, percent: float) -> bool:
        """Whether the observed share is ``percent`` within :data:`SHARE_TOLERANCE`."""
        return self.share is not None and abs(self.share - percent) <= SHARE_TOLERANCE

    def observe(
        self, ts: float, share: float, decision_id: str | None, decided: float, awaiting: bool
    ) -> bool:
        """A shift to ``share`` % at ``ts``; whether the routed share changed (or was not known).

        ``decided`` is the share the rollout decided last; ``awaiting``: whether decisions are
        awaited at all (an actuation deadline is set). The awaited decision is settled when the
        shift names it or routes its share; a routing that differs from the share decided
        without one awaited (the first observation, or something else changed the routing)
        makes the latest decision awaited from ``ts``.
        """
        changed = self.share is None or abs(share - self.share) > _SAME
        self.share, self.at = share, ts
        if self.awaited is not None:
            if decision_id == self.awaited or self.routes(decided):
                self.settle()
        elif awaiting and not self.routes(decided):
            self.awaited, self.awaited_since = self.decided or "the latest decision", ts
        return changed

    def decide(self, decision_id: str, share: float, now: float, awaiting: bool) -> None:
        """The rollout decided ``share`` % at ``now``; ``awaiting``: whether to await it (an
        observed routing, an actuation deadline, and a rollout that takes more decisions)."""
        self.decided = decision_id
        if not awaiting or not self.observed or self.routes(share):
            self.settle()
            return
        if self.awaited is None:
            self.awaited_since = now
        self.awaited = decision_id

    def settle(self) -> None:
        """Nothing is awaited any more."""
        self.awaited = self.awaited_since = self.paged = None

    def overdue(self, now: float, deadline: float | None, decided: float) -> str | None:
        """Why the awaited decision counts as not applied at ``now``, or None."""
        since, share = self.awaited_since, self.share
        if self.awaited is None or since is None or share is None or deadline is None:
            return None
        if now - since < deadline:
            return None
        return (
            f"decision not applied: {self.awaited} set the canary's share to {decided:g}%, "
            f"routing observed at {share:g}% for {duration(now - since)} "
            f"(actuation_deadline {duration(deadline)})"
        )

    def page(self) -> bool:
        """Whether the overdue decision is still to be paged about (then it is paged)."""
        if self.paged == self.awaited:
            return False
        self.paged = self.awaited
        return True

    def to_state(self) -> State:
        """The routing as plain data."""
        return {
            "share": self.share,
            "at": self.at,
            "decided": self.decided,
            "awaited": self.awaited,
            "awaited_since": self.awaited_since,
            "paged": self.paged,
        }

    @classmethod
    def from_state(cls, state: State | Reader) -> Routing:
        """The routing :meth:`to_state` described."""
        r = reader(state, "Routing")
        routing = cls()
        routing.share, routing.at = r.real("share", none=True), r.real("at", none=True)
        routing.decided = r.text("decided", none=True)
        routing.awaited = r.text("awaited", none=True)
        routing.awaited_since = r.real("awaited_since", none=True)
        routing.paged = r.text("paged", none=True)
        return routing
