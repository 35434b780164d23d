"""``canarystream policy``: validate and show rollout policies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from canarystream.cli.app import app, group
from canarystream.cli.console import console as new_console
from canarystream.cli.console import err_console, escape

__all__ = ["policy_app"]

policy_app = group(help="Validate and show rollout policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@policy_app.command()
def validate(path: Annotated[Path, typer.Argument(help="Policy file (.yaml or .json).")]) -> None:
    """Check a policy file; on error, say which field is wrong and exit 1."""
    from canarystream.errors import PolicyError  # noqa: PLC0415
    from canarystream.policy.loading import load_policy  # noqa: PLC0415
    from canarystream.policy.model import check_name  # noqa: PLC0415

    console = new_console(soft_wrap=True)
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        err_console().print(f"[red]invalid:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from exc
    stages = ", ".join(f"{s.traffic_percent:g}%" for s in policy.stages)
    checks = ", ".join(check_name(c) for c in policy.checks)
    console.print(
        f"[green]valid:[/] {path}: policy {policy.name!r}; stages {stages}; checks {checks}; "
        f"alpha {policy.alpha:g}",
        highlight=False,
    )


@policy_app.command()
def show(
    path: Annotated[Path | None, typer.Argument(help="Policy file; default: built-in.")] = None,
) -> None:
    """Print a policy with every default filled in (YAML)."""
    import yaml  # noqa: PLC0415

    from canarystream.errors import PolicyError  # noqa: PLC0415
    from canarystream.policy.loading import load_policy  # noqa: PLC0415
    from canarystream.policy.model import Policy  # noqa: PLC0415

    try:
        policy = load_policy(path) if path else Policy()
    except PolicyError as exc:
        err_console().print(f"[red]invalid:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from exc
    typer.echo(yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False).rstrip())
