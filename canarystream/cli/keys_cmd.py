"""``canarystream keys generate NAME``: an Ed25519 key pair for a principal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from canarystream.cli.app import app, group
from canarystream.cli.console import err_console, escape
from canarystream.errors import ConfigError

__all__: list[str] = []

keys_app = group(help="Principals' Ed25519 keys (people, deploy system, worker, actuators).")
app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
def generate(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            show_default=False,
            help="The principal: a-z, 0-9, '.', '_', '@', '-' (e.g. alice@corp, deploy-bot).",
        ),
    ],
    directory: Annotated[
        Path, typer.Option("--dir", help="Where NAME.key and NAME.pub are written.")
    ] = Path("keys"),
    force: Annotated[
        bool, typer.Option(help="Replace an existing key pair (its old grants stop working).")
    ] = False,
) -> None:
    """Write NAME.key (private, PEM PKCS#8, mode 0600) and NAME.pub (public) for a principal.

    Prints the public key and the access-file entry that introduces the principal. The worker
    signs decisions and heartbeats with its key (CANARYSTREAM_SIGNING_KEY), actuators verify
    them with its public key (CANARYSTREAM_VERIFY_KEYS), and people and the deploy system sign
    announcements and commands with theirs (CANARYSTREAM_PRINCIPAL, _PRINCIPAL_KEY_FILE).
    """
    from canarystream.principals import access_snippet, generate_key_pair  # noqa: PLC0415

    try:
        pair = generate_key_pair(name, directory, force=force)
    except ConfigError as exc:
        err_console().print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    typer.echo(f"private key: {pair.private_file} (keep it secret; mode 0600)")
    typer.echo(f"public key:  {pair.public_file}\n")
    typer.echo(pair.public_pem)
    typer.echo("access file entry (add its grants):\n")
    typer.echo(access_snippet(pair))
