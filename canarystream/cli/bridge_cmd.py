"""``canarystream bridge otlp``: OpenTelemetry Collector output in, canarystream telemetry out."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated

import typer

from canarystream.cli.actuate_cmd import StartFrom
from canarystream.cli.app import app, group
from canarystream.cli.console import err_console, escape

__all__: list[str] = []

bridge_app = group(help="Bridges from other telemetry formats to canary.telemetry.v1.")
app.add_typer(bridge_app, name="bridge")


class OtlpEncoding(StrEnum):
    """The Collector Kafka exporter's ``encoding``."""

    otlp_proto = "otlp_proto"
    otlp_json = "otlp_json"


@bridge_app.command("otlp")
def otlp(
    *,
    traces_topic: Annotated[
        str, typer.Option(help="The exporter's traces topic (full name: no prefix applies).")
    ] = "otlp_spans",
    metrics_topic: Annotated[
        str, typer.Option(help="The exporter's metrics topic (full name: no prefix applies).")
    ] = "otlp_metrics",
    encoding: Annotated[
        OtlpEncoding, typer.Option(help="The exporter's encoding of both topics.")
    ] = OtlpEncoding.otlp_proto,
    version_attribute: Annotated[
        str, typer.Option(help="Resource attribute that names the version (the cohort).")
    ] = "service.version",
    batch: Annotated[
        int, typer.Option(min=1, help="Events of one service per telemetry message, at most.")
    ] = 500,
    metrics_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of /metrics on 127.0.0.1 (0: none).")
    ] = 6070,
    start_from: Annotated[
        StartFrom,
        typer.Option(help="Where a new consumer group starts reading the OTLP topics."),
    ] = StartFrom.latest,
) -> None:
    """Convert the OpenTelemetry Collector's Kafka exporter output (SERVER spans, Gauge and
    Sum points) to request and metric events on canary.telemetry.v1, keyed by service.

    Messages that are no OTLP export request are dead-lettered. Offsets are committed once
    the converted events are acknowledged (at least once). Blocks until SIGTERM or Ctrl-C.
    Exit codes: 1 Kafka failed; 2 invalid settings or options."""
    import asyncio  # noqa: PLC0415  (imported when the command runs: --help stays light)
    import signal  # noqa: PLC0415

    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from canarystream.errors import BrokerError, ConfigError  # noqa: PLC0415
    from canarystream.ingest.bridge import BridgeConfig, OtlpBridge  # noqa: PLC0415
    from canarystream.ingest.conversion import IngestOptions  # noqa: PLC0415
    from canarystream.kafka.admin import create_topics  # noqa: PLC0415
    from canarystream.kafka.connection import Connection  # noqa: PLC0415
    from canarystream.settings import load_settings  # noqa: PLC0415

    err = err_console()
    try:
        config = BridgeConfig(
            traces_topic=traces_topic,
            metrics_topic=metrics_topic,
            encoding=encoding.value,
            options=IngestOptions(version_attribute=version_attribute),
            batch=batch,
        )
        settings = load_settings()
        connection = Connection(settings)
        asyncio.run(create_topics(connection))
    except (ValueError, ConfigError, BrokerError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    bridge = OtlpBridge(
        connection,
        config,
        metrics_port=metrics_port or None,
        start_from="earliest" if start_from is StartFrom.earliest else "latest",
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, bridge.stop)
        await bridge.run()

    try:
        asyncio.run(run())
    except KafkaError as exc:
        err.print(f"[red]error:[/] kafka: {escape(str(exc))}")
        raise typer.Exit(1) from exc
