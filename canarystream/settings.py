"""Service configuration from environment variables (``CANARYSTREAM_*``) and a YAML file.

The file is named by ``CANARYSTREAM_CONFIG``; environment variables override it. Errors say
which variable or file key is wrong and why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from canarystream.errors import ConfigError, field_errors

__all__ = ["ENV_PREFIX", "Settings", "load_settings"]

ENV_PREFIX = "CANARYSTREAM_"


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``CANARYSTREAM_CONFIG`` (lowest precedence after defaults)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get(f"{ENV_PREFIX}CONFIG")
        if not path:
            return {}
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"{ENV_PREFIX}CONFIG={path}: cannot read: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{ENV_PREFIX}CONFIG={path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{ENV_PREFIX}CONFIG={path}: expected a mapping of settings")
        return data


class Settings(BaseSettings):
    """Settings shared by the CLI and the services."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    policies: list[Path] = Field(
        default_factory=list,
        description="Policy files or directories (JSON list in the env var).",
    )
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    # Kafka: unset bootstrap means the local broker of ``canarystream kafka up``.
    kafka_bootstrap: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "kafka_bootstrap", "KAFKA_BOOTSTRAP", f"{ENV_PREFIX}KAFKA_BOOTSTRAP"
        ),
        pattern=r"^[^\s,]+:\d+(,[^\s,]+:\d+)*$",
        description="host:port[,host:port...] of an existing cluster (env KAFKA_BOOTSTRAP).",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    topic_prefix: str = Field(
        default="",
        pattern=r"^([a-z0-9][a-z0-9._-]*\.)?$",
        description="Prepended to every topic name (isolates tests and environments).",
    )

    # The worker.
    app_id: str = Field(
        default="canarystream",
        pattern=r"^[a-z][a-z0-9._-]*$",
        description="Consumer group and prefix of the worker's changelog topics.",
    )
    web_port: int = Field(default=6066, ge=0, le=65535, description="Metrics and status port.")
    data_dir: Path = Field(
        default=Path(".canarystream"), description="Worker's local state (table stores)."
    )
    publish_deadline_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="How long the worker retries publishing a batch's decisions before it "
        "exits (code 75) so that a restart derives them again from its last checkpoint.",
    )
    heartbeat_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Wall seconds between the worker's heartbeats for idle rollouts.",
    )
    idle_after_seconds: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="Wall seconds without telemetry after which a rollout gets heartbeats.",
    )
    deployment_tombstone_ttl: float = Field(
        default=7 * 86_400.0,
        ge=0,
        le=3650 * 86_400.0,
        description="Event-time seconds a finished deployment id stays known after its end, "
        "so a re-sent announcement of it is not started again (replay uses the same).",
    )

    # Decision signatures (HMAC-SHA256 with a shared key, or Ed25519).
    signing_scheme: Literal["none", "hmac-sha256", "ed25519"] = Field(
        default="none",
        description="How the worker signs decisions and actuators verify them.",
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description="Worker: the HMAC secret, or the Ed25519 private key (PEM or base64).",
    )
    verify_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Actuators: trusted HMAC secrets or Ed25519 public keys (JSON list).",
    )

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL")
        if sasl and not (self.kafka_sasl_mechanism and self.kafka_sasl_username):
            raise ValueError(
                f"kafka_security_protocol={self.kafka_security_protocol} needs "
                "kafka_sasl_mechanism and kafka_sasl_username (and kafka_sasl_password)"
            )
        if self.signing_scheme != "none" and self.signing_key is None and not self.verify_keys:
            raise ValueError(
                f"signing_scheme={self.signing_scheme} needs signing_key (worker) or "
                "verify_keys (actuators)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls))


def load_settings(**overrides: Any) -> Settings:
    """Build :class:`Settings`, translating validation errors into :class:`ConfigError`."""
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        # Raised before validation, e.g. a list variable that is not JSON.
        field = str(exc).split('"')[1] if '"' in str(exc) else "?"
        raise ConfigError(
            f"invalid settings\n  {ENV_PREFIX}{field.upper()} ({field}): not valid JSON "
            f"({exc.__cause__ or exc})"
        ) from exc
    except ValidationError as exc:
        lines = [
            f"  {ENV_PREFIX}{field.upper()} ({field}): {msg}" for field, msg in field_errors(exc)
        ]
        raise ConfigError("invalid settings\n" + "\n".join(lines)) from exc
