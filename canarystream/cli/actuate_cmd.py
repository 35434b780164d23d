"""``canarystream actuate haproxy | nginx | gateway-api | unleash | hooks``: carry decisions out.

Routers and flag providers are driven by one :class:`~canarystream.actuators.executor.Actuator`;
``hooks`` runs rollbacks' compensation hooks with a
:class:`~canarystream.actuators.hooks.HookActuator` behind the same service loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.markup import escape

from canarystream.actuators.base import FlagProvider, Router
from canarystream.actuators.executor import Actuator
from canarystream.actuators.flags.unleash import UnleashConfig, UnleashProvider
from canarystream.actuators.hooks import HookActuator, HookRunner, HookRunnerConfig
from canarystream.actuators.metrics import ActuationMetrics
from canarystream.actuators.routers.gateway_api import (
    GatewayApiConfig,
    GatewayApiRouter,
    KubeObject,
    to_yaml,
)
from canarystream.actuators.routers.haproxy import HAProxyConfig, HAProxyRouter
from canarystream.actuators.routers.nginx import NginxConfig, NginxRouter
from canarystream.cli.app import app
from canarystream.contracts.signing import Verifier, verifier_from
from canarystream.errors import BrokerError, ConfigError
from canarystream.kafka.admin import create_topics
from canarystream.kafka.connection import Connection
from canarystream.settings import load_settings

__all__: list[str] = []

actuate_app = typer.Typer(
    help="Carry out decisions on a traffic router or flag service, or run rollbacks' "
    "compensation hooks, reporting on canary.actuations.v1 "
    "(blocks; SIGTERM stops it). Signatures: CANARYSTREAM_SIGNING_SCHEME and "
    "CANARYSTREAM_VERIFY_KEYS.",
    no_args_is_help=True,
)
app.add_typer(actuate_app, name="actuate")

_err = Console(stderr=True, soft_wrap=True)

# Options every backend takes.
Name = Annotated[
    str,
    typer.Option(
        help="Instance name; with the backend it names the consumer group. Instances that "
        "drive different routers need different names."
    ),
]
Services = Annotated[
    list[str] | None,
    typer.Option("--service", help="Act only for this service (repeatable). Default: all."),
]
DryRun = Annotated[bool, typer.Option(help="Report what would be done; change nothing.")]
MetricsPort = Annotated[int, typer.Option(help="Port of /metrics (Prometheus); 0: none.")]
RollbackSteps = Annotated[
    int, typer.Option(min=1, help="Step a rollback down to 0 in this many steps; 1: at once.")
]
RollbackStepSeconds = Annotated[
    float, typer.Option(min=0.0, help="Seconds between the steps of a gradual rollback.")
]


class StartFrom(StrEnum):
    """Where a consumer group without committed offsets starts reading."""

    latest = "latest"
    earliest = "earliest"


StartFromOption = Annotated[
    StartFrom, typer.Option(help="Where a new consumer group starts reading the decisions.")
]
AllowUnsigned = Annotated[
    bool,
    typer.Option(
        help="Act on unsigned decisions when no signing scheme is configured (local drills "
        "only: anyone who can write to the topic could then move traffic)."
    ),
]
TotalWeight = Annotated[int, typer.Option(help="The two weights sum to this.")]


@dataclass(frozen=True)
class _Common:
    name: str
    services: list[str]
    dry_run: bool
    metrics_port: int
    rollback_steps: int
    rollback_step_seconds: float
    start_from: StartFrom
    allow_unsigned: bool


@actuate_app.command("haproxy")
def actuate_haproxy(
    *,
    socket: Annotated[
        str, typer.Option(help="Runtime API (level admin): a unix socket path or host:port.")
    ],
    backend: Annotated[str, typer.Option(help="HAProxy backend holding both servers.")],
    baseline_server: Annotated[str, typer.Option(help="Server of the baseline.")],
    canary_server: Annotated[str, typer.Option(help="Server of the canary.")],
    total_weight: TotalWeight = 100,
    drain: Annotated[
        bool,
        typer.Option(
            help="On rollback also put the canary server in drain state: sticky sessions "
            "finish, no new ones start."
        ),
    ] = False,
    name: Name = "default",
    service: Services = None,
    dry_run: DryRun = False,
    metrics_port: MetricsPort = 6067,
    rollback_steps: RollbackSteps = 1,
    rollback_step_seconds: RollbackStepSeconds = 30.0,
    start_from: StartFromOption = StartFrom.latest,
    allow_unsigned: AllowUnsigned = False,
) -> None:
    """Set baseline/canary server weights through HAProxy's Runtime API."""
    common = _Common(**_common(locals()))
    _serve(
        lambda: HAProxyRouter(
            HAProxyConfig(
                address=socket,
                backend=backend,
                baseline_server=baseline_server,
                canary_server=canary_server,
                total_weight=total_weight,
                drain=drain,
            )
        ),
        common,
    )


@actuate_app.command("nginx")
def actuate_nginx(
    *,
    upstream_file: Annotated[Path, typer.Option(help="Upstream file the NGINX config includes.")],
    upstream: Annotated[str, typer.Option(help="Name of the upstream block.")],
    baseline_server: Annotated[str, typer.Option(help="Baseline address (host:port).")],
    canary_server: Annotated[str, typer.Option(help="Canary address (host:port).")],
    reload_command: Annotated[
        str, typer.Option(help="Makes NGINX load the file (split like a shell would).")
    ] = "nginx -s reload",
    check_command: Annotated[
        str | None, typer.Option(help="Checks the config first, e.g. 'nginx -t'.")
    ] = None,
    total_weight: TotalWeight = 100,
    name: Name = "default",
    service: Services = None,
    dry_run: DryRun = False,
    metrics_port: MetricsPort = 6067,
    rollback_steps: RollbackSteps = 1,
    rollback_step_seconds: RollbackStepSeconds = 30.0,
    start_from: StartFromOption = StartFrom.latest,
    allow_unsigned: AllowUnsigned = False,
) -> None:
    """Rewrite a weighted NGINX upstream file and reload NGINX."""
    common = _Common(**_common(locals()))
    _serve(
        lambda: NginxRouter(
            NginxConfig(
                path=upstream_file,
                upstream=upstream,
                baseline_server=baseline_server,
                canary_server=canary_server,
                reload_command=tuple(shlex.split(reload_command)),
                check_command=tuple(shlex.split(check_command)) if check_command else None,
                total_weight=total_weight,
            )
        ),
        common,
    )


@actuate_app.command("gateway-api")
def actuate_gateway_api(
    *,
    out: Annotated[Path, typer.Option(help="Write the rendered HTTPRoute here (YAML).")],
    route: Annotated[str, typer.Option(help="HTTPRoute name.")],
    gateway: Annotated[str, typer.Option(help="Parent Gateway name.")],
    baseline_service: Annotated[str, typer.Option(help="Kubernetes Service of the baseline.")],
    canary_service: Annotated[str, typer.Option(help="Kubernetes Service of the canary.")],
    service_port: Annotated[int, typer.Option(help="Port both Services serve on.")],
    namespace: Annotated[str, typer.Option(help="Namespace of the route.")] = "default",
    gateway_namespace: Annotated[
        str | None, typer.Option(help="Namespace of the Gateway, if not the route's.")
    ] = None,
    hostname: Annotated[
        list[str] | None, typer.Option(help="Hostname the route matches (repeatable).")
    ] = None,
    total_weight: TotalWeight = 100,
    name: Name = "default",
    service: Services = None,
    dry_run: DryRun = False,
    metrics_port: MetricsPort = 6067,
    rollback_steps: RollbackSteps = 1,
    rollback_step_seconds: RollbackStepSeconds = 30.0,
    start_from: StartFromOption = StartFrom.latest,
    allow_unsigned: AllowUnsigned = False,
) -> None:
    """Write the HTTPRoute with the canary's weight to a file (read back from it too).

    For ``kubectl apply -f`` or a GitOps commit of the file.
    """
    common = _Common(**_common(locals()))

    def build() -> GatewayApiRouter:
        config = GatewayApiConfig(
            route=route,
            gateway=gateway,
            baseline_service=baseline_service,
            canary_service=canary_service,
            port=service_port,
            namespace=namespace,
            gateway_namespace=gateway_namespace,
            hostnames=tuple(hostname or ()),
            total_weight=total_weight,
        )
        return GatewayApiRouter(config, apply=_file_writer(out), get=_file_reader(out))

    _serve(build, common)


@actuate_app.command("unleash")
def actuate_unleash(
    *,
    url: Annotated[str, typer.Option(help="Unleash base URL, e.g. http://127.0.0.1:4242.")],
    admin_token: Annotated[
        str,
        typer.Option(
            envvar="CANARYSTREAM_UNLEASH_ADMIN_TOKEN",
            show_default=False,
            help="Admin API token (prefer the environment variable: a command line is "
            "visible to every user of the machine).",
        ),
    ],
    project: Annotated[str, typer.Option(help="Project holding the toggles.")] = "default",
    environment: Annotated[
        str, typer.Option(help="Environment whose strategy carries the canary share.")
    ] = "development",
    feature: Annotated[
        str, typer.Option(help="Toggle name; '{service}' stands for the decision's service.")
    ] = "{service}-canary",
    stickiness: Annotated[
        str, typer.Option(help="Context field that buckets users ('default': user id, ...).")
    ] = "default",
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per Admin API request.")] = 5.0,
    name: Name = "default",
    service: Services = None,
    dry_run: DryRun = False,
    metrics_port: MetricsPort = 6067,
    rollback_steps: RollbackSteps = 1,
    rollback_step_seconds: RollbackStepSeconds = 30.0,
    start_from: StartFromOption = StartFrom.latest,
    allow_unsigned: AllowUnsigned = False,
) -> None:
    """Set the gradual-rollout percentage of each service's canary toggle in Unleash."""
    common = _Common(**_common(locals()))
    _serve(
        lambda: UnleashProvider(
            UnleashConfig(
                url=url,
                admin_token=admin_token,
                project=project,
                environment=environment,
                feature=feature,
                stickiness=stickiness,
                timeout=timeout,
            )
        ),
        common,
    )


@actuate_app.command("hooks")
def actuate_hooks(
    *,
    allow_program: Annotated[
        list[str] | None,
        typer.Option(
            help="Commands whose argv[0] is exactly this may run (repeatable). Nothing runs "
            "that is not allowed: hooks come from unsigned deployment announcements."
        ),
    ] = None,
    allow_any_hook: Annotated[
        bool,
        typer.Option(help="Run every hook, allowed or not (only if announcements are trusted)."),
    ] = False,
    allow_url_prefix: Annotated[
        list[str] | None,
        typer.Option(help="Only webhooks under this URL prefix may be called (repeatable)."),
    ] = None,
    max_seconds: Annotated[
        float, typer.Option(min=1.0, help="Longest all hooks of one rollback may take together.")
    ] = 3600.0,
    name: Name = "default",
    service: Services = None,
    dry_run: DryRun = False,
    metrics_port: MetricsPort = 6067,
    start_from: StartFromOption = StartFrom.latest,
    allow_unsigned: AllowUnsigned = False,
) -> None:
    """Run each rollback's compensation hooks once, in order (commands and webhooks).

    A hook that fails stops the rest; the report names what each did. Nothing is retried.
    """
    options = {**locals(), "rollback_steps": 1, "rollback_step_seconds": 0.0}
    common = _Common(**_common(options))

    def build(verifier: Verifier | None) -> HookActuator:
        config = HookRunnerConfig(
            programs=tuple(allow_program or ()),
            url_prefixes=tuple(allow_url_prefix or ()),
            allow_any=allow_any_hook,
        )
        return HookActuator(
            HookRunner(config),
            verifier=verifier,
            dry_run=common.dry_run,
            metrics=ActuationMetrics(CollectorRegistry()),
            max_seconds=max_seconds,
        )

    _serve_actuator(build, common)


def _common(options: dict[str, Any]) -> dict[str, Any]:
    values = {field: options[field] for field in _Common.__dataclass_fields__ if field in options}
    values["services"] = list(options["service"] or [])
    return values


def _file_writer(path: Path) -> Any:
    def write(obj: KubeObject) -> None:
        # Beside the target, then renamed: a reader never sees half a route.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(to_yaml(obj))
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    return write


def _file_reader(path: Path) -> Any:
    def read() -> KubeObject | None:
        if not path.exists():
            return None
        loaded = yaml.safe_load(path.read_text("utf-8"))
        return loaded if isinstance(loaded, dict) else None

    return read


def _serve(build: Any, common: _Common) -> None:
    """Build the router or flag provider and run the service until SIGTERM or SIGINT."""

    def actuator(verifier: Verifier | None) -> Actuator:
        backend: Router | FlagProvider = build()
        return Actuator(
            backend,
            verifier=verifier,
            dry_run=common.dry_run,
            metrics=ActuationMetrics(CollectorRegistry()),
            rollback_steps=common.rollback_steps,
            rollback_step_seconds=common.rollback_step_seconds,
        )

    _serve_actuator(actuator, common)


def _serve_actuator(build: Any, common: _Common) -> None:
    """Build the actuator (given the verifier) and run the service until SIGTERM or SIGINT."""
    from canarystream.actuators.service import ActuatorService  # noqa: PLC0415  (aiokafka)

    try:
        settings = load_settings()
        verifier = verifier_from(settings)
        if verifier is None and not common.allow_unsigned:
            raise ConfigError(
                "no signing scheme is configured (CANARYSTREAM_SIGNING_SCHEME, "
                "CANARYSTREAM_VERIFY_KEYS): refusing to act on unsigned decisions "
                "without --allow-unsigned"
            )
        actuator = build(verifier)
        connection = Connection(settings)
        asyncio.run(create_topics(connection))
        service = ActuatorService(
            actuator,
            connection,
            name=common.name,
            services=common.services,
            metrics_port=common.metrics_port or None,
            start_from="earliest" if common.start_from is StartFrom.earliest else "latest",
        )
    except (ConfigError, BrokerError) as exc:
        _err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(_run(service))
    except KafkaError as exc:
        _err.print(f"[red]error:[/] kafka: {escape(str(exc))}")
        raise typer.Exit(1) from exc


async def _run(service: Any) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.stop)
    await service.run()
