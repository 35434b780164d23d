"""``canarystream approve | abort | pause | resume DEPLOYMENT --reason TEXT``: signed commands.

Each sends one control event for a live rollout, signed with the caller's key
(``CANARYSTREAM_PRINCIPAL``, ``CANARYSTREAM_PRINCIPAL_KEY_FILE``) and keyed by the rollout's
service, found in the decisions topic unless ``--service`` names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from canarystream.cli.app import app
from canarystream.cli.console import err_console, escape
from canarystream.errors import BrokerError, ConfigError, ContractError

if TYPE_CHECKING:
    from canarystream.contracts.verdict import InputVerdict
    from canarystream.kafka.connection import Connection
    from canarystream.kafka.control import Sent

__all__: list[str] = []


_HELP = {
    "approve": "Approve a rollout waiting at an approval stage (another principal than the one "
    "who started it).",
    "abort": "Stop a rollout now and restore all traffic to the baseline.",
    "pause": "Hold a rollout at its current stage until resumed.",
    "resume": "Resume a paused or frozen rollout.",
}


class _NotDoneError(Exception):
    """The command was not sent, or the worker refused it; exit code and message."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _kafka_failure(exc: Exception, connection: Connection) -> None:
    """Print a Kafka failure and, when the broker refused this client, why."""
    import asyncio  # noqa: PLC0415

    from canarystream.kafka.admin import refusal  # noqa: PLC0415

    err_console().print(f"[red]error:[/] kafka: {escape(str(exc))}")
    if reason := asyncio.run(refusal(connection)):
        err_console().print(f"  {escape(reason)}")


def _run(
    *,
    command: str,
    deployment: str,
    reason: str,
    service: str | None,
    lookup_timeout: float,
    wait: float,
    principal: str | None,
    key_file: Path | None,
    access: Path | None,
) -> None:
    import asyncio  # noqa: PLC0415

    from aiokafka.errors import KafkaError  # noqa: PLC0415  (aiokafka is slow to import)

    from canarystream.cli.options import settings_with  # noqa: PLC0415
    from canarystream.contracts.topics import DECISIONS_TOPIC, VERDICTS_TOPIC  # noqa: PLC0415
    from canarystream.governance.access import load_access  # noqa: PLC0415
    from canarystream.kafka import control  # noqa: PLC0415
    from canarystream.kafka.connection import Connection  # noqa: PLC0415
    from canarystream.principals import principal_signer  # noqa: PLC0415
    from canarystream.security import actuator_verifier  # noqa: PLC0415

    try:
        settings = settings_with(
            principal=principal, principal_key_file=key_file, access_file=access
        )
        name, signer = principal_signer(settings)
        granted = load_access(settings.access_file) if settings.access_file else None
        connection = Connection(settings)
        verifier = actuator_verifier(settings) if settings.verify_keys else None

        async def send() -> tuple[Sent, InputVerdict | None]:
            target = service or await control.find_service(
                connection, deployment, timeout=lookup_timeout, verifier=verifier
            )
            if target is None:
                raise _NotDoneError(
                    f"no decision on {connection.topic(DECISIONS_TOPIC)} names deployment "
                    f"{deployment!r} (looked for {lookup_timeout:g} s): check the id, or name "
                    "its service with --service",
                    2,
                )
            if granted is not None:
                problem = control.grant_problem(
                    granted,
                    str(settings.access_file),
                    caller=(name, signer),
                    command=command,
                    service=target,
                )
                if problem is not None:
                    raise _NotDoneError(f"not sent: {problem}", 2)
            value = control.control_event(
                command, deployment=deployment, service=target, principal=name, reason=reason
            )
            since = await control.end_offsets(connection, VERDICTS_TOPIC) if wait > 0 else {}
            sent = await control.send_command(
                connection, value, service=target, principal=name, signer=signer
            )
            typer.echo(
                f"sent {control.COMMANDS[command]} for {deployment} (service {target}) as "
                f"{name}: {sent.source}"
            )
            typer.echo(sent.value.decode("utf-8"))
            verdict: InputVerdict | None = None
            if wait > 0:
                verdict = await control.await_verdict(
                    connection, sent.source, since=since, timeout=wait
                )
            return sent, verdict

        sent, verdict = asyncio.run(send())
    except _NotDoneError as exc:
        err_console().print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(exc.code) from exc
    except (ConfigError, ContractError, BrokerError) as exc:
        err_console().print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    except KafkaError as exc:
        _kafka_failure(exc, connection)
        raise typer.Exit(1) from exc
    if wait > 0:
        _report(sent, verdict, wait)


def _report(sent: Sent, verdict: InputVerdict | None, wait: float) -> None:
    """Print the worker's verdict on ``sent``; exit 1 unless it accepted it."""
    if verdict is None:
        err_console().print(
            f"[yellow]no verdict from the worker on {sent.source} within {wait:g} s[/] "
            "(is a worker running for this service?)"
        )
        raise typer.Exit(1)
    if verdict.verdict == "refused":
        err_console().print(f"[red]refused by the worker:[/] {escape(str(verdict.reason))}")
        raise typer.Exit(1)
    typer.echo(f"accepted by the worker as {verdict.principal}")


def _register(command: str) -> None:
    def run(
        deployment: Annotated[
            str, typer.Argument(metavar="DEPLOYMENT", show_default=False, help="Rollout id.")
        ],
        *,
        reason: Annotated[
            str,
            typer.Option(
                show_default=False, help="Why (recorded with the command in the audit trail)."
            ),
        ],
        service: Annotated[
            str | None,
            typer.Option(
                help="The rollout's service; skips looking it up in the decisions topic.",
                show_default=False,
            ),
        ] = None,
        lookup_timeout: Annotated[
            float, typer.Option(min=0.1, help="Seconds to look for the rollout's service.")
        ] = 10.0,
        wait: Annotated[
            float,
            typer.Option(
                min=0.0,
                help="Seconds to wait for the worker's verdict (accepted or refused); 0: "
                "do not wait.",
            ),
        ] = 0.0,
        principal: Annotated[
            str | None,
            typer.Option(
                help="Your principal. Default: CANARYSTREAM_PRINCIPAL.", show_default=False
            ),
        ] = None,
        key_file: Annotated[
            Path | None,
            typer.Option(
                help="Your private key (canarystream keys generate). Default: "
                "CANARYSTREAM_PRINCIPAL_KEY_FILE.",
                show_default=False,
            ),
        ] = None,
        access: Annotated[
            Path | None,
            typer.Option(
                help="Access file to check your grant against before sending (the worker "
                "decides). Default: CANARYSTREAM_ACCESS_FILE.",
                show_default=False,
            ),
        ] = None,
    ) -> None:
        _run(
            command=command,
            deployment=deployment,
            reason=reason,
            service=service,
            lookup_timeout=lookup_timeout,
            wait=wait,
            principal=principal,
            key_file=key_file,
            access=access,
        )

    run.__doc__ = (
        f"{_HELP[command]}\n\nSigned with your key and sent to the partition of the rollout's "
        "service. Exit codes: 0 sent (and accepted, with --wait); 1 the worker refused it, "
        "gave no verdict in time, or Kafka failed; 2 not sent (settings, key, unknown "
        "deployment, or no grant in the access file)."
    )
    app.command(command, no_args_is_help=True)(run)


for _command in ("approve", "abort", "pause", "resume"):
    _register(_command)
