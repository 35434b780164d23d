"""The ``canarystream`` Typer application; command groups register themselves on it."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(
    name="canarystream",
    help="Automated canary analysis and rollback automation on event streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
