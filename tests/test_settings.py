"""Settings: env vars over an optional YAML file, with errors that name the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from canarystream.errors import ConfigError
from canarystream.settings import Settings, load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANARYSTREAM_CONFIG", raising=False)
    settings = load_settings()
    assert settings.policies == [] and settings.log_level == "INFO"


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "canarystream.yaml"
    config.write_text("policies: [deploy/policies]\nlog_level: DEBUG\n")
    monkeypatch.setenv("CANARYSTREAM_CONFIG", str(config))
    monkeypatch.setenv("CANARYSTREAM_LOG_LEVEL", "ERROR")
    settings = load_settings()
    assert settings.policies == [Path("deploy/policies")]
    assert settings.log_level == "ERROR"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CANARYSTREAM_LOG_LEVEL": "LOUD"}, "CANARYSTREAM_LOG_LEVEL"),
        ({"CANARYSTREAM_POLICIES": "[1, {}]"}, "CANARYSTREAM_POLICIES"),
        (
            {"CANARYSTREAM_POLICIES": "not json"},
            r"CANARYSTREAM_POLICIES \(policies, from the environment\): not valid JSON",
        ),
    ],
)
def test_errors_name_the_variable(
    env: dict[str, str], needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CANARYSTREAM_CONFIG", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=needle):
        load_settings()


def test_unreadable_or_invalid_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARYSTREAM_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings()
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    monkeypatch.setenv("CANARYSTREAM_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="mapping"):
        load_settings()
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("polices: []\n")
    monkeypatch.setenv("CANARYSTREAM_CONFIG", str(unknown))
    with pytest.raises(ConfigError, match="polices"):
        load_settings()


# Every tunable of the worker, of Faust and of the actuators: (field, default, a valid other
# value as env text, the value it parses to, an invalid value).
TUNABLES = [
    ("batch_max_messages", 2000, "500", 500, "0"),
    ("batch_within_seconds", 0.02, "0.5", 0.5, "-1"),
    ("checkpoint_seconds", 1.0, "2.5", 2.5, "0"),
    ("undelivered_after_seconds", 5.0, "10", 10.0, "0"),
    ("undelivered_after_seconds", 5.0, "0.5", 0.5, "1e9"),
    ("undelivered_after_seconds", 5.0, "600", 600.0, "nan"),
    ("web_bind", "127.0.0.1", "0.0.0.0", "0.0.0.0", "local host"),
    ("web_port", 6066, "7000", 7000, "70000"),
    ("faust_producer_linger_ms", 1, "5", 5, "-1"),
    ("faust_broker_session_timeout", 10.0, "30", 30.0, "0"),
    ("faust_broker_heartbeat_interval", 1.0, "3", 3.0, "0"),
    ("faust_broker_commit_every", 10_000, "100", 100, "0"),
    ("faust_broker_commit_interval", 1.0, "2", 2.0, "0"),
    ("faust_stream_buffer_maxsize", 16_384, "1024", 1024, "0"),
    ("faust_consumer_max_fetch_size", 8 * 1024**2, "1048576", 1024**2, "10"),
    ("faust_broker_max_poll_records", 5000, "100", 100, "0"),
    ("actuator_retry_max_attempts", 5, "3", 3, "0"),
    ("actuator_retry_initial_delay", 0.2, "0.5", 0.5, "-0.1"),
    ("actuator_retry_max_delay", 5.0, "10", 10.0, "-1"),
    ("actuator_retry_multiplier", 2.0, "1.5", 1.5, "0.5"),
    ("actuator_retry_jitter", 0.5, "0", 0.0, "1.5"),
    ("actuator_retry_deadline", 30.0, "60", 60.0, "0"),
    ("actuator_metrics_bind", "127.0.0.1", "::1", "::1", ""),
    ("actuator_metrics_port", 6067, "0", 0, "-1"),
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("CANARYSTREAM_") or key == "KAFKA_BOOTSTRAP":
            monkeypatch.delenv(key)
    return monkeypatch


@pytest.mark.parametrize(("field", "default", "text", "value", "bad"), TUNABLES)
def test_each_tunable_has_its_default(
    field: str, default: object, text: str, value: object, bad: str, clean_env
) -> None:
    assert getattr(load_settings(), field) == default


@pytest.mark.parametrize(("field", "default", "text", "value", "bad"), TUNABLES)
def test_each_tunable_from_the_environment(
    field: str, default: object, text: str, value: object, bad: str, clean_env
) -> None:
    clean_env.setenv(f"CANARYSTREAM_{field.upper()}", text)
    assert getattr(load_settings(), field) == value


@pytest.mark.parametrize(("field", "default", "text", "value", "bad"), TUNABLES)
def test_each_tunable_from_the_file(
    field: str, default: object, text: str, value: object, bad: str, clean_env, tmp_path: Path
) -> None:
    config = tmp_path / "canarystream.yaml"
    config.write_text(yaml.safe_dump({field: value}))
    clean_env.setenv("CANARYSTREAM_CONFIG", str(config))
    assert getattr(load_settings(), field) == value


@pytest.mark.parametrize(("field", "default", "text", "value", "bad"), TUNABLES)
def test_a_wrong_value_names_the_field_and_where_it_came_from(
    field: str, default: object, text: str, value: object, bad: str, clean_env, tmp_path: Path
) -> None:
    variable = f"CANARYSTREAM_{field.upper()}"
    clean_env.setenv(variable, bad)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert f"{variable} ({field}, from the environment)" in str(raised.value)

    clean_env.delenv(variable)
    config = tmp_path / "canarystream.yaml"
    config.write_text(f"{field}: {bad!r}\n")
    clean_env.setenv("CANARYSTREAM_CONFIG", str(config))
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert f"{variable} ({field}, from {config})" in str(raised.value)


def test_the_heartbeat_interval_must_be_shorter_than_the_session_timeout(clean_env) -> None:
    clean_env.setenv("CANARYSTREAM_FAUST_BROKER_HEARTBEAT_INTERVAL", "10")
    with pytest.raises(ConfigError, match="faust_broker_heartbeat_interval"):
        load_settings()


def test_precedence_is_argument_over_environment_over_file_over_default(
    clean_env, tmp_path: Path
) -> None:
    config = tmp_path / "canarystream.yaml"
    config.write_text("web_port: 7001\nbatch_max_messages: 11\ncheckpoint_seconds: 3\n")
    clean_env.setenv("CANARYSTREAM_CONFIG", str(config))
    clean_env.setenv("CANARYSTREAM_WEB_PORT", "7002")
    clean_env.setenv("CANARYSTREAM_BATCH_MAX_MESSAGES", "22")
    settings = load_settings(web_port=7003)
    assert settings.web_port == 7003  # the argument (a command-line flag)
    assert settings.batch_max_messages == 22  # the environment over the file
    assert settings.checkpoint_seconds == 3.0  # the file over the default
    assert settings.batch_within_seconds == 0.02  # the default


def test_faust_options_are_the_faust_settings(clean_env) -> None:
    clean_env.setenv("CANARYSTREAM_FAUST_BROKER_MAX_POLL_RECORDS", "77")
    options = load_settings().faust_options()
    assert options["broker_max_poll_records"] == 77
    assert options["consumer_max_fetch_size"] == 8 * 1024**2
    assert len(options) == len([f for f in Settings.model_fields if f.startswith("faust_")]) == 8


SASL_SSL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "worker",
    "kafka_sasl_password": "s3cret",
}


@pytest.mark.parametrize(
    "missing", ["kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"]
)
def test_sasl_without_its_credentials_names_the_missing_field(missing: str, clean_env) -> None:
    for name, value in SASL_SSL.items():
        if name != missing:
            clean_env.setenv(f"CANARYSTREAM_{name.upper()}", value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    (line,) = str(raised.value).splitlines()[1:]
    assert line.strip() == (
        f"CANARYSTREAM_{missing.upper()} ({missing}, by default): "
        "required with kafka_security_protocol=SASL_SSL"
    )


def test_an_empty_password_is_no_password(clean_env) -> None:
    with pytest.raises(ConfigError, match=r"KAFKA_SASL_PASSWORD \(kafka_sasl_password, from an"):
        load_settings(**{**SASL_SSL, "kafka_sasl_password": ""})


@pytest.mark.parametrize(
    ("field", "value"),
    [("kafka_sasl_username", "worker"), ("kafka_sasl_password", "s3cret")],
)
def test_credentials_without_sasl_are_refused_not_ignored(
    field: str, value: str, clean_env
) -> None:
    """A password set for a cluster the client then reaches in PLAINTEXT is a mistake."""
    clean_env.setenv(f"CANARYSTREAM_{field.upper()}", value)
    with pytest.raises(ConfigError, match=f"{field}, from the environment.*not used with"):
        load_settings()


def test_tls_files_must_exist_and_need_a_tls_protocol(clean_env, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    with pytest.raises(ConfigError, match=r"kafka_ssl_cafile.*does not point to a file"):
        load_settings(**SASL_SSL, kafka_ssl_cafile=ca)
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_settings(**SASL_SSL, kafka_ssl_cafile=ca).kafka_ssl_cafile == ca
    with pytest.raises(ConfigError, match=r"kafka_ssl_cafile.*not used with.*SASL_PLAINTEXT"):
        load_settings(
            **{**SASL_SSL, "kafka_security_protocol": "SASL_PLAINTEXT"}, kafka_ssl_cafile=ca
        )
    with pytest.raises(ConfigError, match=r"kafka_ssl_keyfile.*needs kafka_ssl_certfile"):
        load_settings(kafka_security_protocol="SSL", kafka_ssl_keyfile=ca)


def test_the_password_never_shows_in_the_settings(clean_env) -> None:
    settings = load_settings(**SASL_SSL)
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
