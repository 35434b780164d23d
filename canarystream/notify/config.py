"""The notification file: where to send what, in which format, and how hard to try.

A YAML (or JSON) file, named by ``--config`` or ``CANARYSTREAM_NOTIFY_CONFIG``, validated
whole before anything is read; an error names the field (``routes.1.url: ...``)::

    allowed_urls: [https://hooks.slack.com/services, https://events.pagerduty.com/v2]
    routes:
      - name: shop-team
        services: ["shop*"]            # globs (fnmatch, case-sensitive)
        events: [held, rollback, rollback_not_recovering, promote]
        format: slack                  # slack, json or pagerduty
        url: https://hooks.slack.com/services/T000/B000/XXXX
      - name: oncall
        services: ["*"]
        events: [page]
        format: pagerduty
        url: https://events.pagerduty.com/v2/enqueue
        routing_key_env: PAGERDUTY_ROUTING_KEY
    retry: {max_attempts: 5, initial_delay: 0.5, max_delay: 30, deadline: 120}
    rate_limit: {per_minute: 20, burst: 10}
    dedup_window: 10000

Every route's URL must lie under one of ``allowed_urls``, compared parsed as the hook runner
does (:mod:`canarystream.actuators.allow`): scheme, host, port and whole path segments.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from canarystream.actuators.allow import AllowedUrl, parse_allowed_url, url_refusal
from canarystream.actuators.executor import RetryPolicy
from canarystream.documents import read_document
from canarystream.errors import ConfigError, field_errors
from canarystream.notify.events import EventKind

__all__ = ["NotifyConfig", "RateLimit", "Retry", "Route", "load_notify_config"]

Format = Literal["slack", "json", "pagerduty"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retry(_Model):
    """Tries of one webhook call: exponential backoff with jitter, within a deadline."""

    max_attempts: int = Field(default=5, ge=1, le=100, description="Tries, the first included.")
    initial_delay: float = Field(default=0.5, ge=0, le=3600, description="Seconds after try 1.")
    max_delay: float = Field(default=30.0, ge=0, le=3600, description="Longest wait, seconds.")
    multiplier: float = Field(default=2.0, ge=1, le=100, description="Growth of the wait.")
    jitter: float = Field(default=0.5, ge=0, le=1, description="Random fraction taken off.")
    deadline: float = Field(
        default=120.0, gt=0, le=86_400, description="Seconds after which no try starts."
    )

    def policy(self) -> RetryPolicy:
        """The same schedule as the actuators' :class:`RetryPolicy`."""
        return RetryPolicy(**self.model_dump())


class RateLimit(_Model):
    """Most notifications one route sends: a token bucket. Pages are never held back."""

    per_minute: float = Field(default=20.0, gt=0, le=60_000, description="Sustained rate.")
    burst: int = Field(default=10, ge=1, le=10_000, description="Sent at once after a quiet spell.")


class Route(_Model):
    """One destination: the services and events it takes, its format and URL."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="Names it in metrics.")
    services: list[str] = Field(min_length=1, description="Service names or globs.")
    events: list[EventKind] = Field(min_length=1, description="Events sent to this route.")
    format: Format = Field(description="slack (text and blocks), json, or pagerduty (Events v2).")
    url: str = Field(description="The webhook; under one of allowed_urls.")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="Per try.")
    routing_key: SecretStr | None = Field(
        default=None, description="pagerduty: the integration's routing key."
    )
    routing_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="pagerduty: an environment variable holding the routing key instead.",
    )

    @field_validator("services")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        for glob in value:
            if not glob or glob != glob.strip() or any(c.isspace() for c in glob):
                raise ValueError(f"{glob!r} is not a service name or glob")
        return value

    @model_validator(mode="after")
    def _routing_key(self) -> Route:
        given = [k for k in ("routing_key", "routing_key_env") if getattr(self, k) is not None]
        if self.format == "pagerduty" and len(given) != 1:
            raise ValueError("a pagerduty route needs one of routing_key or routing_key_env")
        if self.format != "pagerduty" and given:
            raise ValueError(f"{given[0]} is for pagerduty routes only")
        return self

    def takes(self, service: str) -> bool:
        """Whether this route is for ``service``."""
        return any(fnmatch.fnmatchcase(service, glob) for glob in self.services)

    def pick(self, events: list[EventKind]) -> EventKind | None:
        """The first of a decision's ``events`` (most urgent first) this route takes."""
        return next((event for event in events if event in self.events), None)

    def key(self) -> str:
        """The PagerDuty routing key (checked when the file is loaded)."""
        if self.routing_key is not None:
            return self.routing_key.get_secret_value()
        return os.environ.get(self.routing_key_env or "", "")


class NotifyConfig(_Model):
    """The whole notification file."""

    routes: list[Route] = Field(min_length=1, description="Destinations, each tried in turn.")
    allowed_urls: list[str] = Field(
        min_length=1, description="URLs the routes' webhooks must lie under (parsed)."
    )
    retry: Retry = Field(default_factory=Retry)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    dedup_window: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Decisions per partition whose ids are remembered (across restarts too), "
        "so a decision published twice notifies once.",
    )

    @field_validator("allowed_urls")
    @classmethod
    def _allowed(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_allowed_url(text)  # ValueError naming what is wrong
        return value

    @model_validator(mode="after")
    def _routes(self) -> NotifyConfig:
        allowed: list[AllowedUrl] = [parse_allowed_url(text) for text in self.allowed_urls]
        names: set[str] = set()
        for index, route in enumerate(self.routes):
            if route.name in names:
                raise ValueError(f"routes.{index}.name: {route.name!r} is used twice")
            names.add(route.name)
            if (refusal := url_refusal(route.url, allowed)) is not None:
                raise ValueError(f"routes.{index}.url: {refusal}")
            if route.routing_key_env is not None and not os.environ.get(route.routing_key_env):
                raise ValueError(
                    f"routes.{index}.routing_key_env: the environment variable "
                    f"{route.routing_key_env} is not set"
                )
        return self


def load_notify_config(path: str | Path) -> NotifyConfig:
    """Read and validate the notification file; :class:`ConfigError` naming each bad field."""
    data = read_document(path, "notification config", ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the notification config is a mapping")
    try:
        return NotifyConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {where or '<config>'}: {msg}" for where, msg in field_errors(exc)]
        raise ConfigError(f"{path}: invalid notification config\n" + "\n".join(lines)) from exc
