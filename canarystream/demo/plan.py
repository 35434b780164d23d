"""The demo's plan length: a constant of its own, so the CLI knows it without the simulator."""

from __future__ import annotations

__all__ = ["PLAN_MINUTES"]

PLAN_MINUTES = 40.0
"""Length of the full plan; the default policy's 5 stages of 6 minutes fit into it."""
