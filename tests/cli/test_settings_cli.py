"""Command-line options over settings: option > environment > file > default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

import canarystream.actuators.service as service_module
import canarystream.kafka.admin as kafka_admin
import canarystream.streaming.worker as worker_module
from canarystream.actuators.executor import Actuator
from canarystream.cli import app
from canarystream.demo.stack import free_port
from canarystream.kafka.admin import TopicResult
from tests.support.keys import TestKeys, test_keys

__all__ = ["test_keys"]

runner = CliRunner()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, test_keys: TestKeys) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("CANARYSTREAM_") or key == "KAFKA_BOOTSTRAP":
            monkeypatch.delenv(key)
    for name, value in {**test_keys.worker_env(), **test_keys.actuator_env()}.items():
        monkeypatch.setenv(name, value)
    access = test_keys.write_access(test_keys.directory / "access.yaml")
    monkeypatch.setenv("CANARYSTREAM_ACCESS_FILE", str(access))

    async def no_topics(connection: Any) -> list[TopicResult]:
        return [TopicResult("t", created=False, partitions=12, replication_factor=1)]

    # The commands import create_topics when they run: patched where it is defined.
    monkeypatch.setattr(kafka_admin, "create_topics", no_topics)
    return monkeypatch


class FakeWorker:
    """Stands for StreamWorker: records the settings it was given; runs nothing."""

    built: ClassVar[list[FakeWorker]] = []

    def __init__(self, settings: Any, **_: Any) -> None:
        self.settings = settings
        FakeWorker.built.append(self)

    def run(self, **_: Any) -> None:
        pass


class FakeService:
    """Stands for ActuatorService: records how it was built; consumes nothing."""

    built: ClassVar[list[FakeService]] = []

    def __init__(self, handler: Any, connection: Any, **kwargs: Any) -> None:
        self.handler, self.kwargs = handler, kwargs
        FakeService.built.append(self)

    async def run(self) -> None:
        pass

    def stop(self) -> None:
        pass


def _worker(env: pytest.MonkeyPatch, *args: str) -> Any:
    FakeWorker.built.clear()
    env.setattr(worker_module, "StreamWorker", FakeWorker)
    result = runner.invoke(app, ["worker", *args])
    assert result.exit_code == 0, result.output
    (worker,) = FakeWorker.built
    return worker.settings


def _actuator(env: pytest.MonkeyPatch, *args: str) -> FakeService:
    FakeService.built.clear()
    env.setattr(service_module, "ActuatorService", FakeService)
    result = runner.invoke(app, ["actuate", "memory", "--service", "*", *args])
    assert result.exit_code == 0, result.output
    (service,) = FakeService.built
    return service


def _file(tmp_path: Path, env: pytest.MonkeyPatch, text: str) -> None:
    config = tmp_path / "canarystream.yaml"
    config.write_text(text)
    env.setenv("CANARYSTREAM_CONFIG", str(config))


def test_worker_web_address_option_over_environment_over_file_over_default(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _worker(env)
    assert (settings.web_bind, settings.web_port) == ("127.0.0.1", 6066)
    _file(tmp_path, env, "web_bind: 10.0.0.1\nweb_port: 7001\nbatch_max_messages: 7\n")
    settings = _worker(env)
    assert (settings.web_bind, settings.web_port) == ("10.0.0.1", 7001)
    assert settings.batch_max_messages == 7
    env.setenv("CANARYSTREAM_WEB_BIND", "10.0.0.2")
    env.setenv("CANARYSTREAM_WEB_PORT", "7002")
    settings = _worker(env)
    assert (settings.web_bind, settings.web_port) == ("10.0.0.2", 7002)
    settings = _worker(env, "--web-bind", "10.0.0.3", "--web-port", "7003")
    assert (settings.web_bind, settings.web_port) == ("10.0.0.3", 7003)
    assert settings.batch_max_messages == 7  # what no option names keeps its source


def test_actuator_metrics_and_retries_option_over_environment_over_file_over_default(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def seen(service: FakeService) -> tuple[Any, ...]:
        handler = service.handler
        assert isinstance(handler, Actuator)
        retry = handler.retry
        return (
            service.kwargs["metrics_host"],
            service.kwargs["metrics_port"],
            retry.max_attempts,
            retry.deadline,
            retry.initial_delay,
        )

    assert seen(_actuator(env)) == ("127.0.0.1", 6067, 5, 30.0, 0.2)
    _file(
        tmp_path,
        env,
        "actuator_metrics_bind: 10.0.0.1\nactuator_metrics_port: 7001\n"
        "actuator_retry_max_attempts: 2\nactuator_retry_deadline: 5\n"
        "actuator_retry_initial_delay: 0.05\n",
    )
    assert seen(_actuator(env)) == ("10.0.0.1", 7001, 2, 5.0, 0.05)
    env.setenv("CANARYSTREAM_ACTUATOR_METRICS_BIND", "10.0.0.2")
    env.setenv("CANARYSTREAM_ACTUATOR_METRICS_PORT", "7002")
    env.setenv("CANARYSTREAM_ACTUATOR_RETRY_MAX_ATTEMPTS", "3")
    env.setenv("CANARYSTREAM_ACTUATOR_RETRY_DEADLINE", "6")
    assert seen(_actuator(env)) == ("10.0.0.2", 7002, 3, 6.0, 0.05)
    options = ["--metrics-bind", "10.0.0.3", "--metrics-port", "7003"]
    options += ["--retry-max-attempts", "4", "--retry-deadline", "7"]
    assert seen(_actuator(env, *options)) == ("10.0.0.3", 7003, 4, 7.0, 0.05)


def test_actuator_metrics_port_0_serves_none(env: pytest.MonkeyPatch) -> None:
    assert _actuator(env, "--metrics-port", "0").kwargs["metrics_port"] is None
    env.setenv("CANARYSTREAM_ACTUATOR_METRICS_PORT", "0")
    assert _actuator(env).kwargs["metrics_port"] is None


def test_a_bad_setting_stops_the_command_naming_it(env: pytest.MonkeyPatch) -> None:
    env.setenv("CANARYSTREAM_ACTUATOR_RETRY_MAX_ATTEMPTS", "0")
    result = runner.invoke(app, ["actuate", "memory"])
    assert result.exit_code == 2
    assert "CANARYSTREAM_ACTUATOR_RETRY_MAX_ATTEMPTS" in result.output.replace("\n", "")
    env.setenv("CANARYSTREAM_WEB_BIND", "no where")
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "CANARYSTREAM_WEB_BIND (web_bind, from the environment)" in result.output.replace(
        "\n", ""
    )


def test_worker_and_actuator_need_keys_unless_insecure_given(env: pytest.MonkeyPatch) -> None:
    env.delenv("CANARYSTREAM_SIGNING_KEY")
    env.delenv("CANARYSTREAM_VERIFY_KEYS")
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "CANARYSTREAM_SIGNING_KEY (signing_key) is not set" in result.stderr.replace("\n", "")
    result = runner.invoke(app, ["actuate", "memory"])
    assert result.exit_code == 2
    assert "CANARYSTREAM_VERIFY_KEYS (verify_keys) is empty" in result.stderr.replace("\n", "")
    assert _worker(env, "--insecure").insecure is True
    service = _actuator(env, "--insecure")
    assert service.handler.verifier is None  # unsigned decisions are acted on, as asked
    env.setenv("CANARYSTREAM_INSECURE", "true")
    assert _worker(env).insecure is True
    assert _actuator(env).handler.verifier is None


def test_a_worker_without_an_access_file_refuses_to_start_before_connecting(
    test_keys: TestKeys, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSTREAM_")}
    # Nothing listens on the broker's port: the refusal must come before any connection.
    env.update(test_keys.worker_env(), KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    env["CANARYSTREAM_DATA_DIR"] = str(tmp_path)
    refused = subprocess.run(
        [sys.executable, "-m", "canarystream", "worker"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    message = " ".join(refused.stderr.split())
    assert "CANARYSTREAM_ACCESS_FILE (access_file, --access) is not set" in message
    assert "deploy/access.example.yaml" in message
    assert "canarystream keys generate" in message
    assert "--insecure" in message
    assert "broker" not in message.lower()  # it never tried to reach one


def test_the_insecure_worker_runs_without_an_access_file(env: pytest.MonkeyPatch) -> None:
    env.delenv("CANARYSTREAM_ACCESS_FILE")
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "CANARYSTREAM_ACCESS_FILE (access_file, --access) is not set" in " ".join(
        result.stderr.split()
    )
    settings = _worker(env, "--insecure")
    assert (settings.insecure, settings.access_file) == (True, None)
