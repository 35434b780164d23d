"""The two protocols of the actuators, and the traffic target a backend is given.

* :class:`TrafficBackend`: a router (a load balancer's weights) or a flag service (a rollout
  percentage) alike -- ``set_share``, ``get_share``, ``describe``, ``close`` and a ``kind``.
  :class:`~canarystream.actuators.executor.Actuator` drives any of them the same way, with
  retries and read-back; nothing branches on which one it is.
* :class:`Handler`: what the Kafka service loop drives -- the traffic actuator or the hook
  actuator, both built on :class:`~canarystream.actuators.handler.BaseHandler`, which holds the
  one refusal check, the metering and the report.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from canarystream.actuators.metrics import ActuationMetrics
from canarystream.contracts.actuation import ActuationReport
from canarystream.contracts.decision import Decision
from canarystream.contracts.signing import Verifier

__all__ = ["Handler", "TrafficBackend", "TrafficTarget", "describe_error", "split_weights"]


@dataclass(frozen=True, slots=True)
class TrafficTarget:
    """The canary share one deployment must have: what a backend is asked to apply."""

    deployment: str
    service: str
    baseline_version: str
    canary_version: str
    canary_percent: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.canary_percent <= 100.0:
            raise ValueError(f"canary_percent: {self.canary_percent} is not within 0..100")

    @classmethod
    def from_decision(cls, decision: Decision) -> TrafficTarget:
        """The target a decision asks for: its ``traffic_percent`` (0 on rollback, 100 on
        promote, the engine has already set it so)."""
        return cls(
            deployment=decision.deployment,
            service=decision.service,
            baseline_version=decision.baseline_version,
            canary_version=decision.canary_version,
            canary_percent=decision.traffic_percent,
        )


@runtime_checkable
class TrafficBackend(Protocol):
    """Anything that gives a canary a share of its service's traffic: a router's weights, a
    flag's rollout percentage. Async; knows nothing of Kafka, signatures or retries."""

    @property
    def kind(self) -> str:
        """The backend's kind: the ``backend`` of its reports and its metrics label."""
        ...

    async def set_share(self, target: TrafficTarget) -> None:
        """Give the canary ``target.canary_percent`` % of the service's traffic (or users)."""
        ...

    async def get_share(self, deployment: str) -> float | None:
        """The canary's share, %, as the backend reports it now; None if unknown."""
        ...

    def describe(self) -> str:
        """What this backend controls, in a few words, for logs."""
        ...

    async def close(self) -> None:
        """Release connections or processes held by the backend."""
        ...


@runtime_checkable
class Handler(Protocol):
    """What :class:`~canarystream.actuators.service.ActuatorService` drives: carries out each
    decision (traffic on a backend, or a rollback's hooks) and reports on it."""

    verifier: Verifier | None  # also checks messages that are not decisions; None: signing off
    metrics: ActuationMetrics | None  # the service gives one to a handler without
    # The service sets it: publishes an intent (a ``started`` report) and waits for the ack.
    recorder: Callable[[ActuationReport], Awaitable[object]] | None

    @property
    def kind(self) -> str:
        """The ``backend`` of the reports, a metric label, part of the consumer group."""
        ...

    @property
    def longest_seconds(self) -> float:
        """An upper bound on the time one decision can take."""
        ...

    def describe(self) -> str:
        """What this handler controls, in a few words, for logs."""
        ...

    async def actuate(
        self, decision: Decision, signature: str | bytes | None, payload: bytes | None = None
    ) -> ActuationReport:
        """Carry out ``decision`` and report; ``signature`` signs ``payload``, the message bytes
        the decision was decoded from (its canonical bytes when None)."""
        ...

    def remember(self, report: ActuationReport) -> None:
        """Take back a report this instance published before a restart or a rebalance."""
        ...

    def hurry(self) -> None:
        """Finish what is in progress as fast as is safe (called on shutdown)."""
        ...

    async def close(self) -> None:
        """Release the backend."""
        ...


def split_weights(canary_percent: float, total: int) -> tuple[int, int]:
    """Integer ``(baseline, canary)`` weights summing to ``total`` for a canary share in %.

    A share strictly between 0 and 100 never rounds to a zero weight on either side: a canary
    asked to take some traffic takes some, and the baseline is never starved by rounding.

    >>> split_weights(10, 100), split_weights(0, 100), split_weights(100, 256)
    ((90, 10), (100, 0), (0, 256))
    >>> split_weights(0.1, 100), split_weights(99.9, 100)
    ((99, 1), (1, 99))
    """
    if total < 2:
        raise ValueError(f"total weight must be at least 2, not {total}")
    if not 0.0 <= canary_percent <= 100.0:
        raise ValueError(f"canary_percent: {canary_percent} is not within 0..100")
    canary = int(canary_percent * total / 100.0 + 0.5)  # half up, not to even
    if 0.0 < canary_percent < 100.0:
        canary = min(max(canary, 1), total - 1)
    return total - canary, canary


def describe_error(exc: BaseException) -> str:
    """An exception as a report says it: ``Type: message``, or ``timed out``.

    >>> describe_error(TimeoutError()), describe_error(OSError("refused"))
    ('timed out', 'OSError: refused')
    """
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
