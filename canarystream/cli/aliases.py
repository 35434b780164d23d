"""Old spellings of options, kept hidden so scripts written against them keep working.

Every command spells the same thing the same way (``--policy``, ``--out/-o``); an option
renamed to match keeps its old name as a hidden alias that says what to use instead.
"""

from __future__ import annotations

from typing import TypeVar

import typer

__all__ = ["renamed"]

T = TypeVar("T")


def renamed(value: T | None, old_value: T | None, *, old: str, new: str) -> T | None:
    """The option's value, given as ``new`` or (with a warning on stderr) as ``old``.

    Lists given under both spellings are joined; any other value given twice is an error.

    >>> renamed(["a"], None, old="--policies", new="--policy")
    ['a']
    """
    if old_value is None:
        return value
    typer.echo(f"warning: {old} is deprecated; use {new}", err=True)
    if value is None:
        return old_value
    if isinstance(value, list) and isinstance(old_value, list):
        return [*value, *old_value]  # type: ignore[return-value]
    raise typer.BadParameter(f"given as both {new} and {old}", param_hint=new)
