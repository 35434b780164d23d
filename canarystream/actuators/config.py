"""The base of every backend's configuration, and the field types they share.

A backend's configuration is one frozen pydantic model: what the registry validates a config
section against and what the backend is built from. Unknown keys are refused; an invalid
configuration is a :class:`~canarystream.errors.ConfigError` naming each field. A field may
also be read under the name of the command-line option that set it before (``socket`` for
HAProxy's ``address``): those names are its validation aliases.

>>> class Example(BackendConfig):
...     hosts: Strings
...     check: Command = ("true",)
>>> Example(hosts="a.example", check="nginx -t")
Example(hosts=('a.example',), check=('nginx', '-t'))
>>> Example(hosts=[], port=1)
Traceback (most recent call last):
...
canarystream.errors.ConfigError: Example: port: Extra inputs are not permitted
"""

from __future__ import annotations

import fnmatch
import shlex
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from canarystream.errors import ConfigError, field_errors

if TYPE_CHECKING:
    from canarystream.contracts.decision import Decision

__all__ = ["DEFAULT_MAX_AGE_SECONDS", "BackendConfig", "Command", "Scope", "Strings"]

#: Oldest decision (event time against the actuator's clock) an actuator acts on by default.
DEFAULT_MAX_AGE_SECONDS = 900.0


def _one_or_many(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


def _split_command(value: Any) -> Any:
    return tuple(shlex.split(value)) if isinstance(value, str) else value


#: Strings, one given alone standing for a list of one (a repeatable option given once).
Strings = Annotated[tuple[str, ...], BeforeValidator(_one_or_many)]
#: An argv; one string is split as a shell would split it (``"nginx -s reload"``).
Command = Annotated[tuple[str, ...], BeforeValidator(_split_command)]


class BackendConfig(BaseModel):
    """A backend's configuration: frozen, no unknown keys, errors naming the field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            errors = "; ".join(
                f"{where}: {msg}" if where else msg for where, msg in field_errors(exc)
            )
            raise ConfigError(f"{type(self).__name__}: {errors}") from exc


class Scope(BackendConfig):
    """What an actuator may act for: the services (globs) and how old a decision may be.

    There is no default scope: an actuator acts for every service only when told so with
    ``services: ["*"]``. A decision for another service, or one whose event time is more
    than ``max_age_seconds`` before the actuator's clock, is refused.

    >>> scope = Scope(services=["payments", "shop-*"])
    >>> scope.covers("shop-eu"), scope.covers("checkout")
    (True, False)
    >>> Scope(services=[])
    Traceback (most recent call last):
    ...
    canarystream.errors.ConfigError: Scope: services: no service scope: name the services this actuator acts for (globs; "*" for every service)
    """  # noqa: E501

    services: Strings = Field(
        description="Services this actuator acts for: names or globs (fnmatch, case-sensitive); "
        '"*" for every service, given explicitly.'
    )
    max_age_seconds: float = Field(
        default=DEFAULT_MAX_AGE_SECONDS,
        gt=0,
        description="Oldest decision acted on: event time against the actuator's clock, in s.",
    )

    @field_validator("services")
    @classmethod
    def _services(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(
                'no service scope: name the services this actuator acts for (globs; "*" for '
                "every service)"
            )
        for glob in value:
            if not glob or glob != glob.strip() or any(c.isspace() for c in glob):
                raise ValueError(f"{glob!r} is not a service name or glob")
        return value

    def covers(self, service: str) -> bool:
        """Whether ``service`` is one this actuator acts for."""
        return any(fnmatch.fnmatchcase(service, glob) for glob in self.services)

    def refusal(self, decision: Decision, now: float) -> tuple[str, str] | None:
        """Why ``decision`` is out of scope at ``now`` (epoch s) -- ``(detail, reason)`` --
        or None."""
        if not self.covers(decision.service):
            listed = ", ".join(self.services)
            return (
                f"refused: service {decision.service!r} is not one this actuator acts for "
                f"({listed})",
                "out_of_scope",
            )
        age = now - decision.ts
        if age > self.max_age_seconds:
            return (
                f"refused: the decision is {age:.0f} s old (event time), older than the "
                f"{self.max_age_seconds:g} s allowed",
                "stale",
            )
        return None
