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

import shlex
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from canarystream.errors import ConfigError, field_errors

__all__ = ["BackendConfig", "Command", "Strings"]


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
