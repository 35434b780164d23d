"""The one ``actuate`` path every handler shares: refuse, carry out, fence, meter, report.

For each decision, one at a time:

1. **Refusal** -- :func:`~canarystream.actuators.fencing.refusal`: the signature over the exact
   message bytes (the decision's canonical bytes when none are given), then the
   :class:`~canarystream.actuators.config.Scope`: a decision for a service this actuator does
   not act for (``out_of_scope``) or older than its ``max_age_seconds`` by event time
   (``stale``) is refused; then the fence: a
   redelivered decision (``duplicate``) or one not newer than a decision already carried out
   for its deployment (``stale``) is reported ``rejected`` and goes no further.
2. **Carry out** -- what differs between handlers: the traffic
   :class:`~canarystream.actuators.executor.Actuator` sets and verifies a share, the
   :class:`~canarystream.actuators.hooks.HookActuator` runs a rollback's hooks.
3. **Fence** -- the decision is remembered when :meth:`BaseHandler._settles` says so (a share
   once applied; hooks once attempted, whatever their outcome).
4. **Intent** -- a handler whose work must never be done twice (hooks) records its intent with
   :meth:`BaseHandler._intend` before doing it: a ``started`` report handed to ``recorder``
   (the service publishes it and waits for the broker's ack) and a mark in the fence. A
   decision whose intent is known and whose outcome is not is never carried out again: it is
   reported ``failed``, "unknown outcome, needs a person".
5. **Restart** -- :meth:`BaseHandler.remember` takes back a report this handler's instance
   published before (read from the actuations topic at start and on each rebalance), so that
   the fence survives restarts.
6. **Meter and report** -- every report is counted in
   :class:`~canarystream.actuators.metrics.ActuationMetrics` with its duration and, for a
   refusal, its reason; every report is built by :meth:`BaseHandler._report`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import ClassVar

from canarystream.actuators.config import Scope
from canarystream.actuators.fencing import Admission, Fence, FenceStore, refusal
from canarystream.actuators.metrics import ActuationMetrics
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.decision import Action, Decision
from canarystream.contracts.signing import Verifier, canonical_bytes

__all__ = ["BaseHandler", "Recorder"]

#: Publishes a report durably (returns once the broker acknowledged it).
Recorder = Callable[[ActuationReport], Awaitable[object]]

# Actions after which a rollout takes no decision that changes anything (for the fence's bound).
_ENDING = frozenset({Action.ROLLBACK, Action.PROMOTE})


class BaseHandler(ABC):
    """Refusal, fencing, metering and reports around what a subclass carries out.

    Parameters
    ----------
    verifier:
        Trusted keys; None turns signature checks off (local drills only).
    scope:
        The services this handler acts for and the oldest decision it acts on; required:
        there is no default "every service".
    fence:
        Decisions already carried out; a new empty :class:`~canarystream.actuators.fencing.Fence`
        by default. Pass a restored one to keep idempotency across restarts.
    dry_run:
        Report what would be done and change nothing (the fence still refuses).
    metrics:
        Where to count reports; none by default (the service gives it one).
    clock, monotonic:
        Wall clock for report times, monotonic clock for durations; injectable for tests.
    """

    #: What the fence remembers of a decision, as a refusal words it ("was applied already").
    fenced_as: ClassVar[str] = "applied"

    def __init__(  # noqa: PLR0913 -- keyword-only collaborators, each replaceable in tests
        self,
        *,
        verifier: Verifier | None,
        scope: Scope,
        fence: FenceStore | None = None,
        dry_run: bool = False,
        metrics: ActuationMetrics | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.verifier = verifier
        self.scope = scope
        self.fence: FenceStore = Fence() if fence is None else fence
        self.dry_run = dry_run
        self.metrics = metrics
        #: Where an intent is published before work that must not be done twice; the service
        #: sets it. None: intents live in the fence only (a restart forgets them).
        self.recorder: Recorder | None = None
        self._clock = clock
        self._monotonic = monotonic
        # One decision at a time: the fence check and the record after carrying it out must
        # not interleave with another copy of the same decision.
        self._lock = asyncio.Lock()

    @property
    @abstractmethod
    def kind(self) -> str:
        """The ``backend`` of the reports and the metric label."""

    @property
    @abstractmethod
    def longest_seconds(self) -> float:
        """An upper bound on the time one decision can take."""

    @abstractmethod
    def describe(self) -> str:
        """What this handler controls, for logs."""

    @abstractmethod
    async def close(self) -> None:
        """Release the backend."""

    def hurry(self) -> None:  # noqa: B027  (a hook with nothing to do by default)
        """Finish what is in progress as fast as is safe (called on shutdown)."""

    async def actuate(
        self, decision: Decision, signature: str | bytes | None, payload: bytes | None = None
    ) -> ActuationReport:
        """Carry out ``decision`` and report the outcome.

        ``signature`` signs ``payload``, the message bytes ``decision`` was decoded from (the
        caller decodes them); without a payload it signs the decision's canonical bytes.
        """
        async with self._lock:
            started = self._monotonic()
            signed = canonical_bytes(decision) if payload is None else payload
            refused = refusal(
                decision,
                signed,
                signature,
                self.verifier,
                self.fence,
                scope=self.scope,
                now=self._clock(),
                done=self.fenced_as,
            )
            reason: str | None = None
            if refused is not None and refused[1] == Admission.UNKNOWN_OUTCOME.value:
                # Begun before a restart, outcome unknown: never again; settled as failed.
                report = self._report(decision, ActuationStatus.FAILED, refused[0])
                self.fence.record(
                    decision.decision_id,
                    decision.deployment,
                    decision.seq,
                    final=decision.phase.is_terminal,
                )
            elif refused is not None:
                detail, reason = refused
                report = self._report(decision, ActuationStatus.REJECTED, detail)
            else:
                report = await self._carry_out(decision, signature, signed)
                if self._settles(report):
                    self.fence.record(
                        decision.decision_id,
                        decision.deployment,
                        decision.seq,
                        final=decision.phase.is_terminal,
                    )
            if self.metrics is not None:
                elapsed = self._monotonic() - started
                self.metrics.observe(self.kind, report.status.value, elapsed, reason)
            return report

    def remember(self, report: ActuationReport) -> None:
        """Take into the fence a report this handler's instance published before (read back
        after a restart or a rebalance): a ``started`` intent, or an outcome the fence keeps."""
        if report.status is ActuationStatus.STARTED:
            self.fence.intend(report.decision_id, report.deployment, report.seq)
        elif report.status is not ActuationStatus.REJECTED and self._settles(report):
            final = report.action in _ENDING
            self.fence.record(report.decision_id, report.deployment, report.seq, final=final)

    async def _intend(self, decision: Decision, detail: str) -> None:
        """Record, before doing it, that work on ``decision`` that must not be done twice is
        about to begin: publish a ``started`` report through :attr:`recorder` (raises if that
        fails: then nothing was done) and mark the fence."""
        if self.recorder is not None:
            await self.recorder(self._report(decision, ActuationStatus.STARTED, detail))
        self.fence.intend(decision.decision_id, decision.deployment, decision.seq)

    @abstractmethod
    async def _carry_out(
        self, decision: Decision, signature: str | bytes | None, signed: bytes
    ) -> ActuationReport:
        """Carry out an admitted decision (``signed`` is what ``signature`` signs) and report;
        a backend's failure is reported, never raised."""

    def _settles(self, report: ActuationReport) -> bool:
        """Whether the fence remembers a decision after ``report``: once it was applied."""
        return report.status is ActuationStatus.APPLIED

    def _report(  # noqa: PLR0913 -- one argument per field of the report
        self,
        decision: Decision,
        status: ActuationStatus,
        detail: str,
        *,
        observed: float | None = None,
        attempts: int = 1,
        dry_run: bool = False,
    ) -> ActuationReport:
        """The report on ``decision``; ``observed`` is the share read back (clamped to 0..100)."""
        if observed is not None:
            observed = min(max(observed, 0.0), 100.0)
        return ActuationReport(
            actuation_id=str(uuid.uuid4()),
            decision_id=decision.decision_id,
            deployment=decision.deployment,
            service=decision.service,
            seq=decision.seq,
            action=decision.action,
            backend=self.kind,
            status=status,
            ts=self._clock(),
            traffic_percent_requested=decision.traffic_percent,
            traffic_percent_observed=observed,
            attempts=attempts,
            dry_run=dry_run or self.dry_run,
            detail=detail,
        )
