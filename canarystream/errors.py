"""The exception tree of canarystream.

::

    CanarystreamError
    ├── ContractError          an event does not follow the public contract
    ├── PolicyError            a policy is invalid or cannot be found
    ├── AnalysisError          a statistic was asked for something it cannot give
    ├── ConfigError            settings from env vars or files are invalid
    ├── StateFormatError       stored state is not a readable state of a known format version
    └── ActuatorError          a decision could not be carried out
        ├── RouterError
        ├── FlagError
        └── ActuationTimeoutError

Library exceptions are translated at the boundary and chained with ``from exc``.
Expected conditions, such as a cohort without data, are not errors: they are
verdicts (``inconclusive``, ``no_data``) that lead to HOLD.
"""

from __future__ import annotations

import typing as _typing

__all__ = [
    "ActuationTimeoutError",
    "ActuatorError",
    "AnalysisError",
    "BrokerError",
    "CanarystreamError",
    "ConfigError",
    "ContractError",
    "FlagError",
    "PolicyError",
    "RouterError",
    "StateFormatError",
    "field_errors",
]


class CanarystreamError(Exception):
    """Root of every error raised by canarystream."""


class ContractError(CanarystreamError):
    """An event does not follow the public contract.

    ``reason`` is a short machine-friendly code (``malformed_json``, ``invalid_field``...)
    used as a metric label and in dead-letter records; the message says what is wrong.
    """

    def __init__(self, message: str, *, reason: str = "invalid_event") -> None:
        super().__init__(message)
        self.reason = reason


class PolicyError(CanarystreamError):
    """A policy is invalid or unknown; the message names the offending field."""


class AnalysisError(CanarystreamError):
    """A statistic was asked for something it cannot give (bad parameters)."""


class ConfigError(CanarystreamError):
    """Settings from environment variables or files are invalid."""


class StateFormatError(CanarystreamError):
    """Stored state (a service's snapshot) is not a readable state of a known format version.

    Raised for a blob that is not our JSON (a pickle, garbage, truncated bytes), an unknown or
    newer version, an older version without a migration, or a field of the wrong type; the
    message names the problem. Such state is refused, never executed or half restored.
    """


class BrokerError(CanarystreamError):
    """The Kafka broker cannot be installed, started or reached."""


class ActuatorError(CanarystreamError):
    """A decision could not be carried out by an actuator backend."""


class RouterError(ActuatorError):
    """A traffic router refused or failed a weight change."""


class FlagError(ActuatorError):
    """A feature-flag service refused or failed a rollout change."""


class ActuationTimeoutError(ActuatorError):
    """An actuation did not complete before its deadline."""


def field_errors(exc: _typing.Any) -> list[tuple[str, str]]:
    """``(dotted.field.path, message)`` pairs from a pydantic ``ValidationError``.

    Used wherever validation errors become one of ours, so every message names the field
    the same way. Cross-field checks (no location) get an empty path.

    >>> from pydantic import BaseModel, ValidationError
    >>> class Stage(BaseModel):
    ...     percent: float
    >>> try:
    ...     Stage.model_validate({"percent": "lots"})
    ... except ValidationError as exc:
    ...     field_errors(exc)
    [('percent', 'Input should be a valid number, unable to parse string as a number')]
    """
    return [
        (
            ".".join(str(part) for part in error["loc"]),
            str(error["msg"]).removeprefix("Value error, "),
        )
        for error in exc.errors(include_url=False)
    ]
