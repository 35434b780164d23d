"""The protocols every actuator backend follows, and the traffic target they are given.

A backend is either a traffic :class:`Router` (a load balancer's weights) or a
:class:`FlagProvider` (a feature flag's rollout percentage). Both are async, know nothing of
Kafka or signatures, and are driven by :class:`~canarystream.actuators.executor.Actuator`,
which fences, retries and verifies around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from canarystream.contracts.decision import Decision

__all__ = ["FlagProvider", "Router", "TrafficTarget", "split_weights"]


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
class Router(Protocol):
    """A traffic router: splits a service's requests between baseline and canary."""

    kind: str

    async def set_weight(self, target: TrafficTarget) -> None:
        """Route ``target.canary_percent`` % of the service's traffic to the canary."""
        ...

    async def get_weight(self, deployment: str) -> float | None:
        """The canary's share of traffic, %, as the router reports it now; None if unknown."""
        ...

    async def close(self) -> None:
        """Release connections or processes held by the router."""
        ...


@runtime_checkable
class FlagProvider(Protocol):
    """A feature-flag service: exposes the canary variant to a percentage of users."""

    kind: str

    async def set_rollout(self, target: TrafficTarget) -> None:
        """Serve the canary variant to ``target.canary_percent`` % of evaluations."""
        ...

    async def get_rollout(self, deployment: str) -> float | None:
        """The canary variant's rollout percentage as the service reports it; None if unknown."""
        ...

    async def close(self) -> None:
        """Release connections held by the provider."""
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
