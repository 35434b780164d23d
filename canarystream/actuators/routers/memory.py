"""In-memory router: remembers the canary share per deployment. For tests and drills.

>>> import asyncio
>>> from canarystream.actuators.base import TrafficTarget
>>> router = MemoryRouter()
>>> asyncio.run(router.set_share(TrafficTarget("d1", "shop", "v1", "v2", 10.0)))
>>> asyncio.run(router.get_share("d1")), router.calls, router.history
(10.0, 1, [('d1', 10.0)])
"""

from __future__ import annotations

from canarystream.actuators.base import TrafficTarget
from canarystream.actuators.config import BackendConfig

__all__ = ["MemoryConfig", "MemoryRouter"]


class MemoryConfig(BackendConfig):
    """Nothing to configure: the shares live in the process."""


class MemoryRouter:
    """A router whose state is a dict of canary shares, with a count and a log of changes."""

    kind = "memory"

    def __init__(self, config: MemoryConfig | None = None) -> None:
        self.config = MemoryConfig() if config is None else config
        self.weights: dict[str, float] = {}
        self.calls = 0
        self.history: list[tuple[str, float]] = []  # (deployment, canary share) per change

    def describe(self) -> str:
        """Where the shares are: nowhere but this process."""
        return "canary shares in this process's memory (no traffic moves)"

    async def set_share(self, target: TrafficTarget) -> None:
        """Remember ``target.canary_percent`` for the deployment."""
        self.calls += 1
        self.history.append((target.deployment, target.canary_percent))
        self.weights[target.deployment] = target.canary_percent

    async def get_share(self, deployment: str) -> float | None:
        """The share last set for the deployment, or None."""
        return self.weights.get(deployment)

    async def close(self) -> None:
        """Nothing to release."""
