"""The registry of actuator backends: kind -> configuration model and handler constructor.

``canarystream actuate BACKEND`` looks BACKEND up here, validates the backend's config section
against its model, and builds the handler the service loop drives. Adding a backend is one
module (its config model and its :class:`~canarystream.actuators.base.TrafficBackend`) plus
one :class:`Plugin` below; nothing else branches on the kind.

>>> REGISTRY.get("haproxy").config.__name__
'HAProxyConfig'
>>> REGISTRY.get("envoy")
Traceback (most recent call last):
...
canarystream.errors.ConfigError: unknown backend 'envoy'; known: flagd, gateway-api, haproxy, hooks, memory, nginx, unleash
"""  # noqa: E501

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import AliasChoices, BaseModel, ValidationError

from canarystream.actuators.base import Handler, TrafficBackend
from canarystream.actuators.config import Scope
from canarystream.actuators.executor import Actuator, RetryPolicy
from canarystream.actuators.flags.flagd import FlagdConfig, FlagdProvider
from canarystream.actuators.flags.unleash import UnleashConfig, UnleashProvider
from canarystream.actuators.hooks import HookActuator, HookRunner, HookRunnerConfig
from canarystream.actuators.metrics import ActuationMetrics
from canarystream.actuators.routers.gateway_api import GatewayApiFileConfig, file_router
from canarystream.actuators.routers.haproxy import HAProxyConfig, HAProxyRouter
from canarystream.actuators.routers.memory import MemoryConfig, MemoryRouter
from canarystream.actuators.routers.nginx import NginxConfig, NginxRouter
from canarystream.contracts.signing import Verifier
from canarystream.errors import ConfigError, field_errors

__all__ = ["REGISTRY", "HandlerOptions", "Plugin", "Registry", "traffic"]

C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class HandlerOptions:
    """What every handler is built with, whatever its backend (the command's common options)."""

    verifier: Verifier | None
    scope: Scope  # the services acted for, and the oldest decision acted on
    dry_run: bool = False
    rollback_steps: int = 1
    rollback_step_seconds: float = 0.0
    metrics: ActuationMetrics | None = None
    retry: RetryPolicy | None = None  # traffic backends; None: RetryPolicy's defaults


@dataclass(frozen=True, slots=True)
class Plugin(Generic[C]):
    """One backend: its kind, its configuration model, and how to build its handler.

    ``env`` names environment variables that fill a field the section leaves out (secrets
    better kept off command lines).
    """

    kind: str
    config: type[C]
    handler: Callable[[C, HandlerOptions], Handler]
    summary: str
    env: Mapping[str, str] = field(default_factory=dict)

    def names(self) -> dict[str, str]:
        """Every key a section may use (field names and their aliases) -> the field's name."""
        names: dict[str, str] = {}
        for name, info in self.config.model_fields.items():
            names[name] = name
            alias = info.validation_alias
            for choice in alias.choices if isinstance(alias, AliasChoices) else ():
                if isinstance(choice, str):
                    names[choice] = name
        return names

    def is_flag(self, key: str) -> bool:
        """Whether ``key`` (a field name or alias) is a boolean: an option without a value."""
        name = self.names().get(key.replace("-", "_"))
        return name is not None and self.config.model_fields[name].annotation is bool

    def parse(self, section: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> C:
        """Validate a config section (keys may be written with ``-`` or ``_``, under a field's
        name or an alias); errors name each field."""
        names = self.names()
        values: dict[str, Any] = {}
        given: dict[str, str] = {}
        problems: list[str] = []
        for key, value in section.items():
            spelled = str(key).replace("-", "_")
            name = names.get(spelled)
            if name is None:
                keys = ", ".join(self.config.model_fields) or "none"
                problems.append(f"{spelled}: not a key of {self.kind} (its keys: {keys})")
            elif name in values:
                problems.append(f"{name}: given twice (as {given[name]} and {spelled})")
            else:
                values[name], given[name] = value, spelled
        environ = os.environ if environ is None else environ
        for name, variable in self.env.items():
            if name not in values and environ.get(variable):
                values[name] = environ[variable]
        if not problems:
            try:
                return self.config.model_validate(values)
            except (ValidationError, ConfigError) as exc:
                # A BackendConfig turns its ValidationError into a ConfigError (from it).
                cause = exc if isinstance(exc, ValidationError) else exc.__cause__
                if not isinstance(cause, ValidationError):
                    raise
                problems = [self._explain(where, msg) for where, msg in field_errors(cause)]
        raise ConfigError(f"{self.kind}: invalid configuration\n  " + "\n  ".join(problems))

    def build(
        self,
        section: Mapping[str, Any],
        options: HandlerOptions,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> Handler:
        """The handler of this backend, configured by ``section``."""
        return self.handler(self.parse(section, environ=environ), options)

    def _explain(self, where: str, message: str) -> str:
        if not where:
            return message
        if message == "Field required":
            names = self.names().items()
            ways = [f"--{key.replace('_', '-')}" for key, name in names if name == where]
            if where in self.env:
                ways.append(self.env[where])
            message = f"{message} ({' or '.join(ways)})"
        return f"{where}: {message}"


class Registry:
    """Plugins by kind; an unknown kind is an error that lists the known ones."""

    def __init__(self, plugins: Iterable[Plugin[Any]] = ()) -> None:
        self._plugins: dict[str, Plugin[Any]] = {}
        for plugin in plugins:
            self.add(plugin)

    def add(self, plugin: Plugin[Any]) -> None:
        """Register ``plugin``; its kind must be new."""
        if plugin.kind in self._plugins:
            raise ValueError(f"backend {plugin.kind!r} is registered already")
        self._plugins[plugin.kind] = plugin

    def kinds(self) -> list[str]:
        """The registered kinds, sorted."""
        return sorted(self._plugins)

    def get(self, kind: str) -> Plugin[Any]:
        """The plugin of ``kind``."""
        try:
            return self._plugins[kind]
        except KeyError:
            known = ", ".join(self.kinds()) or "none"
            raise ConfigError(f"unknown backend {kind!r}; known: {known}") from None

    def __iter__(self) -> Iterator[Plugin[Any]]:
        return iter(self._plugins[kind] for kind in self.kinds())


def traffic(backend: Callable[[C], TrafficBackend]) -> Callable[[C, HandlerOptions], Handler]:
    """The handler constructor of a traffic backend: an
    :class:`~canarystream.actuators.executor.Actuator` around ``backend(config)``."""

    def build(config: C, options: HandlerOptions) -> Handler:
        return Actuator(
            backend(config),
            verifier=options.verifier,
            scope=options.scope,
            dry_run=options.dry_run,
            metrics=options.metrics,
            rollback_steps=options.rollback_steps,
            rollback_step_seconds=options.rollback_step_seconds,
            retry=options.retry,
        )

    return build


def _hooks(config: HookRunnerConfig, options: HandlerOptions) -> Handler:
    if options.rollback_steps != 1:
        raise ConfigError(
            "rollback_steps: hooks set no traffic share, so there is no gradual rollback"
        )
    return HookActuator(
        HookRunner(config),
        verifier=options.verifier,
        scope=options.scope,
        dry_run=options.dry_run,
        metrics=options.metrics,
    )


REGISTRY = Registry(
    [
        Plugin(
            "haproxy",
            HAProxyConfig,
            traffic(HAProxyRouter),
            "Set baseline/canary server weights through HAProxy's Runtime API.",
        ),
        Plugin(
            "nginx",
            NginxConfig,
            traffic(NginxRouter),
            "Rewrite a weighted NGINX upstream file and reload NGINX.",
        ),
        Plugin(
            "gateway-api",
            GatewayApiFileConfig,
            traffic(file_router),
            "Write the Kubernetes HTTPRoute with the canary's weight to a file (for kubectl "
            "apply -f or a GitOps commit); read back from it.",
        ),
        Plugin(
            "unleash",
            UnleashConfig,
            traffic(UnleashProvider),
            "Set the gradual-rollout percentage of each service's canary toggle in Unleash.",
            env={"admin_token": "CANARYSTREAM_UNLEASH_ADMIN_TOKEN"},
        ),
        Plugin(
            "flagd",
            FlagdConfig,
            traffic(FlagdProvider),
            "Write a fractional rollout into the flag file flagd watches; read back over OFREP.",
        ),
        Plugin(
            "hooks",
            HookRunnerConfig,
            _hooks,
            "Run each rollback's compensation hooks once, in order (commands and webhooks); "
            "a hook that fails stops the rest; nothing is retried.",
        ),
        Plugin(
            "memory",
            MemoryConfig,
            traffic(MemoryRouter),
            "Keep the shares in the process, moving no traffic (drills).",
        ),
    ]
)
