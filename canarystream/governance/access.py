"""The access file: who may steer which rollouts, and with which policies.

An access file (YAML, or JSON for a ``.json`` name) lists principals with their Ed25519 public
keys and grants of actions on services::

    principals:
      deploy-bot: {public_key: keys/deploy-bot.pub}  # a path, relative to this file
      alice: {public_key: "MCowBQYDK2VwAyEA..."}     # or the key itself (PEM or base64)
    grants:
      - principals: [deploy-bot]
        actions: [start, supersede]
        services: ["*"]                          # fnmatch globs, case-sensitive
        policies: [default, "payments-*"]        # named policies it may start with
        inline_policies: false                   # whether an announcement may carry one
      - principals: [alice]
        actions: [approve, abort, pause, resume]
        services: ["checkout*"]

Nothing is allowed unless a grant allows it. :func:`load_access` raises
:class:`~canarystream.errors.ConfigError` naming the field (``grants.2.services.0: ...``).
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from canarystream.contracts.signing import Verifier
from canarystream.documents import read_document
from canarystream.errors import ConfigError, field_errors

__all__ = [
    "Access",
    "AccessFile",
    "Action",
    "Grant",
    "PrincipalEntry",
    "access_from_mapping",
    "load_access",
]


class Action(StrEnum):
    """What a grant may allow."""

    START = "start"  # announce a rollout (deployment_started)
    SUPERSEDE = "supersede"  # announce one while another of the service is live
    ABORT = "abort"
    PAUSE = "pause"
    RESUME = "resume"
    APPROVE = "approve"
    HEARTBEAT = "heartbeat"  # move a silent rollout's event time on (the worker's own)
    ROUTE = "route"  # report the routed canary share (traffic_shifted; actuators)


Name = Annotated[str, Field(min_length=1, max_length=256)]


class PrincipalEntry(BaseModel):
    """One principal: the Ed25519 public key that authenticates its messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_key: str = Field(
        min_length=1, description="PEM or base64 public key, or a file relative to this file."
    )


class Grant(BaseModel):
    """Principals that may do ``actions`` on the services matching ``services``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    principals: list[Name] = Field(min_length=1)
    actions: list[Action] = Field(min_length=1)
    services: list[Name] = Field(min_length=1, description="fnmatch globs of service names.")
    policies: list[Name] = Field(
        default_factory=list,
        description="Globs of the named policies a start may use (the default policy is "
        "named too; '*' for any).",
    )
    inline_policies: bool = Field(
        default=False, description="Whether a start may carry an inline policy object."
    )

    def covers(self, principal: str, action: Action, service: str) -> bool:
        """Whether this grant lets ``principal`` do ``action`` on ``service``."""
        return (
            principal in self.principals
            and action in self.actions
            and any(fnmatchcase(service, glob) for glob in self.services)
        )

    def allows_policy(self, policy: str | None) -> bool:
        """Whether a start may use the named policy (None: an inline policy)."""
        if policy is None:
            return self.inline_policies
        return any(fnmatchcase(policy, glob) for glob in self.policies)


class AccessFile(BaseModel):
    """The document of an access file, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=1, ge=1, le=1, description="Format version (1).")
    principals: dict[Name, PrincipalEntry] = Field(min_length=1)
    grants: list[Grant] = Field(default_factory=list)
    command_max_age_seconds: float = Field(
        default=900.0,
        gt=0,
        le=86_400,
        description="A signed command stamped longer than this before its rollout's event-time "
        "clock is refused (ts_out_of_range): an old signed command cannot be published again "
        "once the rollout has forgotten it among the commands it took.",
    )


class Access:
    """A loaded access file: each principal's verifier and the grants. Pure: no I/O."""

    def __init__(self, document: AccessFile, verifiers: dict[str, Verifier]) -> None:
        self.document = document
        self.verifiers = verifiers
        self.grants = document.grants

    def verifier(self, principal: str) -> Verifier | None:
        """The verifier of a known principal's key; None for an unknown principal."""
        return self.verifiers.get(principal)

    def allows(self, principal: str, action: Action, service: str) -> bool:
        """Whether some grant lets ``principal`` do ``action`` on ``service``."""
        return any(grant.covers(principal, action, service) for grant in self.grants)

    def allows_start(self, principal: str, service: str, policy: str | None) -> bool:
        """Whether one grant lets ``principal`` start ``service`` with the named ``policy``
        (None: an inline policy)."""
        return any(
            grant.covers(principal, Action.START, service) and grant.allows_policy(policy)
            for grant in self.grants
        )


def _key_text(value: str, base: Path, where: str) -> str:
    """The key itself: inline PEM or base64, else the content of a file relative to ``base``."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text
    try:
        if len(base64.b64decode(text, validate=True)) == 32:
            return text
    except (binascii.Error, ValueError):
        pass
    path = base / text
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"{where}: neither a PEM or base64 Ed25519 public key nor a readable file {path}: {why}"
        ) from exc


def access_from_mapping(data: Any, *, source: str = "access", base: Path = Path()) -> Access:
    """Validate a decoded access document; key paths are relative to ``base``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an access file is a mapping, got {type(data).__name__}")
    try:
        document = AccessFile.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {where or '<access>'}: {msg}" for where, msg in field_errors(exc)]
        raise ConfigError(f"{source}: invalid access file\n" + "\n".join(lines)) from exc
    problems = [
        f"  grants.{g}.principals.{p}: unknown principal {name!r} (list it under principals)"
        for g, grant in enumerate(document.grants)
        for p, name in enumerate(grant.principals)
        if name not in document.principals
    ]
    if problems:
        raise ConfigError(f"{source}: invalid access file\n" + "\n".join(problems))
    verifiers: dict[str, Verifier] = {}
    for name, entry in document.principals.items():
        where = f"principals.{name}.public_key"
        try:
            verifiers[name] = Verifier(ed25519_keys=[_key_text(entry.public_key, base, where)])
        except ConfigError as exc:
            message = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
            raise ConfigError(f"{source}: invalid access file\n  {message}") from exc
    return Access(document, verifiers)


def load_access(path: str | Path) -> Access:
    """Load and validate an access file (``.json``, else YAML)."""
    path = Path(path)
    try:
        data = read_document(path, "access file", ConfigError)
    except (RecursionError, ValueError) as exc:
        raise ConfigError(f"{path}: not an access file: {exc}") from exc
    return access_from_mapping(data, source=str(path), base=path.parent)
