"""Tables in a pipe: every name whole, no box characters, one line per row."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from canarystream.cli.tables import print_table

LONG = "checkout-service-with-a-very-long-deployment-name-" * 3


def _table() -> Table:
    table = Table(title="Rollouts")
    for column in ("deployment", "phase"):
        table.add_column(column)
    table.add_row(LONG, "running")
    table.add_row("short", "rolled_back")
    return table


def test_a_pipe_gets_plain_whole_rows_whatever_the_width() -> None:
    out = io.StringIO()
    print_table(Console(file=out, width=40), _table())
    lines = out.getvalue().splitlines()
    assert lines[0] == "Rollouts"
    assert lines[1].split() == ["deployment", "phase"]
    assert lines[2].split() == [LONG, "running"]
    assert lines[3].split() == ["short", "rolled_back"]
    assert not any(ch in out.getvalue() for ch in "━┃│─┏…")
    assert all(line == line.rstrip() for line in lines)


def test_a_terminal_gets_the_boxed_table() -> None:
    out = io.StringIO()
    print_table(Console(file=out, width=200, force_terminal=True), _table())
    assert "━" in out.getvalue() and LONG in out.getvalue()
