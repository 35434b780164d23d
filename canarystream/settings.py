"""Service configuration from environment variables (``CANARYSTREAM_*``) and a YAML file.

Every tunable is one flat field of :class:`Settings`: its environment variable is
``CANARYSTREAM_`` plus the field's name in capitals, its key in the YAML file named by
``CANARYSTREAM_CONFIG`` the field's name. Related tunables share a prefix: ``batch_`` and
``checkpoint_`` (the worker's batches), ``web_`` (the worker's web server), ``faust_`` (Faust's
own setting of the same name, e.g. ``faust_broker_max_poll_records``), ``actuator_`` (``canarystream
actuate``: its scope, retries and ``/metrics``), ``audit_metrics_`` (``canarystream audit
record``), ``notify_`` (``canarystream notify``). Precedence: a command-line option, then the
environment, then the file, then the default. Errors name the variable, the field and where the
wrong value came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from canarystream.errors import ConfigError, field_errors

__all__ = ["ENV_PREFIX", "FAUST_PREFIX", "Settings", "load_settings"]

ENV_PREFIX = "CANARYSTREAM_"
FAUST_PREFIX = "faust_"  # faust_X is passed to faust.App as its setting X

_HOST = r"^[^\s/]+$"  # a name or an address to bind to (IPv6 without brackets)


def _config_file() -> dict[str, Any]:
    """The mapping in the file named by ``CANARYSTREAM_CONFIG`` (empty without one)."""
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


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``CANARYSTREAM_CONFIG`` (lowest precedence after defaults)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _config_file()


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
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How clients talk to the brokers: TLS (SSL), SASL authentication, both "
        "(SASL_SSL, what ``canarystream kafka up --secure`` serves) or neither.",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None,
        validate_default=True,
        description="SASL mechanism; required with a SASL_* protocol, refused without one.",
    )
    kafka_sasl_username: str | None = Field(
        default=None,
        min_length=1,
        validate_default=True,
        description="SASL user; required with a SASL_* protocol, refused without one.",
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        validate_default=True,
        description="SASL password; required with a SASL_* protocol, refused without one.",
    )
    kafka_ssl_cafile: FilePath | None = Field(
        default=None,
        validate_default=True,
        description="PEM file of the CAs that sign the brokers' certificates (default: the "
        "system's); only with SSL or SASL_SSL.",
    )
    kafka_ssl_certfile: FilePath | None = Field(
        default=None,
        validate_default=True,
        description="Client certificate (PEM) for brokers that ask for one; only with SSL or "
        "SASL_SSL.",
    )
    kafka_ssl_keyfile: FilePath | None = Field(
        default=None,
        validate_default=True,
        description="Private key (PEM) of kafka_ssl_certfile, when that file lacks it.",
    )
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
    web_bind: str = Field(
        default="127.0.0.1",
        pattern=_HOST,
        description="Address the worker's web server (metrics and status) listens on.",
    )
    web_port: int = Field(default=6066, ge=0, le=65535, description="Metrics and status port.")
    batch_max_messages: int = Field(
        default=2000, ge=1, le=100_000, description="Most messages the worker takes at once."
    )
    batch_within_seconds: float = Field(
        default=0.02,
        gt=0,
        le=60,
        description="Longest wait, in seconds, to fill a batch before taking what has come.",
    )
    checkpoint_seconds: float = Field(
        default=1.0,
        gt=0,
        le=600,
        description="Seconds between checkpoints (state stored, then offsets acknowledged).",
    )
    undelivered_after_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description=(
            "Seconds a source partition may deliver nothing while its log holds messages the "
            "worker has not processed, before the worker reads them itself."
        ),
    )
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

    # Faust's own settings (faust_X is faust.App's X); the defaults suit batched telemetry.
    faust_producer_linger_ms: int = Field(
        default=1, ge=0, le=10_000, description="Producer's wait, in ms, to fill a request."
    )
    faust_broker_session_timeout: float = Field(
        default=10.0,
        ge=1,
        le=3600,
        description="Seconds without heartbeats after which a worker's partitions move to "
        "the others (Faust's default is 60 s).",
    )
    faust_broker_heartbeat_interval: float = Field(
        default=1.0,
        gt=0,
        le=600,
        description="Seconds between consumer heartbeats; below the session timeout.",
    )
    faust_broker_commit_every: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Commit acknowledged offsets after this many messages.",
    )
    faust_broker_commit_interval: float = Field(
        default=1.0, gt=0, le=3600, description="Seconds between offset commits."
    )
    faust_stream_buffer_maxsize: int = Field(
        default=16_384,
        ge=1,
        le=10_000_000,
        description="Messages buffered for the agent before the consumer pauses.",
    )
    faust_consumer_max_fetch_size: int = Field(
        default=8 * 1024**2,
        ge=64 * 1024,
        le=1024**3,
        description="Bytes per partition fetch (telemetry arrives in messages of several kB).",
    )
    faust_broker_max_poll_records: int = Field(
        default=5000, ge=1, le=1_000_000, description="Most records one poll returns."
    )

    # Actuators (canarystream actuate): retries of a failed actuation, and /metrics.
    actuator_retry_max_attempts: int = Field(
        default=5, ge=1, le=1000, description="Tries per decision, the first included."
    )
    actuator_retry_initial_delay: float = Field(
        default=0.2, ge=0, le=3600, description="Seconds to wait after the first failed try."
    )
    actuator_retry_max_delay: float = Field(
        default=5.0, ge=0, le=3600, description="Longest wait between tries, in seconds."
    )
    actuator_retry_multiplier: float = Field(
        default=2.0, ge=1, le=100, description="Growth of the wait from one try to the next."
    )
    actuator_retry_jitter: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Largest random fraction taken off each wait, so actuators retrying "
        "one backend after an outage do not retry in step.",
    )
    actuator_retry_deadline: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="Seconds after which no further try of a decision starts.",
    )
    actuator_metrics_bind: str = Field(
        default="127.0.0.1",
        pattern=_HOST,
        description="Address an actuator's /metrics listens on (0.0.0.0: every interface).",
    )
    actuator_metrics_port: int = Field(
        default=6067, ge=0, le=65535, description="Port of an actuator's /metrics; 0: none."
    )
    actuator_services: list[str] = Field(
        default_factory=list,
        description='Services an actuator acts for: names or globs, "*" for every service '
        "(JSON list in the env var). No default: an actuator without a scope does not start.",
    )
    actuator_max_decision_age: float = Field(
        default=900.0,
        gt=0,
        le=30 * 86_400,
        description="Seconds: an actuator refuses a decision whose event time is older than "
        "this by its clock (reason stale).",
    )
    audit_metrics_bind: str = Field(
        default="127.0.0.1",
        pattern=_HOST,
        description="Address the audit recorder's /metrics listens on (0.0.0.0: every interface).",
    )
    audit_metrics_port: int = Field(
        default=6068, ge=0, le=65535, description="Port of the audit recorder's /metrics; 0: none."
    )
    audit_actuator_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Audit recorder: each actuator instance (kind/name, as its reports name "
        "it) and its Ed25519 public key (PEM or base64; the actuator signs its reports with "
        "the private key of principal_key_file). Reports of other instances are left out of "
        "the trail (JSON object).",
    )

    # The notifier (canarystream notify): its routes file and its /metrics.
    notify_config: Path | None = Field(
        default=None,
        description="The notification file of ``canarystream notify`` (routes, formats, "
        "retries, rate limit, allowed URLs).",
    )
    notify_metrics_bind: str = Field(
        default="127.0.0.1",
        pattern=_HOST,
        description="Address the notifier's /metrics listens on (0.0.0.0: every interface).",
    )
    notify_metrics_port: int = Field(
        default=6069, ge=0, le=65535, description="Port of the notifier's /metrics; 0: none."
    )

    # Decision signatures (HMAC-SHA256 with a shared key, or Ed25519).
    signing_scheme: Literal["none", "hmac-sha256", "ed25519"] = Field(
        default="ed25519",
        description="How the worker signs decisions and actuators verify them; none only "
        "with insecure.",
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description="Worker: the HMAC secret, or the Ed25519 private key (PEM or base64; "
        "`canarystream keys generate worker` makes one). Required unless insecure.",
    )
    verify_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Actuators and the audit recorder: the worker's trusted HMAC secrets or "
        "Ed25519 public keys (JSON list); required unless insecure.",
    )

    # Who runs a command (canarystream approve|abort|pause|resume), and with which key.
    principal: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9._@-]{0,127}$",
        description="The caller's principal name, as the access file lists it.",
    )
    principal_key_file: Path | None = Field(
        default=None,
        description="The caller's Ed25519 private key (PEM; `canarystream keys generate`).",
    )
    access_file: Path | None = Field(
        default=None,
        description="Worker and replay: the access file (who may steer which rollouts); "
        "announcements, commands and heartbeats are then authenticated and authorised. "
        "Required by the worker unless insecure; replay without it judges plain recordings.",
    )
    worker_principal: str = Field(
        default="worker",
        pattern=r"^[a-z0-9][a-z0-9._@-]{0,127}$",
        description="The worker's principal: its heartbeats are signed as it with signing_key.",
    )
    insecure: bool = Field(
        default=False,
        description="Run without signatures or an access file (local drills only): the worker "
        "publishes unsigned decisions and obeys unsigned announcements and commands, and "
        "actuators act on unsigned decisions; every start says so loudly.",
    )

    @field_validator("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
    @classmethod
    def _sasl_only_with_sasl(cls, value: Any, info: ValidationInfo) -> Any:
        protocol = info.data.get("kafka_security_protocol")
        if protocol is None:  # itself invalid, and reported
            return value
        given = value is not None and (
            value.get_secret_value() if isinstance(value, SecretStr) else value
        )
        if protocol.startswith("SASL") and not given:
            raise ValueError(f"required with kafka_security_protocol={protocol}")
        if not protocol.startswith("SASL") and value is not None:
            raise ValueError(
                f"not used with kafka_security_protocol={protocol}: set it to SASL_SSL "
                "(or SASL_PLAINTEXT), or unset this one"
            )
        return value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _tls_files_only_with_tls(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        protocol = info.data.get("kafka_security_protocol")
        if value is not None and protocol is not None and not protocol.endswith("SSL"):
            raise ValueError(
                f"not used with kafka_security_protocol={protocol}: set it to SSL or SASL_SSL, "
                "or unset this one"
            )
        certfile = info.data.get("kafka_ssl_certfile", ...)  # ... when itself invalid
        if info.field_name == "kafka_ssl_keyfile" and value is not None and certfile is None:
            raise ValueError("needs kafka_ssl_certfile, the certificate of this key")
        return value

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if self.faust_broker_heartbeat_interval >= self.faust_broker_session_timeout:
            raise ValueError(
                f"faust_broker_heartbeat_interval={self.faust_broker_heartbeat_interval:g} must "
                f"be below faust_broker_session_timeout={self.faust_broker_session_timeout:g}"
            )
        return self

    def faust_options(self) -> dict[str, Any]:
        """The ``faust_*`` fields as :class:`faust.App` settings (prefix removed)."""
        return {
            name.removeprefix(FAUST_PREFIX): getattr(self, name)
            for name in type(self).model_fields
            if name.startswith(FAUST_PREFIX)
        }

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


def _source(field: str, overrides: dict[str, Any]) -> str:
    """Where the value of ``field`` came from, in the order of precedence."""
    if field in overrides:
        return "from an option"
    if f"{ENV_PREFIX}{field.upper()}" in os.environ or (
        field == "kafka_bootstrap" and "KAFKA_BOOTSTRAP" in os.environ
    ):
        return "from the environment"
    try:
        in_file = field in _config_file()
    except ConfigError:
        in_file = False
    if in_file:
        return f"from {os.environ[f'{ENV_PREFIX}CONFIG']}"
    return "by default"


def _where(field: str, overrides: dict[str, Any]) -> str:
    """``CANARYSTREAM_FIELD (field, from ...)`` for a field, or the check's name."""
    top = field.partition(".")[0]
    if not top:
        return "settings"
    return f"{ENV_PREFIX}{top.upper()} ({field}, {_source(top, overrides)})"


def load_settings(**overrides: Any) -> Settings:
    """Build :class:`Settings` (``overrides``, e.g. command-line options, first), translating
    validation errors into :class:`ConfigError` that name the field and its source."""
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        # Raised before validation, e.g. a list variable that is not JSON.
        field = str(exc).split('"')[1] if '"' in str(exc) else "?"
        raise ConfigError(
            f"invalid settings\n  {ENV_PREFIX}{field.upper()} ({field}, from the environment): "
            f"not valid JSON ({exc.__cause__ or exc})"
        ) from exc
    except ValidationError as exc:
        lines = [f"  {_where(field, overrides)}: {msg}" for field, msg in field_errors(exc)]
        raise ConfigError("invalid settings\n" + "\n".join(lines)) from exc
