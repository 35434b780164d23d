"""The actuator: carry out one signed decision on one backend, safely, and report on it.

For each decision, in order:

1. **Signature** -- over the exact message bytes the decision was decoded from (its
   canonical bytes when none are given); an unsigned or forged decision is rejected
   (``unsigned``, ``bad_signature``) and never reaches the backend.
2. **Fence** -- a redelivered decision (``duplicate``) or one older than a decision already
   applied for the deployment (``stale``) is rejected: apply is idempotent and never goes back.
3. **Apply and verify** -- set the canary share, read it back, and call it applied only when
   the read-back is within ``tolerance`` percentage points of the request. A failed try is
   retried with exponential backoff and jitter until ``max_attempts`` or the deadline; then
   the report says ``failed``. A hold changes nothing and reports the share it observed.
4. **Dry run** -- reports what would be done, reads the current share, changes nothing.

A rollback is immediate by default. With ``rollback_steps`` N > 1 it steps the canary share
down from the share read back to 0 in N steps ``rollback_step_seconds`` apart (wall clock),
then verifies 0 like any change; a step that fails, or :meth:`Actuator.hurry` (shutdown),
goes straight to 0.

Every report is counted in :class:`~canarystream.actuators.metrics.ActuationMetrics`.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from canarystream.actuators.base import FlagProvider, Router, TrafficTarget
from canarystream.actuators.fencing import Fence, refusal
from canarystream.actuators.metrics import ActuationMetrics
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.decision import Action, Decision
from canarystream.contracts.signing import Verifier, canonical_bytes

__all__ = ["Actuator", "RetryPolicy"]

_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a failed actuation.

    The pause after the n-th failed try is ``min(max_delay, initial_delay * multiplier**(n-1))``
    shortened by a random fraction up to ``jitter``, so that actuators retrying the same
    backend after an outage do not retry in step. No try starts after ``deadline`` seconds.

    >>> RetryPolicy(initial_delay=1, jitter=0).delay(3, random.Random(0))
    4.0
    """

    max_attempts: int = 5
    initial_delay: float = 0.2
    max_delay: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5
    deadline: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("delays must be non-negative and the multiplier at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within 0..1, not {self.jitter}")
        if self.deadline <= 0:
            raise ValueError(f"deadline must be positive, not {self.deadline}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after the ``attempt``-th failed try (from 1)."""
        ceiling = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        return ceiling * (1.0 - self.jitter * rng.random())


_Step = Callable[[], Awaitable[tuple[float | None, str]]]


class Actuator:
    """Carries out decisions on one router or flag provider and reports on each.

    Parameters
    ----------
    backend:
        A :class:`~canarystream.actuators.base.Router` or
        :class:`~canarystream.actuators.base.FlagProvider`.
    verifier:
        Trusted keys; None turns signature checks off (local drills only).
    fence:
        Decisions already applied; a new empty one by default. Pass a restored one to keep
        idempotency across restarts.
    dry_run:
        Report what would be done and change nothing.
    retry:
        Attempts, backoff and deadline for each decision.
    metrics:
        Where to count reports; none by default.
    rng:
        Source of the backoff jitter (seed it in tests).
    tolerance:
        Largest difference, in percentage points, between the requested and the read-back
        canary share for the change to count as applied.
    rollback_steps, rollback_step_seconds:
        A rollback steps the canary share down to 0 in this many steps, this many seconds
        apart; 1 (the default) rolls back at once.
    clock, monotonic, sleep:
        Wall clock for report times, monotonic clock for the deadline, and the pause
        between tries; injectable for tests.
    """

    def __init__(
        self,
        backend: Router | FlagProvider,
        *,
        verifier: Verifier | None,
        fence: Fence | None = None,
        dry_run: bool = False,
        retry: RetryPolicy | None = None,
        metrics: ActuationMetrics | None = None,
        rng: random.Random | None = None,
        tolerance: float = 0.5,
        rollback_steps: int = 1,
        rollback_step_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if isinstance(backend, Router):
            self._set: Callable[[TrafficTarget], Awaitable[None]] = backend.set_weight
            self._get: Callable[[str], Awaitable[float | None]] = backend.get_weight
        elif isinstance(backend, FlagProvider):
            self._set, self._get = backend.set_rollout, backend.get_rollout
        else:
            raise TypeError(f"{type(backend).__name__} is neither a Router nor a FlagProvider")
        self.backend = backend
        self.verifier = verifier
        self.fence = Fence() if fence is None else fence
        self.dry_run = dry_run
        self.retry = RetryPolicy() if retry is None else retry
        self.metrics = metrics
        self.tolerance = tolerance
        if rollback_steps < 1 or rollback_step_seconds < 0:
            raise ValueError("rollback_steps must be at least 1 and its pause non-negative")
        self.rollback_steps = rollback_steps
        self.rollback_step_seconds = rollback_step_seconds
        self._hurried = False
        self._pausing: asyncio.Future[object] | None = None
        self._rng = random.Random() if rng is None else rng
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        # One decision at a time: the fence check and the record after applying must not
        # interleave with another copy of the same decision.
        self._lock = asyncio.Lock()

    @property
    def kind(self) -> str:
        """The backend's kind, as reported and used as a metric label."""
        return self.backend.kind

    @property
    def longest_seconds(self) -> float:
        """An upper bound on the time one decision can take (a gradual rollback included)."""
        steps = self.rollback_steps
        return self.retry.deadline * (steps + 1) + self.rollback_step_seconds * (steps - 1)

    async def close(self) -> None:
        """Close the backend."""
        await self.backend.close()

    def hurry(self) -> None:
        """Finish a gradual rollback in progress at once, and roll back at once from now on
        (called on shutdown: a canary is never left at an intermediate share)."""
        self._hurried = True
        if self._pausing is not None:
            self._pausing.cancel()

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
            report, reason = await self._actuate(decision, signature, signed)
            if self.metrics is not None:
                elapsed = self._monotonic() - started
                self.metrics.observe(self.kind, report.status.value, elapsed, reason)
            return report

    async def _actuate(
        self, decision: Decision, signature: str | bytes | None, signed: bytes
    ) -> tuple[ActuationReport, str | None]:
        refused = refusal(decision, signed, signature, self.verifier, self.fence)
        if refused is not None:
            detail, reason = refused
            return self._report(decision, ActuationStatus.REJECTED, detail), reason

        target = TrafficTarget.from_decision(decision)
        if self.dry_run:
            report = await self._dry_run(decision, target)
        elif not decision.action.changes_traffic:  # hold, freeze, rollback verification
            report = await self._run(decision, self._observe(decision.deployment), hold=True)
        elif decision.action is Action.ROLLBACK and self.rollback_steps > 1:
            report = await self._step_down(decision, target)
        else:
            report = await self._run(decision, self._apply(target), hold=False)
        if report.status is ActuationStatus.APPLIED:
            self.fence.record(
                decision.decision_id,
                decision.deployment,
                decision.seq,
                final=decision.phase.is_terminal,
            )
        return report, None

    def _apply(self, target: TrafficTarget) -> _Step:
        async def step() -> tuple[float | None, str]:
            await self._set(target)
            observed = await self._get(target.deployment)
            if observed is None:
                return None, "the backend cannot report the canary share"
            if abs(observed - target.canary_percent) > self.tolerance + _EPSILON:
                return observed, (
                    f"read back {observed:g}% for a requested {target.canary_percent:g}%"
                )
            return observed, ""

        return step

    def _observe(self, deployment: str) -> _Step:
        async def step() -> tuple[float | None, str]:
            return await self._get(deployment), ""

        return step

    async def _run(self, decision: Decision, step: _Step, *, hold: bool) -> ActuationReport:
        policy = self.retry
        started = self._monotonic()
        observed: float | None = None
        attempt = 0
        while True:
            attempt += 1
            remaining = policy.deadline - (self._monotonic() - started)
            try:
                observed, error = await asyncio.wait_for(step(), timeout=max(remaining, 0.0))
            except Exception as exc:  # a backend's failure is reported, never raised
                error = _describe(exc)
            if not error:
                return self._report(
                    decision,
                    ActuationStatus.APPLIED,
                    _applied_detail(decision, observed, hold),
                    observed=observed,
                    attempts=attempt,
                )
            if attempt >= policy.max_attempts:
                why = f"gave up after {attempt} attempts: {error}"
                break
            pause = policy.delay(attempt, self._rng)
            if self._monotonic() - started + pause >= policy.deadline:
                why = f"deadline of {policy.deadline:g} s reached after {attempt} attempts: {error}"
                break
            await self._sleep(pause)
        return self._report(
            decision, ActuationStatus.FAILED, why, observed=observed, attempts=attempt
        )

    async def _step_down(self, decision: Decision, target: TrafficTarget) -> ActuationReport:
        """Lower the canary share in equal steps, then set and verify 0 as usual."""
        deadline = self.retry.deadline
        try:
            current = await asyncio.wait_for(self._get(target.deployment), timeout=deadline)
        except Exception:  # unreadable: roll back at once rather than guess
            current = None
        path: list[str] = []
        note = ""
        if current is not None and current > self.tolerance:
            path.append(f"{current:g}%")
            steps = self.rollback_steps
            for step in range(1, steps):
                if self._hurried:
                    note = " (hurried: remaining steps skipped)"
                    break
                share = round(current * (steps - step) / steps, 2)
                try:
                    _, error = await asyncio.wait_for(
                        self._apply(replace(target, canary_percent=share))(), timeout=deadline
                    )
                except Exception as exc:
                    error = _describe(exc)
                if error:
                    note = f" (step to {share:g}% failed, went straight to 0%: {error})"
                    break
                path.append(f"{share:g}%")
                await self._pause(self.rollback_step_seconds)
        report = await self._run(decision, self._apply(target), hold=False)
        if not path or report.status is not ActuationStatus.APPLIED:
            return report
        stepped = " -> ".join([*path, "0%"])
        return report.model_copy(update={"detail": f"{report.detail}; stepped {stepped}{note}"})

    async def _pause(self, seconds: float) -> None:
        if self._hurried or seconds <= 0:
            return
        self._pausing = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait({self._pausing})  # returns early when hurry() cancels it
        finally:
            self._pausing.cancel()
            self._pausing = None

    async def _dry_run(self, decision: Decision, target: TrafficTarget) -> ActuationReport:
        try:
            observed = await asyncio.wait_for(
                self._get(target.deployment), timeout=self.retry.deadline
            )
            now = "unknown" if observed is None else f"{observed:g}%"
        except Exception as exc:  # a drill reports an unreachable backend, it does not fail
            observed, now = None, f"unreadable: {_describe(exc)}"
        if not decision.action.changes_traffic:
            detail = f"dry run: would leave canary traffic as it is (now {now})"
        elif decision.action is Action.ROLLBACK and self.rollback_steps > 1:
            detail = (
                f"dry run: would step canary traffic down to 0% in {self.rollback_steps} steps "
                f"{self.rollback_step_seconds:g} s apart (now {now})"
            )
        else:
            detail = f"dry run: would set canary traffic to {target.canary_percent:g}% (now {now})"
        return self._report(
            decision, ActuationStatus.APPLIED, detail, observed=observed, dry_run=True
        )

    def _report(
        self,
        decision: Decision,
        status: ActuationStatus,
        detail: str,
        *,
        observed: float | None = None,
        attempts: int = 1,
        dry_run: bool = False,
    ) -> ActuationReport:
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


def _applied_detail(decision: Decision, observed: float | None, hold: bool) -> str:
    seen = "unknown" if observed is None else f"{observed:g}%"
    if hold:
        return f"hold: canary traffic left as it is ({seen})"
    return f"{decision.action.value}: canary traffic set to {decision.traffic_percent:g}% ({seen})"


def _describe(exc: Exception) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
