"""Event-time admission: when an event is plausible, and when a rollout's clock may move.

Each rollout has an event-time clock (the start of its open tick). Telemetry is stamped by
its producers, and a producer can be wrong — a host whose clock runs ahead, a bug that stamps
years ahead, a replayed batch from last week — so no single event may move the clock:

- An event stamped before the rollout's start minus ``grace`` is rejected.
- An event inside the open tick (or late, but not before the start) is applied at once.
- An event stamped in a later tick, up to ``max_skew`` ahead of the clock, waits as *pending*
  and is a *witness* that time has moved on. A one-sided CUSUM counts witnesses up and the
  events still landing in the open tick down (never below zero); when it reaches
  ``witnesses`` the clock moves to the earliest of the last ``witnesses`` witnesses, closing
  every tick on the way, and each pending event is applied to its own tick. On a time-ordered
  stream this moves the clock at exactly the events where it always moved; a producer whose
  events are a fraction ``p`` of a rollout's moves it early with probability of the order
  ``(p / (1 - p)) ** witnesses`` per event, and never by more than its own skew.
  At most ``max_pending`` events wait; one more is refused, yet counts as a witness all the
  same, so that a flood filling the room cannot freeze the clock.
- An event stamped more than ``max_skew`` ahead is rejected (``ts_out_of_range``), unless
  ``gap_witnesses`` such events arrive net of in-range ones: every producer is back after a
  real gap, and the clock moves over the gap (the events that revealed it stay rejected).

No single message (a Kafka message, a line of a replayed file) can move the clock, however
many events it holds. Within ``max_skew``, the events of one message count as witnesses up
to one short of a move, and the witness that completes a run must come from another
message than the one before: a producer that batches its events moves the clock at its
next message past a tick boundary, not ``witnesses`` messages later (which would leave
nearly all of a batched stream waiting). Beyond ``max_skew`` a message is one witness of a
gap, however many events it holds.

The counts are of arrivals, never of wall time, so replay decides exactly as live.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

from canarystream.analysis.state import Reader, State, reader
from canarystream.errors import ContractError, StateFormatError
from canarystream.policy.model import Admission
from canarystream.readable import duration, instant

__all__ = ["EventClock", "out_of_range"]

REQUEST, METRIC, PROBE = 0, 1, 2


def out_of_range(message: str) -> ContractError:
    """The error for an event whose time is not plausible for its rollout."""
    return ContractError(message, reason="ts_out_of_range")


class EventClock:
    """The admission bookkeeping of one rollout: pending events and the two CUSUMs.

    It decides *when* the clock moves and holds what waits for it; the rollout closes ticks
    and applies events. ``arrived`` is the rollout's count of admitted events so far.
    """

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.pending: list[tuple[float, int, int, int, Any]] = []  # heap: ts, order, kind, ...
        self.order = 0  # tie-break: pending events of one ts keep their arrival order
        self.witness_score = 0
        self.witness_mark = 0
        self.witnesses: deque[float] = deque(maxlen=admission.witnesses)
        self.witness_message: str | None = None  # message of the last witness
        self.far_score = 0
        self.far_mark = 0
        self.far: deque[float] = deque(maxlen=admission.gap_witnesses)
        self.heartbeat_mark: int | None = None
        self.rejected = 0
        self.far_message: str | None = None  # message of the last far event

    def full(self) -> bool:
        """Whether ``max_pending`` events wait: no more may be held."""
        return len(self.pending) >= self.admission.max_pending

    def hold(self, ts: float, kind: int, cohort: int, payload: Any) -> None:
        """Keep an event stamped in a later tick until the clock reaches it."""
        heapq.heappush(self.pending, (ts, self.order, kind, cohort, payload))
        self.order += 1

    def refuse(self, ts: float) -> ContractError:
        """Count an event that found no room (:meth:`full`); the error that refuses it."""
        self.rejected += 1
        return out_of_range(
            f"{len(self.pending)} events already wait for the rollout's clock "
            f"(admission.max_pending); ts {ts:.3f} not admitted"
        )

    def witness(
        self, ts: float, arrived: int, message: str | None, *, held: bool = True
    ) -> float | None:
        """Count an event stamped in a later tick as a witness; where the clock must move,
        if due.

        ``message`` names the message the event came in (None: one of its own); the events
        of one message never complete a run on their own. An event refused for want of room
        (``held`` False) is a witness all the same: it shows time moving on as well, and a
        flood that fills the room must not freeze the clock.
        """
        score = self.witness_score - (arrived - self.witness_mark)
        if score <= 0:
            score = 0
            self.witnesses.clear()
        # The events of one message count up to one short of a move, never the move itself:
        # the witness that completes a run comes from another message than the one before.
        if (
            message is None
            or message != self.witness_message
            or score < self.admission.witnesses - 1
        ):
            self.witnesses.append(ts)
            score += 1
        self.witness_message = message
        self.witness_score = score
        self.witness_mark = arrived + held  # a held event counts as arrived
        if score < self.admission.witnesses:
            return None
        return min(self.witnesses)

    def moved(self, next_tick: float) -> None:
        """The clock moved: the current run's witnesses still ahead stay witnesses.

        Only the run that moved the clock counts on, never older pending events: those of a
        producer running ahead would otherwise be a ready-made run.
        """
        ahead = [ts for ts in self.witnesses if ts >= next_tick]
        self.witnesses.clear()
        self.witnesses.extend(ahead)
        self.witness_score = len(ahead)

    def beyond(self, ts: float, clock: float, arrived: int, message: str | None) -> float | None:
        """An event too far ahead: rejected, unless enough of them show a real gap."""
        admission = self.admission
        score = self.far_score - (arrived - self.far_mark)
        if score <= 0:
            score = 0
            self.far.clear()
        if message is None or message != self.far_message:
            self.far.append(ts)
            score += 1
        self.far_message = message
        self.far_score = score
        self.far_mark = arrived
        if self.far_score >= admission.gap_witnesses:
            self.far_score = 0
            target = min(self.far)
            self.far.clear()
            return target
        self.rejected += 1
        raise out_of_range(
            f"ts {ts:.3f} ({instant(ts)}) is {duration(ts - clock)} ahead of the rollout's clock "
            f"({instant(clock)}); at most {duration(admission.max_skew)} (admission.max_skew)"
        )

    def due(self, limit: float) -> list[tuple[int, int, Any, float]]:
        """Pop the pending events stamped before ``limit``, oldest first."""
        out = []
        pending = self.pending
        while pending and pending[0][0] < limit:
            ts, _, kind, cohort, payload = heapq.heappop(pending)
            out.append((kind, cohort, payload, ts))
        return out

    def idle_since_last_heartbeat(self, arrived: int) -> bool:
        """Whether no event arrived since the previous heartbeat (and mark this one)."""
        idle = self.heartbeat_mark == arrived
        self.heartbeat_mark = arrived
        return idle

    def to_state(self) -> State:
        """The bookkeeping as plain data; ``admission`` is the policy's."""
        return {
            "pending": [
                [ts, order, kind, cohort, list(payload) if kind == REQUEST else payload]
                for ts, order, kind, cohort, payload in self.pending
            ],
            "order": self.order,
            "witness_score": self.witness_score,
            "witness_mark": self.witness_mark,
            "witnesses": list(self.witnesses),
            "witness_message": self.witness_message,
            "far_score": self.far_score,
            "far_mark": self.far_mark,
            "far": list(self.far),
            "heartbeat_mark": self.heartbeat_mark,
            "rejected": self.rejected,
            "far_message": self.far_message,
        }

    @classmethod
    def from_state(cls, state: State | Reader, admission: Admission) -> EventClock:
        """The bookkeeping :meth:`to_state` described, with the policy's ``admission``."""
        r = reader(state, "EventClock")
        clock = cls(admission)
        clock.pending = [
            _pending_from(item, f"{r.path}.pending.{index}")
            for index, item in enumerate(r.items("pending"))
        ]
        clock.order = r.integer("order")
        clock.witness_score = r.integer("witness_score")
        clock.witness_mark = r.integer("witness_mark")
        clock.far_score, clock.far_mark = r.integer("far_score"), r.integer("far_mark")
        for name, window in (("witnesses", clock.witnesses), ("far", clock.far)):
            values = r.reals(name)
            if len(values) > (window.maxlen or 0):
                raise r.fail(name, f"more than the {window.maxlen} the policy keeps")
            window.extend(values)
        clock.witness_message = r.text("witness_message", none=True)
        clock.heartbeat_mark = r.integer("heartbeat_mark", none=True)
        clock.rejected = r.integer("rejected")
        clock.far_message = r.text("far_message", none=True)
        return clock


def _pending_from(item: Any, path: str) -> tuple[float, int, int, int, Any]:
    """One pending event, ``[ts, order, kind, cohort, payload]``, checked."""
    if not (
        type(item) is list
        and len(item) == 5
        and type(item[0]) in (int, float)
        and type(item[1]) is int
        and type(item[2]) is int
        and item[2] in (REQUEST, METRIC, PROBE)
        and type(item[3]) is int
        and item[3] in (0, 1)
    ):
        raise StateFormatError(f"{path}: expected [ts, order, kind, cohort, event]")
    ts, order, kind, cohort, payload = item
    if kind == REQUEST:
        if not (
            type(payload) is list
            and len(payload) == 3
            and type(payload[0]) in (int, float)
            and type(payload[1]) is int
            and type(payload[2]) is dict
        ):
            raise StateFormatError(f"{path}.4: expected [latency, status, event]")
        return ts, order, kind, cohort, tuple(payload)
    if type(payload) is not dict:
        raise StateFormatError(f"{path}.4: expected an event")
    return ts, order, kind, cohort, payload
