"""Command-line interface: ``canarystream replay | simulate | policy``."""

from __future__ import annotations

from canarystream.cli import policy_cmd, replay_cmd, simulate_cmd  # noqa: F401  (registration)
from canarystream.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
