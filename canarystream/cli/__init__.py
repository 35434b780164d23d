"""Command-line interface: ``canarystream replay | backtest | report | simulate | policy |
kafka | topics | worker | actuate | demo | keys | approve | abort | pause | resume | audit |
status | get | notify | bridge``."""

from __future__ import annotations

from canarystream.cli import (  # noqa: F401  (registration)
    actuate_cmd,
    audit_cmd,
    backtest_cmd,
    bridge_cmd,
    control_cmd,
    demo_cmd,
    kafka_cmd,
    keys_cmd,
    notify_cmd,
    policy_cmd,
    replay_cmd,
    report_cmd,
    simulate_cmd,
    status_cmd,
    worker_cmd,
)
from canarystream.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="canarystream")
