"""``canarystream actuate BACKEND``: carry decisions out on one backend of the registry.

BACKEND is a kind of :data:`~canarystream.actuators.registry.REGISTRY`. The options every
backend takes are declared once, below. The backend's own keys form its config section: from
``--config FILE`` (YAML or JSON, one section per backend kind) and, over it, from the command
line as ``--KEY VALUE`` or ``--KEY=VALUE`` (``--KEY`` alone for a yes/no key, repeated for a
list), e.g. ``canarystream actuate haproxy --socket /run/haproxy.sock --backend app
--baseline-server a --canary-server b``. The section is validated against the backend's model
before anything starts; errors name the field.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from canarystream.cli.app import app
from canarystream.cli.console import err_console, escape
from canarystream.errors import BrokerError, ConfigError

if TYPE_CHECKING:
    from canarystream.actuators.config import Scope
    from canarystream.actuators.executor import RetryPolicy
    from canarystream.actuators.registry import Plugin
    from canarystream.contracts.signing import Signer
    from canarystream.settings import Settings

__all__ = ["COMMON_OPTIONS", "retry_policy", "scope_from", "section_from_args"]

log = logging.getLogger("canarystream.actuate")

#: The options of every backend (as keys), which no backend key may shadow.
COMMON_OPTIONS = frozenset(
    {
        "config",
        "name",
        "service",
        "max_decision_age",
        "dry_run",
        "metrics_bind",
        "metrics_port",
        "retry_max_attempts",
        "retry_deadline",
        "rollback_steps",
        "rollback_step_seconds",
        "start_from",
        "insecure",
        "help",
    }
)


class StartFrom(StrEnum):
    """Where a consumer group without committed offsets starts reading."""

    latest = "latest"
    earliest = "earliest"


def _keys(plugin: Plugin[Any]) -> str:
    """A backend's keys as options, e.g. ``--address/--socket (required)``."""
    from pydantic_core import PydanticUndefined  # noqa: PLC0415

    names = plugin.names()
    described = []
    for field, info in plugin.config.model_fields.items():
        spelled = "/".join(
            f"--{key.replace('_', '-')}" for key, name in names.items() if name == field
        )
        if info.default is PydanticUndefined:
            also = f" or {plugin.env[field]}" if field in plugin.env else ""
            described.append(f"{spelled} (required{also})")
        elif info.default in (None, (), False):
            described.append(spelled)
        else:
            default = " ".join(info.default) if isinstance(info.default, tuple) else info.default
            described.append(f"{spelled} ({default})")
    return ", ".join(described) or "none"


def _epilog() -> str:
    from canarystream.actuators.registry import REGISTRY  # noqa: PLC0415  (every backend)

    backends = [f"{plugin.kind}: {plugin.summary} Keys: {_keys(plugin)}." for plugin in REGISTRY]
    return "\n\n".join(
        [
            "Backends and their keys (from --config FILE, or as options after BACKEND):",
            *backends,
        ]
    )


class _ActuateCommand(TyperCommand):
    """The command whose epilog, every backend and its keys, is built only when shown: it
    imports every backend, which ``canarystream --help`` must not."""

    @property
    def epilog(self) -> str:
        return escape(_epilog()) if self.rich_markup_mode == "rich" else _epilog()

    @epilog.setter
    def epilog(self, value: str | None) -> None:
        pass


@app.command(
    "actuate",
    cls=_ActuateCommand,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    no_args_is_help=True,
)
def actuate(
    ctx: typer.Context,
    backend: Annotated[
        str,
        typer.Argument(
            metavar="BACKEND",
            show_default=False,
            help="A backend kind (listed below with its keys).",
        ),
    ],
    *,
    config: Annotated[
        Path | None,
        typer.Option(
            help="YAML or JSON file with a section per backend kind; options given after "
            "BACKEND override its keys."
        ),
    ] = None,
    name: Annotated[
        str,
        typer.Option(
            help="Instance name; with the backend it names the consumer group. Instances that "
            "drive different routers need different names."
        ),
    ] = "default",
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service",
            help="Act for this service: a name or a glob (repeatable); '*' for every service. "
            "Default: CANARYSTREAM_ACTUATOR_SERVICES; without either the actuator does not "
            "start. Decisions for other services are refused (out_of_scope).",
            show_default=False,
        ),
    ] = None,
    max_decision_age: Annotated[
        float | None,
        typer.Option(
            help="Refuse a decision whose event time is older than this many seconds (stale). "
            "Default: CANARYSTREAM_ACTUATOR_MAX_DECISION_AGE (900).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Report what would be done; change nothing.")
    ] = False,
    metrics_bind: Annotated[
        str | None,
        typer.Option(
            help="Address of /metrics. Default: CANARYSTREAM_ACTUATOR_METRICS_BIND (127.0.0.1).",
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Port of /metrics (Prometheus); 0: none. Default: "
            "CANARYSTREAM_ACTUATOR_METRICS_PORT (6067).",
            show_default=False,
        ),
    ] = None,
    retry_max_attempts: Annotated[
        int | None,
        typer.Option(
            help="Tries per decision. Default: CANARYSTREAM_ACTUATOR_RETRY_MAX_ATTEMPTS (5); "
            "the backoff: CANARYSTREAM_ACTUATOR_RETRY_* settings.",
            show_default=False,
        ),
    ] = None,
    retry_deadline: Annotated[
        float | None,
        typer.Option(
            help="Seconds after which no further try of a decision starts. Default: "
            "CANARYSTREAM_ACTUATOR_RETRY_DEADLINE (30).",
            show_default=False,
        ),
    ] = None,
    rollback_steps: Annotated[
        int,
        typer.Option(min=1, help="Step a rollback down to 0 in this many steps; 1: at once."),
    ] = 1,
    rollback_step_seconds: Annotated[
        float, typer.Option(min=0.0, help="Seconds between the steps of a gradual rollback.")
    ] = 30.0,
    start_from: Annotated[
        StartFrom, typer.Option(help="Where a new consumer group starts reading the decisions.")
    ] = StartFrom.latest,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Act on unsigned decisions when no verify key is configured (local drills "
            "only: anyone who can write to the topic could then move traffic; logged loudly "
            "at every start). Default: CANARYSTREAM_INSECURE.",
        ),
    ] = False,
) -> None:
    """Carry out decisions on one backend, reporting on canary.actuations.v1.

    Blocks; SIGTERM stops it. Decisions must carry the worker's signature: its public key
    (worker.pub of `canarystream keys generate worker`) in CANARYSTREAM_VERIFY_KEYS.
    """
    import asyncio  # noqa: PLC0415

    from aiokafka.errors import KafkaError  # noqa: PLC0415  (aiokafka is slow to import)
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from canarystream.actuators.metrics import ActuationMetrics  # noqa: PLC0415
    from canarystream.actuators.registry import REGISTRY, HandlerOptions  # noqa: PLC0415
    from canarystream.actuators.service import ActuatorService  # noqa: PLC0415
    from canarystream.cli.options import settings_with  # noqa: PLC0415
    from canarystream.kafka.admin import create_topics  # noqa: PLC0415
    from canarystream.kafka.connection import Connection  # noqa: PLC0415
    from canarystream.security import (  # noqa: PLC0415
        actuator_verifier,
        insecure_gauge,
        warn_if_insecure,
    )

    try:
        plugin = REGISTRY.get(backend)
        parsed = plugin.parse(
            _merge(plugin, _file_section(config, plugin.kind), section_from_args(plugin, ctx.args))
        )
        settings = settings_with(
            actuator_metrics_bind=metrics_bind,
            actuator_metrics_port=metrics_port,
            actuator_retry_max_attempts=retry_max_attempts,
            actuator_retry_deadline=retry_deadline,
            actuator_services=service or None,
            actuator_max_decision_age=max_decision_age,
            insecure=insecure or None,
        )
        verifier = actuator_verifier(settings)
        options = HandlerOptions(
            verifier=verifier,
            scope=scope_from(settings),
            dry_run=dry_run,
            rollback_steps=rollback_steps,
            rollback_step_seconds=rollback_step_seconds,
            metrics=ActuationMetrics(registry := CollectorRegistry()),
            retry=retry_policy(settings),
        )
        insecure_gauge(registry, settings.insecure)
        handler = plugin.handler(parsed, options)
        connection = Connection(settings)
        asyncio.run(create_topics(connection))
        principal, report_signer = _report_signer(settings)
        service_loop = ActuatorService(
            handler,
            connection,
            name=name,
            metrics_port=settings.actuator_metrics_port or None,
            metrics_host=settings.actuator_metrics_bind,
            start_from="earliest" if start_from is StartFrom.earliest else "latest",
            report_signer=report_signer,
            principal=principal,
        )
    except (ConfigError, BrokerError) as exc:
        err_console().print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    warn_if_insecure(settings, "actuator", log, signed=verifier is not None)
    if report_signer is None:
        log.warning(
            "reports are not signed (CANARYSTREAM_PRINCIPAL and CANARYSTREAM_PRINCIPAL_KEY_FILE "
            "unset): the audit recorder leaves them out of the trail, this instance's fence "
            "takes in any report naming %s/%s, and a worker with an access file refuses the "
            "traffic shifts it publishes",
            handler.kind,
            name,
        )
    try:
        asyncio.run(_run(service_loop))
    except KafkaError as exc:
        err_console().print(f"[red]error:[/] kafka: {escape(str(exc))}")
        raise typer.Exit(1) from exc


def scope_from(settings: Settings) -> Scope:
    """The actuator's scope from the ``actuator_services`` and ``actuator_max_decision_age``
    settings; an error naming both ways to set it when no service is given."""
    from canarystream.actuators.config import Scope  # noqa: PLC0415

    if not settings.actuator_services:
        raise ConfigError(
            "actuator_services: this actuator has no service scope: give --service NAME "
            "(repeatable, a glob; '*' for every service) or CANARYSTREAM_ACTUATOR_SERVICES"
        )
    return Scope(
        services=settings.actuator_services,
        max_age_seconds=settings.actuator_max_decision_age,
    )


def _report_signer(settings: Settings) -> tuple[str | None, Signer | None]:
    """The actuator's principal and own key, when ``principal_key_file`` names one: it signs
    its reports (its fence trusts signed reports only) and the traffic shifts it publishes."""
    from canarystream.principals import principal_signer  # noqa: PLC0415

    if settings.principal_key_file is None:
        return None, None
    return principal_signer(settings)


def retry_policy(settings: Settings) -> RetryPolicy:
    """The actuators' retries from the ``actuator_retry_*`` settings."""
    from canarystream.actuators.executor import RetryPolicy  # noqa: PLC0415

    return RetryPolicy(
        max_attempts=settings.actuator_retry_max_attempts,
        initial_delay=settings.actuator_retry_initial_delay,
        max_delay=settings.actuator_retry_max_delay,
        multiplier=settings.actuator_retry_multiplier,
        jitter=settings.actuator_retry_jitter,
        deadline=settings.actuator_retry_deadline,
    )


def section_from_args(plugin: Plugin[Any], args: Sequence[str]) -> dict[str, Any]:
    """A backend's config section from the options after BACKEND that are not common ones:
    ``--KEY VALUE``, ``--KEY=VALUE``, ``--KEY`` (yes) or ``--no-KEY`` (no) for a yes/no key;
    a key given more than once is a list."""
    names = plugin.names()
    section: dict[str, Any] = {}
    tokens = list(args)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"{plugin.kind}: unexpected argument {token!r}")
        option, has_value, value = token[2:].partition("=")
        key = option.replace("-", "_")
        if key.startswith("no_") and key not in names and plugin.is_flag(key[3:]):
            section[key[3:]] = False
            continue
        if key not in names:
            known = ", ".join(f"--{name.replace('_', '-')}" for name in names)
            raise ConfigError(f"{plugin.kind} has no option --{option}; its options: {known}")
        if plugin.is_flag(key):
            section[key] = value if has_value else True
            continue
        if not has_value:
            if not tokens:
                raise ConfigError(f"{plugin.kind}: --{option} needs a value")
            value = tokens.pop(0)
        previous = section.get(key)
        if previous is None:
            section[key] = value
        else:
            section[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
    return section


def _merge(
    plugin: Plugin[Any], base: Mapping[str, Any], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """``base`` with the fields ``overrides`` sets replaced, whatever name either uses."""
    names = plugin.names()

    def field(key: object) -> str:
        spelled = str(key).replace("-", "_")
        return names.get(spelled, spelled)

    replaced = {field(key) for key in overrides}
    return {**{k: v for k, v in base.items() if field(k) not in replaced}, **overrides}


def _file_section(path: Path | None, kind: str) -> Mapping[str, Any]:
    """The ``kind`` section of a config file; nothing without a file."""
    from canarystream.documents import read_document  # noqa: PLC0415

    if path is None:
        return {}
    document = read_document(path, "actuator configuration", ConfigError)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: an actuator configuration is a mapping of backend sections")
    section = document.get(kind)
    if not isinstance(section, dict):
        sections = ", ".join(sorted(str(key) for key in document)) or "none"
        raise ConfigError(f"{path}: no {kind!r} section (sections: {sections})")
    return section


async def _run(service: Any) -> None:
    import asyncio  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.stop)
    await service.run()
