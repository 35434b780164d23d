"""The ``canarystream`` Typer application; command groups register themselves on it.

Registering a command must stay cheap: ``canarystream --help`` builds every command, so a
command module imports its heavy dependencies (Faust, aiokafka, the engine with numpy)
inside the function that needs them, never at module level. Help is plain text
(click's), on a terminal as in a pipe: drawing it with rich took longer than the rest of
``--help`` together (0.37 s of CPU against 0.22 s).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from canarystream import __version__

__all__ = ["app", "group"]


def _markup_mode() -> Literal["rich"] | None:
    """No rich markup: help is click's plain text everywhere."""
    return None


app = typer.Typer(
    name="canarystream",
    help="Automated canary analysis and rollback automation on event streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=_markup_mode(),
)


def group(help: str, **options: Any) -> typer.Typer:
    """A command group (``canarystream kafka ...``) that draws its help as :data:`app` does."""
    return typer.Typer(help=help, rich_markup_mode=_markup_mode(), **options)


def _print_version(given: bool) -> None:
    if given:
        typer.echo(f"canarystream {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Automated canary analysis and rollback automation on event streams."""
