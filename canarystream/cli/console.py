"""Consoles and markup escaping for the commands, loaded when first used.

``canarystream --help`` builds every command module; importing rich there cost about a fifth
of its start-up, so the modules ask for a console when they print, not when they load.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["console", "deferred_err_console", "err_console", "escape"]


@cache
def err_console() -> Console:
    """The standard error console of every command (soft-wrapped, never cut)."""
    from rich.console import Console  # noqa: PLC0415

    return Console(stderr=True, soft_wrap=True)


class _Deferred:
    """Stands for :func:`err_console` until something asks it for anything."""

    def __getattr__(self, name: str) -> Any:
        return getattr(err_console(), name)


def deferred_err_console() -> Console:
    """:func:`err_console`, made (rich imported, about 0.05 s) only when first used: a quiet
    replay that has nothing to report never needs it."""
    return cast("Console", _Deferred())


def console(**options: object) -> Console:
    """A new standard output console with rich's ``options``."""
    from rich.console import Console  # noqa: PLC0415

    return Console(**options)  # type: ignore[arg-type]  # rich's keyword arguments, passed on


def escape(text: str) -> str:
    """``text`` with rich's markup characters escaped."""
    from rich.markup import escape as rich_escape  # noqa: PLC0415

    return rich_escape(text)
