"""``canarystream kafka up | down | status`` and ``canarystream topics create``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from canarystream.cli.app import app, group
from canarystream.cli.console import console as new_console
from canarystream.cli.console import err_console, escape

if TYPE_CHECKING:
    from canarystream.kafka.local import LocalKafka

__all__: list[str] = []

kafka_app = group(help="The local Apache Kafka broker (KRaft, one node, 127.0.0.1).")
topics_app = group(help="The topics of the contract (topics/).")
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")

PLAIN_PORT = 19092
SECURE_PORT = 19094  # and 19095: beside a plain broker on the default ports
Port = Annotated[
    int | None,
    typer.Option(
        help=f"Client port on 127.0.0.1 (the controller's is the next one); default "
        f"{PLAIN_PORT}, or {SECURE_PORT} with --secure.",
        show_default=False,
    ),
]
Secure = Annotated[
    bool,
    typer.Option(
        "--secure",
        help="The secured broker: SASL_SSL with SCRAM-SHA-512, a CA of its own, its own storage.",
    ),
]


def _fail(exc: Exception) -> typer.Exit:
    err_console().print(f"[red]error:[/] {escape(str(exc))}")
    return typer.Exit(1)


def _broker(port: int | None, secure: bool) -> LocalKafka:
    from canarystream.kafka.local import LocalKafka, default_home  # noqa: PLC0415

    port = port or (SECURE_PORT if secure else PLAIN_PORT)
    return LocalKafka(default_home(), port=port, controller_port=port + 1, secure=secure)


@kafka_app.command("up")
def kafka_up(port: Port = None, secure: Secure = False) -> None:
    """Fetch the broker's jars once, then start it and wait until it answers.

    With --secure, clients must use TLS (trusting the CA it generates) and SCRAM-SHA-512;
    the users ``admin``, ``worker`` and ``actuator`` get random passwords, and one env file
    each holds the settings their clients need.
    """
    from canarystream.errors import BrokerError  # noqa: PLC0415

    broker = _broker(port, secure)
    try:
        broker.start()
    except BrokerError as exc:
        raise _fail(exc) from exc
    typer.echo(f"kafka {broker.version} up on {broker.bootstrap} (pid {broker.pid()})")
    if secure:
        _print_client_settings(broker)


def _print_client_settings(broker: LocalKafka) -> None:
    security = broker.security
    settings = broker.client_settings()
    typer.echo(
        f"security: {settings['kafka_security_protocol']}, "
        f"{settings['kafka_sasl_mechanism']}, CA {security.ca_file}"
    )
    typer.echo(
        "clients: KAFKA_BOOTSTRAP, CANARYSTREAM_KAFKA_SECURITY_PROTOCOL, "
        "CANARYSTREAM_KAFKA_SASL_MECHANISM, CANARYSTREAM_KAFKA_SASL_USERNAME, "
        "CANARYSTREAM_KAFKA_SASL_PASSWORD, CANARYSTREAM_KAFKA_SSL_CAFILE"
    )
    for user in security.passwords:
        typer.echo(f"  {user}: set -a; . {security.env_file(user)}; set +a")


@kafka_app.command("down")
def kafka_down(
    port: Port = None,
    secure: Secure = False,
    wipe: Annotated[bool, typer.Option(help="Also delete the broker's data.")] = False,
) -> None:
    """Stop the local broker (SIGTERM, then SIGKILL after 30 s)."""
    broker = _broker(port, secure)
    stopped = broker.stop()
    if wipe:
        broker.wipe()
    typer.echo("kafka stopped" if stopped else "kafka was not running")


@kafka_app.command("status")
def kafka_status(port: Port = None, secure: Secure = False) -> None:
    """Say whether the local broker runs; exit code 1 if it does not."""
    broker = _broker(port, secure)
    if broker.is_up():
        typer.echo(f"kafka {broker.version} up on {broker.bootstrap} (pid {broker.pid()})")
        if secure:
            _print_client_settings(broker)
        return
    typer.echo("kafka down")
    raise typer.Exit(1)


@topics_app.command("create")
def topics_create(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Create the contract's topics that are missing (idempotent)."""
    import asyncio  # noqa: PLC0415

    from rich.table import Table  # noqa: PLC0415

    from canarystream.cli.tables import print_table  # noqa: PLC0415
    from canarystream.errors import BrokerError, ConfigError  # noqa: PLC0415
    from canarystream.kafka.admin import create_topics  # noqa: PLC0415  (aiokafka)
    from canarystream.kafka.connection import Connection  # noqa: PLC0415
    from canarystream.settings import load_settings  # noqa: PLC0415

    try:
        connection = Connection(load_settings())
        results = asyncio.run(create_topics(connection))
    except (BrokerError, ConfigError) as exc:
        raise _fail(exc) from exc
    if as_json:
        import orjson  # noqa: PLC0415

        rows = [
            {
                "topic": result.name,
                "partitions": result.partitions,
                "replicas": result.replication_factor,
                "created": result.created,
                "note": result.note or None,
            }
            for result in results
        ]
        document = {"bootstrap": connection.bootstrap, "topics": rows}
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title=f"Topics on {connection.bootstrap}", title_justify="left")
    for column in ("topic", "partitions", "replicas", "result"):
        table.add_column(column)
    for result in results:
        outcome = "created" if result.created else "exists"
        if result.note:
            outcome += f" ({result.note})"
        table.add_row(result.name, str(result.partitions), str(result.replication_factor), outcome)
    print_table(new_console(), table)
