"""The decision engine (pure, event-time driven)."""

from canarystream.engine.engine import Engine
from canarystream.engine.rollout import Rollout

__all__ = ["Engine", "Rollout"]
