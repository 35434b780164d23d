"""``canarystream worker``: the streaming service."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from canarystream.cli.app import app
from canarystream.cli.console import err_console, escape

__all__: list[str] = []


@app.command()
def worker(
    policy: Annotated[
        list[Path] | None,
        typer.Option(help="Policy file or directory (repeatable). Default: CANARYSTREAM_POLICIES."),
    ] = None,
    web_bind: Annotated[
        str | None,
        typer.Option(
            help="Address of /metrics and /rollouts/. Default: CANARYSTREAM_WEB_BIND (127.0.0.1)."
        ),
    ] = None,
    web_port: Annotated[
        int | None,
        typer.Option(
            help="Port of /metrics and /rollouts/. Default: CANARYSTREAM_WEB_PORT (6066)."
        ),
    ] = None,
    access: Annotated[
        Path | None,
        typer.Option(
            help="Access file: who may steer which rollouts (required unless --insecure; see "
            "deploy/access.example.yaml). Default: CANARYSTREAM_ACCESS_FILE."
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Run without a signing key or an access file, obeying anyone who can write "
            "to the deployments topic (local drills only; logged loudly at every start). "
            "Default: CANARYSTREAM_INSECURE.",
        ),
    ] = False,
) -> None:
    """Consume telemetry and deployments, decide, and publish decisions (blocks).

    Batching, Faust's tuning and the rest come from settings (CANARYSTREAM_* or the file
    named by CANARYSTREAM_CONFIG); the options above override them. Decisions are signed with
    CANARYSTREAM_SIGNING_KEY (`canarystream keys generate worker`); only announcements and
    commands signed by a principal the access file grants are obeyed.
    """
    import asyncio  # noqa: PLC0415

    from canarystream.cli.options import settings_with  # noqa: PLC0415
    from canarystream.cli.replay_cmd import build_engine  # noqa: PLC0415
    from canarystream.errors import BrokerError, ConfigError, PolicyError  # noqa: PLC0415
    from canarystream.governance.access import load_access  # noqa: PLC0415
    from canarystream.kafka.admin import create_topics  # noqa: PLC0415  (aiokafka)
    from canarystream.kafka.connection import Connection  # noqa: PLC0415
    from canarystream.security import worker_access_file, worker_signer  # noqa: PLC0415

    err = err_console()
    try:
        settings = settings_with(
            web_bind=web_bind, web_port=web_port, access_file=access, insecure=insecure or None
        )
        # No key or no access file, and not insecure: refuse before anything starts.
        worker_signer(settings)
        access_file = worker_access_file(settings)
        policies = build_engine(policy or settings.policies).policies
        if access_file is not None:
            load_access(access_file)  # its errors before anything starts
        results = asyncio.run(create_topics(Connection(settings)))
    except (ConfigError, PolicyError, BrokerError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    from canarystream.streaming.worker import StreamWorker  # noqa: PLC0415  (imports Faust)

    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    replication = min(result.replication_factor for result in results)
    StreamWorker(settings, policies=policies, replication_factor=replication).run(
        loglevel=settings.log_level.lower()
    )
