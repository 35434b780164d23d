"""The traffic actuator: carry out one signed decision on one traffic backend, safely.

Signature, fence, metrics and the report are those of
:class:`~canarystream.actuators.handler.BaseHandler`, shared with the hook actuator. What the
traffic actuator adds, for any :class:`~canarystream.actuators.base.TrafficBackend` alike:

1. **Apply and verify** -- set the canary share, read it back, and call it applied only when
   the read-back is within ``tolerance`` percentage points of the request. A failed try is
   retried with exponential backoff and jitter until ``max_attempts`` or the deadline; then
   the report says ``failed``. A hold changes nothing and reports the share it observed.
2. **Dry run** -- reports what would be done, reads the current share, changes nothing.

A rollback is immediate by default. With ``rollback_steps`` N > 1 it steps the canary share
down from the share read back to 0 in N steps ``rollback_step_seconds`` apart (wall clock),
then verifies 0 like any change; a step that fails, or :meth:`Actuator.hurry` (shutdown),
goes straight to 0.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from canarystream.actuators.base import TrafficBackend, TrafficTarget, describe_error
from canarystream.actuators.config import Scope
from canarystream.actuators.fencing import FenceStore
from canarystream.actuators.handler import BaseHandler
from canarystream.actuators.metrics import ActuationMetrics
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.decision import Action, Decision
from canarystream.contracts.signing import Verifier

__all__ = ["Actuator", "RetryPolicy"]

_EPSILON = 1e-9
_PROTOCOL = ("kind", "set_share", "get_share", "describe", "close")


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


class Actuator(BaseHandler):
    """Carries out decisions on one traffic backend and reports on each.

    Parameters
    ----------
    backend:
        Any :class:`~canarystream.actuators.base.TrafficBackend` (router or flag service).
    verifier, scope, fence, dry_run, metrics:
        As for :class:`~canarystream.actuators.handler.BaseHandler`.
    retry:
        Attempts, backoff and deadline for each decision.
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

    def __init__(  # noqa: PLR0913 -- keyword-only collaborators and knobs, each replaceable in tests
        self,
        backend: TrafficBackend,
        *,
        verifier: Verifier | None,
        scope: Scope,
        fence: FenceStore | None = None,
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
        missing = [name for name in _PROTOCOL if not hasattr(backend, name)]
        if missing:
            raise TypeError(
                f"{type(backend).__name__} is not a TrafficBackend: it has no {', '.join(missing)}"
            )
        super().__init__(
            verifier=verifier,
            scope=scope,
            fence=fence,
            dry_run=dry_run,
            metrics=metrics,
            clock=clock,
            monotonic=monotonic,
        )
        self.backend = backend
        self.retry = RetryPolicy() if retry is None else retry
        self.tolerance = tolerance
        if rollback_steps < 1 or rollback_step_seconds < 0:
            raise ValueError("rollback_steps must be at least 1 and its pause non-negative")
        self.rollback_steps = rollback_steps
        self.rollback_step_seconds = rollback_step_seconds
        self._hurried = False
        self._pausing: asyncio.Future[object] | None = None
        self._rng = random.Random() if rng is None else rng
        self._sleep = sleep

    @property
    def kind(self) -> str:
        """The backend's kind, as reported and used as a metric label."""
        return self.backend.kind

    @property
    def longest_seconds(self) -> float:
        """An upper bound on the time one decision can take (a gradual rollback included)."""
        steps = self.rollback_steps
        return self.retry.deadline * (steps + 1) + self.rollback_step_seconds * (steps - 1)

    def describe(self) -> str:
        """What the backend controls."""
        return self.backend.describe()

    async def close(self) -> None:
        """Close the backend."""
        await self.backend.close()

    def hurry(self) -> None:
        """Finish a gradual rollback in progress at once, and roll back at once from now on
        (called on shutdown: a canary is never left at an intermediate share)."""
        self._hurried = True
        if self._pausing is not None:
            self._pausing.cancel()

    async def _carry_out(
        self, decision: Decision, signature: str | bytes | None, signed: bytes
    ) -> ActuationReport:
        target = TrafficTarget.from_decision(decision)
        if self.dry_run:
            return await self._dry_run(decision, target)
        if not decision.action.changes_traffic:  # hold, freeze, rollback verification
            return await self._run(decision, self._observe(decision.deployment), hold=True)
        if decision.action is Action.ROLLBACK and self.rollback_steps > 1:
            return await self._step_down(decision, target)
        return await self._run(decision, self._apply(target), hold=False)

    def _apply(self, target: TrafficTarget) -> _Step:
        async def step() -> tuple[float | None, str]:
            await self.backend.set_share(target)
            observed = await self.backend.get_share(target.deployment)
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
            return await self.backend.get_share(deployment), ""

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
                error = describe_error(exc)
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
            current = await asyncio.wait_for(
                self.backend.get_share(target.deployment), timeout=deadline
            )
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
                    error = describe_error(exc)
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
                self.backend.get_share(target.deployment), timeout=self.retry.deadline
            )
            now = "unknown" if observed is None else f"{observed:g}%"
        except Exception as exc:  # a drill reports an unreachable backend, it does not fail
            observed, now = None, f"unreadable: {describe_error(exc)}"
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


def _applied_detail(decision: Decision, observed: float | None, hold: bool) -> str:
    seen = "unknown" if observed is None else f"{observed:g}%"
    if hold:
        return f"hold: canary traffic left as it is ({seen})"
    return f"{decision.action.value}: canary traffic set to {decision.traffic_percent:g}% ({seen})"
