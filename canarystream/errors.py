"""The exception tree of canarystream.

::

    CanarystreamError
    ├── ContractError          an event does not follow the public contract
    ├── PolicyError            a policy is invalid or cannot be found
    ├── AnalysisError          a statistic was asked for something it cannot give
    ├── ConfigError            settings from env vars or files are invalid
    └── ActuatorError          a decision could not be carried out
        ├── RouterError
        ├── FlagError
        └── ActuationTimeoutError

Library exceptions are translated at the boundary and chained with ``from exc``.
Expected conditions, such as a cohort without data, are not errors: they are
verdicts (``inconclusive``, ``no_data``) that lead to HOLD.
"""

from __future__ import annotations

__all__ = [
    "ActuationTimeoutError",
    "ActuatorError",
    "AnalysisError",
    "CanarystreamError",
    "ConfigError",
    "ContractError",
    "FlagError",
    "PolicyError",
    "RouterError",
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


class ActuatorError(CanarystreamError):
    """A decision could not be carried out by an actuator backend."""


class RouterError(ActuatorError):
    """A traffic router refused or failed a weight change."""


class FlagError(ActuatorError):
    """A feature-flag service refused or failed a rollout change."""


class ActuationTimeoutError(ActuatorError):
    """An actuation did not complete before its deadline."""
