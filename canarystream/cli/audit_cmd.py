"""``canarystream audit record | verify | export``: the hash-chained audit trail.

``record`` is the trail's one writer (see :mod:`canarystream.audit.recorder`); ``verify``
checks every chain of ``canary.audit.v1`` (or of an export) and exits 0 when all is well, 1
when it found a problem, 2 when it could not read the trail; ``export`` writes the trail as
JSON Lines, one record per line as stored, for keeping or checking elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from canarystream.cli.aliases import renamed
from canarystream.cli.app import app, group
from canarystream.cli.console import err_console, escape
from canarystream.errors import BrokerError, ConfigError

if TYPE_CHECKING:
    from canarystream.audit.verify import Report

__all__: list[str] = []

audit_app = group(
    help="The audit trail: every verdict, decision and actuation, hash-chained per deployment.",
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    err_console().print(f"[red]error:[/] {escape(str(exc))}")
    return typer.Exit(code)


@audit_app.command("record")
def record(
    metrics_bind: Annotated[
        str | None,
        typer.Option(
            help="Address of /metrics. Default: CANARYSTREAM_AUDIT_METRICS_BIND (127.0.0.1).",
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Port of /metrics (Prometheus); 0: none. Default: "
            "CANARYSTREAM_AUDIT_METRICS_PORT (6068).",
            show_default=False,
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Chain verdicts, decisions and reports without checking their signatures "
            "when no key is configured (local drills only: anyone who can write to those "
            "topics could then put forgeries in the trail; logged loudly at every start). "
            "Default: CANARYSTREAM_INSECURE.",
        ),
    ] = False,
) -> None:
    """Append every message of the verdicts, decisions and actuations topics to the trail.

    Only what its writer signed is chained: verdicts and decisions with the worker's key
    (its public key, worker.pub, in CANARYSTREAM_VERIFY_KEYS), actuation reports with their
    actuator's (CANARYSTREAM_AUDIT_ACTUATOR_KEYS, a JSON object of kind/name to public key).
    Anything else is counted and dead-lettered. Blocks; SIGTERM stops it. Several may run:
    each partition has one writer at a time.
    """
    import asyncio  # noqa: PLC0415

    from aiokafka.errors import KafkaError  # noqa: PLC0415  (aiokafka is slow to import)

    from canarystream.audit.metrics import AuditMetrics  # noqa: PLC0415
    from canarystream.audit.recorder import AuditRecorder  # noqa: PLC0415
    from canarystream.cli.options import settings_with  # noqa: PLC0415
    from canarystream.kafka.admin import create_topics  # noqa: PLC0415
    from canarystream.kafka.connection import Connection  # noqa: PLC0415
    from canarystream.security import insecure_gauge, recorder_trust  # noqa: PLC0415

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_with(
            audit_metrics_bind=metrics_bind,
            audit_metrics_port=metrics_port,
            insecure=insecure or None,
        )
        logging.getLogger().setLevel(settings.log_level)
        trust = recorder_trust(settings, logging.getLogger("canarystream.audit.recorder"))
        connection = Connection(settings)
        asyncio.run(create_topics(connection))
    except (ConfigError, BrokerError) as exc:
        raise _fail(exc) from exc
    metrics = AuditMetrics()
    insecure_gauge(metrics.registry, settings.insecure)
    recorder = AuditRecorder(
        connection,
        trust,
        metrics=metrics,
        metrics_port=settings.audit_metrics_port or None,
        metrics_host=settings.audit_metrics_bind,
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, recorder.stop)
        await recorder.run()

    try:
        asyncio.run(run())
    except (ConfigError, BrokerError) as exc:
        raise _fail(exc) from exc
    except KafkaError as exc:
        raise _fail(exc, 1) from exc


Deployment = Annotated[
    str | None,
    typer.Option("--deployment", "-d", help="Only this deployment's chain.", show_default=False),
]


@audit_app.command("verify")
def verify(
    deployment: Deployment = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Check an export (JSON Lines, one record per line) instead of the topic; "
            "'-' reads stdin.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check every chain: each record sealed, linked to the one before, none missing,
    doubled or out of order. Exit 0: clean; 1: problems found; 2: the trail was unreadable."""
    import asyncio  # noqa: PLC0415

    from canarystream.audit.verify import ChainVerifier  # noqa: PLC0415

    verifier = ChainVerifier(deployment)
    try:
        if file is not None:
            with _open(file) as lines:
                for number, line in enumerate(lines, 1):
                    if line.strip():
                        verifier.feed(line.encode("utf-8"), f"{file}:{number}")
            source = str(file)
        else:
            source = asyncio.run(_feed_topic(verifier))
    except (OSError, UnicodeDecodeError, ConfigError, BrokerError) as exc:
        raise _fail(exc) from exc
    report = verifier.report()
    if as_json:
        import orjson  # noqa: PLC0415

        sys.stdout.write(orjson.dumps({"source": source, **report.to_json()}).decode() + "\n")
    else:
        _print(report, source)
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("export")
def export(
    deployment: Deployment = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="File to write; '-' or none: stdout.", show_default=False),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", hidden=True, help="Old name of --out.")
    ] = None,
) -> None:
    """Write the trail as JSON Lines, in partition then offset order (``verify --file`` reads
    it back)."""
    import asyncio  # noqa: PLC0415

    from canarystream.audit.chain import chain_name  # noqa: PLC0415

    async def run(out: TextIO) -> int:
        written = 0
        async for message in _trail():
            if deployment is not None and chain_name(message.key) != deployment:
                continue
            out.write((message.value or b"").decode("utf-8", errors="replace") + "\n")
            written += 1
        return written

    output = renamed(out, output, old="--output", new="--out") or Path("-")
    try:
        if str(output) == "-":
            written = asyncio.run(run(sys.stdout))
        else:
            with output.open("w", encoding="utf-8") as handle:
                written = asyncio.run(run(handle))
    except (OSError, ConfigError, BrokerError) as exc:
        raise _fail(exc) from exc
    err_console().print(f"{written} records exported")


async def _trail() -> Any:
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from canarystream.audit.reading import partition_count, read_to_end  # noqa: PLC0415
    from canarystream.cli.options import settings_with  # noqa: PLC0415
    from canarystream.contracts.topics import AUDIT_TOPIC  # noqa: PLC0415
    from canarystream.kafka.connection import Connection  # noqa: PLC0415

    connection = Connection(settings_with())
    topic = connection.topic(AUDIT_TOPIC)
    try:
        if await partition_count(connection, topic) is None:
            raise BrokerError(f"{topic} does not exist on {connection.bootstrap}")
        async for message in read_to_end(connection, topic):
            yield message
    except KafkaError as exc:
        raise BrokerError(f"cannot read {topic}: {exc}") from exc


async def _feed_topic(verifier: Any) -> str:
    topic = None
    async for message in _trail():
        topic = message.topic
        where = f"{message.topic}/{message.partition}@{message.offset}"
        verifier.feed(message.value or b"", where, message.key)
    return topic or "canary.audit.v1"


@contextlib.contextmanager
def _open(path: Path) -> Iterator[TextIO]:
    if str(path) == "-":
        yield sys.stdin
        return
    with path.open(encoding="utf-8") as handle:
        yield handle


def _print(report: Report, source: str) -> None:
    kinds = ", ".join(f"{n} {kind}" for kind, n in report.kinds.items()) or "none"
    typer.echo(f"{source}: {report.records} records ({kinds}), {report.deployments} deployments")
    if report.ok:
        typer.echo("ok: every chain is complete, in order and unaltered")
        return
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts.items())
    typer.echo(f"PROBLEMS: {counts}")
    for problem in report.problems:
        typer.echo(f"  {problem}")
    shown = len(report.problems)
    total = sum(report.counts.values())
    if shown < total:
        typer.echo(f"  ... {total - shown} more not shown")
