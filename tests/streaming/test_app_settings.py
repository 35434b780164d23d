"""The worker's Faust app and batching take every tunable from the settings."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from prometheus_client import generate_latest

from canarystream.errors import ConfigError
from canarystream.kafka.secure import prepare
from canarystream.settings import load_settings
from canarystream.streaming.app import create_app
from canarystream.streaming.worker import Batching, StreamWorker
from tests.support.keys import TestKeys, test_keys

__all__ = ["test_keys"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CANARYSTREAM_"):
            monkeypatch.delenv(key)


def test_the_app_has_the_default_tuning(tmp_path: Path) -> None:
    conf = create_app(load_settings(data_dir=tmp_path), replication_factor=1).conf
    assert conf.broker_session_timeout == 10.0 and conf.broker_heartbeat_interval == 1.0
    assert conf.broker_commit_every == 10_000 and conf.broker_commit_interval == 1.0
    assert conf.stream_buffer_maxsize == 16_384
    assert conf.consumer_max_fetch_size == 8 * 1024**2
    assert conf.broker_max_poll_records == 5000
    assert conf.web_bind == "127.0.0.1" and conf.web_port == 6066


def test_the_app_takes_the_faust_settings_and_the_web_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARYSTREAM_FAUST_BROKER_SESSION_TIMEOUT", "30")
    monkeypatch.setenv("CANARYSTREAM_FAUST_BROKER_HEARTBEAT_INTERVAL", "3")
    monkeypatch.setenv("CANARYSTREAM_FAUST_BROKER_COMMIT_EVERY", "77")
    monkeypatch.setenv("CANARYSTREAM_FAUST_BROKER_COMMIT_INTERVAL", "4")
    monkeypatch.setenv("CANARYSTREAM_FAUST_STREAM_BUFFER_MAXSIZE", "512")
    monkeypatch.setenv("CANARYSTREAM_FAUST_CONSUMER_MAX_FETCH_SIZE", "1048576")
    monkeypatch.setenv("CANARYSTREAM_FAUST_BROKER_MAX_POLL_RECORDS", "99")
    monkeypatch.setenv("CANARYSTREAM_WEB_BIND", "0.0.0.0")
    settings = load_settings(data_dir=tmp_path, web_port=7123)
    conf = create_app(settings, replication_factor=1).conf
    assert conf.broker_session_timeout == 30.0 and conf.broker_heartbeat_interval == 3.0
    assert conf.broker_commit_every == 77 and conf.broker_commit_interval == 4.0
    assert conf.stream_buffer_maxsize == 512
    assert conf.consumer_max_fetch_size == 1024**2
    assert conf.broker_max_poll_records == 99
    assert conf.web_bind == "0.0.0.0" and conf.web_port == 7123


def test_the_worker_batches_as_the_settings_say(tmp_path: Path, test_keys: TestKeys) -> None:
    key = test_keys.private_pem("worker")
    access = test_keys.write_access(tmp_path / "access.yaml")
    default = StreamWorker(load_settings(data_dir=tmp_path, signing_key=key, access_file=access))
    assert default.batching == Batching(2000, 0.02, 1.0)
    settings = load_settings(
        data_dir=tmp_path,
        batch_max_messages=10,
        batch_within_seconds=0.5,
        checkpoint_seconds=3,
        signing_key=key,
        access_file=access,
    )
    assert StreamWorker(settings).batching == Batching(10, 0.5, 3.0)


def test_the_app_connects_with_the_security_settings(tmp_path: Path) -> None:
    ca = prepare(tmp_path / "security").ca_file
    settings = load_settings(
        data_dir=tmp_path,
        kafka_bootstrap="broker-1:9093,broker-2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="worker",
        kafka_sasl_password="s3cret",
        kafka_ssl_cafile=ca,
    )
    conf = create_app(settings, replication_factor=1).conf
    assert [str(url) for url in conf.broker] == ["kafka://broker-1:9093", "kafka://broker-2:9093"]
    assert isinstance(conf.broker_credentials, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(conf.broker_credentials)  # what its clients get
    context = auth.pop("ssl_context")
    assert auth == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "worker",
        "sasl_plain_password": "s3cret",
    }
    assert context.check_hostname and len(context.get_ca_certs()) == 1


def _insecure_gauge(worker: StreamWorker) -> str:
    (line,) = [
        line
        for line in generate_latest(worker.metrics.registry).decode().splitlines()
        if line.startswith("canarystream_insecure_mode ")
    ]
    return line


def test_the_worker_will_not_start_unsigned_unless_told_and_then_says_so_loudly(
    tmp_path: Path, test_keys: TestKeys, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError) as refused:
        StreamWorker(load_settings(data_dir=tmp_path))  # signing is on by default
    assert "CANARYSTREAM_SIGNING_KEY (signing_key) is not set" in str(refused.value)
    assert "canarystream keys generate worker" in str(refused.value)
    with pytest.raises(ConfigError, match=r"CANARYSTREAM_SIGNING_SCHEME \(signing_scheme\)"):
        StreamWorker(load_settings(data_dir=tmp_path, signing_scheme="none"))

    key = test_keys.private_pem("worker")
    access = test_keys.write_access(tmp_path / "access.yaml")
    with caplog.at_level(logging.WARNING):
        signed = StreamWorker(load_settings(data_dir=tmp_path, signing_key=key, access_file=access))
    assert signed.signer is not None and signed.signer.scheme == "ed25519"
    assert not [r for r in caplog.records if "INSECURE" in r.getMessage()]
    assert _insecure_gauge(signed) == "canarystream_insecure_mode 0.0"

    unauthenticated = (
        "INSECURE: announcements and control events are not authenticated; anyone who can "
        "write to canary.deployments.v1 can start, approve, pause or abort rollouts."
    )
    with pytest.raises(ConfigError) as refused:
        StreamWorker(load_settings(data_dir=tmp_path, signing_key=key))  # no access file
    assert "CANARYSTREAM_ACCESS_FILE (access_file, --access) is not set" in str(refused.value)
    assert "deploy/access.example.yaml" in str(refused.value)

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        StreamWorker(load_settings(data_dir=tmp_path, signing_key=key, insecure=True))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert unauthenticated in warnings  # signed, but obeying anyone: said at every start
    assert warnings[0].startswith("INSECURE MODE: this worker runs with insecure=true")
    assert not any("decisions are not signed" in line for line in warnings)

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        unsigned = StreamWorker(load_settings(data_dir=tmp_path, insecure=True))
    assert unsigned.signer is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("INSECURE" in line for line in warnings) >= 4
    assert (
        "INSECURE: decisions are not signed; anyone who can write to canary.decisions.v1 "
        "can steer traffic." in warnings
    )
    assert unauthenticated in warnings
    assert _insecure_gauge(unsigned) == "canarystream_insecure_mode 1.0"
