"""canarystream: automated canary analysis and rollback automation on event streams."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
