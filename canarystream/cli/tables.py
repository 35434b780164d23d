"""Tables as the commands print them: boxed on a terminal, plain and whole in a pipe.

In a pipe or a file nothing is truncated or wrapped to a terminal's width, and no box
characters are drawn: one line per row, columns separated by two spaces, so ``grep``,
``awk`` and ``cut`` read names in full.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["print_table"]

_WIDE = 100_000  # characters: no real line is wider


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` on ``console``: as it is on a terminal, plain and unwrapped otherwise."""
    if console.is_terminal:
        console.print(table)
        return
    from rich.console import Console  # noqa: PLC0415

    table.box = None
    table.title_justify = "left"
    table.pad_edge = False
    table.padding = (0, 2, 0, 0)
    for column in table.columns:
        column.no_wrap = True
        column.overflow = "ignore"
    plain = Console(file=console.file, width=_WIDE, color_system=None, highlight=False)
    with plain.capture() as captured:
        plain.print(table)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    console.file.write(text + "\n")
