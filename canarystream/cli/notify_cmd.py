"""``canarystream notify [--config FILE] [--name NAME]``: webhooks for decisions people must see."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from canarystream.cli.actuate_cmd import StartFrom
from canarystream.cli.app import app
from canarystream.errors import BrokerError, ConfigError

if TYPE_CHECKING:
    from canarystream.notify.service import NotifyService

__all__: list[str] = []

log = logging.getLogger("canarystream.notify")


@app.command("notify")
def notify(
    *,
    config: Annotated[
        Path | None,
        typer.Option(
            help="The notification file (routes, formats, retries). Default: "
            "CANARYSTREAM_NOTIFY_CONFIG.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str,
        typer.Option(
            help="Names the consumer group (canarystream-notify-NAME); notifiers sharing a "
            "name share the work."
        ),
    ] = "default",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Port of /metrics (0: none). Default: CANARYSTREAM_NOTIFY_METRICS_PORT (6069).",
            show_default=False,
        ),
    ] = None,
    start_from: Annotated[
        StartFrom,
        typer.Option(
            help="Where a new consumer group starts reading the decisions (latest: decisions "
            "from now on)."
        ),
    ] = StartFrom.latest,
    from_beginning: Annotated[
        bool,
        typer.Option("--from-beginning", hidden=True, help="Old name of --start-from earliest."),
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Notify on unsigned decisions (local drills only). Default: "
            "CANARYSTREAM_INSECURE.",
        ),
    ] = False,
) -> None:
    """Send webhooks (Slack, JSON, PagerDuty Events v2) when a rollout is held, pages,
    rolls back, does not recover, or is promoted; only for decisions signed with the worker's
    key (CANARYSTREAM_VERIFY_KEYS). Blocks until SIGTERM or Ctrl-C.

    Exit codes: 1 Kafka failed; 2 settings or the notification file are invalid."""
    import asyncio  # noqa: PLC0415  (imported when a command runs: --help stays light)

    from aiokafka.errors import KafkaError  # noqa: PLC0415  (aiokafka is slow to import)
    from prometheus_client import CollectorRegistry  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415
    from rich.markup import escape  # noqa: PLC0415

    from canarystream.cli.options import settings_with  # noqa: PLC0415
    from canarystream.kafka.admin import create_topics  # noqa: PLC0415
    from canarystream.kafka.connection import Connection  # noqa: PLC0415
    from canarystream.notify.config import load_notify_config  # noqa: PLC0415
    from canarystream.notify.metrics import NotifyMetrics  # noqa: PLC0415
    from canarystream.notify.service import NotifyService  # noqa: PLC0415
    from canarystream.security import (  # noqa: PLC0415
        actuator_verifier,
        insecure_gauge,
        warn_if_insecure,
    )

    if from_beginning:
        typer.echo("warning: --from-beginning is deprecated; use --start-from earliest", err=True)
        start_from = StartFrom.earliest
    err = Console(stderr=True, soft_wrap=True)
    try:
        settings = settings_with(
            notify_config=config, notify_metrics_port=metrics_port, insecure=insecure or None
        )
        if settings.notify_config is None:
            raise ConfigError(
                "no notification file: give --config FILE or set CANARYSTREAM_NOTIFY_CONFIG "
                "(notify_config)"
            )
        parsed = load_notify_config(settings.notify_config)
        verifier = actuator_verifier(settings)
        metrics = NotifyMetrics(registry := CollectorRegistry())
        insecure_gauge(registry, settings.insecure)
        connection = Connection(settings)
        asyncio.run(create_topics(connection))
        service = NotifyService(
            parsed,
            connection,
            verifier,
            name=name,
            metrics=metrics,
            metrics_port=settings.notify_metrics_port or None,
            metrics_host=settings.notify_metrics_bind,
            start_from="earliest" if start_from is StartFrom.earliest else "latest",
        )
    except (ConfigError, BrokerError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    warn_if_insecure(settings, "notifier", log, signed=verifier is not None)
    try:
        asyncio.run(_run(service))
    except KafkaError as exc:
        err.print(f"[red]error:[/] kafka: {escape(str(exc))}")
        raise typer.Exit(1) from exc


async def _run(service: NotifyService) -> None:
    import asyncio  # noqa: PLC0415
    import signal  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.stop)
    await service.run()
