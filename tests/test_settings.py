"""Settings: env vars over an optional YAML file, with errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from canarystream.errors import ConfigError
from canarystream.settings import load_settings


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
        ({"CANARYSTREAM_POLICIES": "not json"}, "CANARYSTREAM_POLICIES"),
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
