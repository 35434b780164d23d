"""Idempotency and ordering of decisions per deployment: apply each once, never an old one.

Decisions of one deployment carry ``seq`` 0, 1, 2... A :class:`Fence` remembers, per
deployment, the highest ``seq`` applied and the ids of the last few decisions applied. A
redelivered decision is a DUPLICATE; one older than what was applied is STALE (applying it
would undo a newer decision, e.g. re-open traffic after a rollback). A gap is fine: a newer
decision supersedes any it skipped.

Memory is bounded: once a deployment's rollout has ended (a terminal decision was applied) it
is kept only among the ``max_finished`` most recently ended ones.

>>> fence = Fence()
>>> fence.admit("a", "d1", 0)
<Admission.NEW: 'new'>
>>> fence.record("a", "d1", 0)
>>> fence.admit("a", "d1", 0), fence.admit("z", "d1", 0), fence.admit("b", "d1", 1)
(<Admission.DUPLICATE: 'duplicate'>, <Admission.STALE: 'stale'>, <Admission.NEW: 'new'>)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from canarystream.actuators.config import Scope
    from canarystream.contracts.decision import Decision
    from canarystream.contracts.signing import Verifier

__all__ = ["Admission", "Fence", "FenceStore", "refusal"]


class Admission(StrEnum):
    """Whether a decision may be applied."""

    NEW = "new"  # newer than anything applied for its deployment
    DUPLICATE = "duplicate"  # this very decision was applied already
    STALE = "stale"  # a decision with this or a later seq was applied already
    # Its hooks were started (the intent is recorded) and how they ended is not: they may
    # have run, so they are not run again; a person must look.
    UNKNOWN_OUTCOME = "unknown_outcome"


class FenceStore(Protocol):
    """What the actuators need of a fence: all they call, so that another store (one that
    survives a restart) can stand in for :class:`Fence`."""

    def admit(self, decision_id: str, deployment: str, seq: int) -> Admission:
        """Whether the decision is NEW, a DUPLICATE or STALE; changes nothing."""
        ...

    def record(self, decision_id: str, deployment: str, seq: int, *, final: bool = False) -> None:
        """Remember that the decision was carried out; ``final`` when it ended the rollout."""
        ...

    def intend(self, decision_id: str, deployment: str, seq: int) -> None:
        """Remember that carrying the decision out has begun (its outcome is not known yet)."""
        ...

    def highest_seq(self, deployment: str) -> int | None:
        """The highest ``seq`` remembered for ``deployment``, or None."""
        ...


@dataclass(slots=True)
class _Applied:
    seq: int
    recent_ids: list[str] = field(default_factory=list)  # oldest first
    started: list[str] = field(default_factory=list)  # begun, outcome not recorded


class Fence:
    """In-memory record of the decisions applied, per deployment; pickles.

    Parameters
    ----------
    max_finished:
        Deployments whose rollout ended that are still remembered; the oldest is forgotten
        first. A decision for a forgotten deployment is NEW again, so keep this well above
        the number of rollouts that can end while their decisions are still in flight.
    recent_ids:
        Decision ids remembered per deployment, to tell a redelivery (DUPLICATE) from an
        older decision (STALE).
    """

    def __init__(self, max_finished: int = 10_000, recent_ids: int = 8) -> None:
        if max_finished < 1:
            raise ValueError(f"max_finished must be at least 1, not {max_finished}")
        if recent_ids < 1:
            raise ValueError(f"recent_ids must be at least 1, not {recent_ids}")
        self.max_finished = max_finished
        self.recent_ids = recent_ids
        self._applied: dict[str, _Applied] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._applied)

    def __contains__(self, deployment: object) -> bool:
        return deployment in self._applied

    def highest_seq(self, deployment: str) -> int | None:
        """The highest ``seq`` applied for ``deployment``, or None if none is remembered."""
        applied = self._applied.get(deployment)
        return None if applied is None else applied.seq

    def admit(self, decision_id: str, deployment: str, seq: int) -> Admission:
        """Whether the decision is NEW, a DUPLICATE or STALE; changes nothing."""
        applied = self._applied.get(deployment)
        if applied is None:
            return Admission.NEW
        if decision_id in applied.started:
            return Admission.UNKNOWN_OUTCOME
        if decision_id in applied.recent_ids:
            return Admission.DUPLICATE
        if seq <= applied.seq:
            return Admission.STALE
        return Admission.NEW

    def record(self, decision_id: str, deployment: str, seq: int, *, final: bool = False) -> None:
        """Remember that the decision was applied; ``final`` when it ended the rollout."""
        applied = self._applied.get(deployment)
        if applied is None:
            applied = self._applied[deployment] = _Applied(seq)
        applied.seq = max(applied.seq, seq)
        if decision_id in applied.started:
            applied.started.remove(decision_id)
        if decision_id not in applied.recent_ids:
            applied.recent_ids.append(decision_id)
            del applied.recent_ids[: -self.recent_ids]
        if final:
            self._finished[deployment] = None
            self._finished.move_to_end(deployment)
            while len(self._finished) > self.max_finished:
                forgotten, _ = self._finished.popitem(last=False)
                self._applied.pop(forgotten, None)

    def intend(self, decision_id: str, deployment: str, seq: int) -> None:
        """Remember that carrying the decision out has begun: until :meth:`record` it is
        UNKNOWN_OUTCOME, and older decisions are STALE as if it had been applied."""
        self.record(decision_id, deployment, seq)
        started = self._applied[deployment].started
        if decision_id not in started:
            started.append(decision_id)
            del started[: -self.recent_ids]


def refusal(  # noqa: PLR0913 -- the decision, its signed bytes and signature, and their judges
    decision: Decision,
    signed: bytes,
    signature: str | bytes | None,
    verifier: Verifier | None,
    fence: FenceStore,
    *,
    scope: Scope | None = None,
    now: float = 0.0,
    done: str = "applied",
) -> tuple[str, str] | None:
    """Why an actuator must refuse ``decision`` — ``(detail, reason)`` — or None to go on.

    Checks the signature over ``signed`` (when a verifier is given), then the ``scope`` (the
    decision's service, and its age at ``now``), then admits the decision through ``fence``
    (duplicates and stale ``seq``); ``done`` words what the fence remembers.
    """
    if verifier is not None:
        reason = verifier.check(signed, signature)
        if reason is not None:
            why = "it is not signed" if reason == "unsigned" else "its signature is not valid"
            return f"refused: {why}", reason
    if scope is not None:
        out = scope.refusal(decision, now)
        if out is not None:
            return out
    admission = fence.admit(decision.decision_id, decision.deployment, decision.seq)
    if admission is Admission.NEW:
        return None
    if admission is Admission.UNKNOWN_OUTCOME:
        return (
            f"unknown outcome, needs a person: carrying out decision {decision.decision_id} "
            "began before a restart and how it ended was never recorded; not run again",
            admission.value,
        )
    if admission is Admission.DUPLICATE:
        why = f"decision {decision.decision_id} was {done} already"
    else:
        why = (
            f"seq {decision.seq} is not newer than seq "
            f"{fence.highest_seq(decision.deployment)} already {done}"
        )
    return f"refused: {why}", admission.value
