"""``canarystream kafka up --secure``: clients get in over SASL_SSL with SCRAM-SHA-512 and the
CA it generated; a wrong password, an untrusted certificate or plaintext do not."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from canarystream.kafka.admin import broker_ready, refusal
from canarystream.kafka.connection import Connection
from canarystream.principals import generate_key_pair
from canarystream.settings import load_settings
from tests.support.secure_broker import SecureBroker, secure_broker

__all__ = ["secure_broker"]

pytestmark = pytest.mark.kafka


def _connection(settings: dict[str, str | None]) -> Connection:
    return Connection(load_settings(**settings))


def test_up_prints_the_client_settings_and_writes_one_private_env_file_per_user(
    secure_broker: SecureBroker,
) -> None:
    out = secure_broker.output
    security = secure_broker.broker.security
    assert f"up on {secure_broker.bootstrap}" in out
    assert f"SASL_SSL, SCRAM-SHA-512, CA {security.ca_file}" in out
    for variable in ("SASL_USERNAME", "SASL_PASSWORD", "SSL_CAFILE"):
        assert f"CANARYSTREAM_KAFKA_{variable}" in out
    for user, password in security.passwords.items():
        assert str(security.env_file(user)) in out
        assert password not in out  # names where it is, never prints it
        assert stat.S_IMODE(security.env_file(user).stat().st_mode) == 0o600
    properties = secure_broker.broker.data / "server.properties"
    assert stat.S_IMODE(properties.stat().st_mode) == 0o600  # holds the broker's password
    assert stat.S_IMODE(secure_broker.broker.data.stat().st_mode) == 0o700  # and credentials
    assert secure_broker.env("worker") == {
        "KAFKA_BOOTSTRAP": secure_broker.bootstrap,
        "CANARYSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CANARYSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CANARYSTREAM_KAFKA_SASL_USERNAME": "worker",
        "CANARYSTREAM_KAFKA_SASL_PASSWORD": security.passwords["worker"],
        "CANARYSTREAM_KAFKA_SSL_CAFILE": str(security.ca_file),
    }


def test_a_message_goes_round_trip_over_sasl_ssl(secure_broker: SecureBroker) -> None:
    kwargs = _connection(secure_broker.settings("worker")).client_kwargs()
    topic = f"secure-{uuid.uuid4().hex[:10]}"

    async def run() -> list[bytes]:
        producer = AIOKafkaProducer(**kwargs, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"over TLS", key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, **kwargs, group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), 30)
        finally:
            await consumer.stop()
        return [message.value]

    assert asyncio.run(run()) == [b"over TLS"]


def test_a_wrong_password_is_refused_at_once_with_the_reason(
    secure_broker: SecureBroker,
) -> None:
    wrong = {**secure_broker.settings("worker"), "kafka_sasl_password": "not the password"}
    reason = asyncio.run(refusal(_connection(wrong)))
    assert "SaslAuthenticationFailed" in reason and "invalid credentials" in reason

    async def start() -> None:
        producer = AIOKafkaProducer(**_connection(wrong).client_kwargs())
        try:
            await producer.start()
        finally:
            await producer.stop()

    began = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        asyncio.run(start())
    assert time.monotonic() - began < 15

    # What an operator sees: the worker and the actuators create topics first, and stop.
    env = {
        **os.environ,
        **secure_broker.env("worker"),
        "CANARYSTREAM_KAFKA_SASL_PASSWORD": "not the password",
    }
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "canarystream", "topics", "create"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert time.monotonic() - began < 45
    assert "SaslAuthenticationFailed" in done.stderr and "kafka_sasl_password" in done.stderr
    assert "not the password" not in done.stderr + done.stdout


def test_plaintext_and_an_untrusted_certificate_are_refused(
    secure_broker: SecureBroker,
) -> None:
    assert not broker_ready(secure_broker.bootstrap)  # a PLAINTEXT client
    plain = asyncio.run(refusal(_connection({"kafka_bootstrap": secure_broker.bootstrap})))
    assert "refused a PLAINTEXT client" in plain and "closed" in plain
    system_cas = {**secure_broker.settings("worker"), "kafka_ssl_cafile": None}
    untrusted = asyncio.run(refusal(_connection(system_cas)))
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted
    assert broker_ready(_connection(secure_broker.settings("worker")))


def test_a_command_with_a_wrong_password_says_why_it_was_refused(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    pair = generate_key_pair("alice@corp", tmp_path / "keys")
    env = {
        **os.environ,
        **secure_broker.env("admin"),
        "CANARYSTREAM_KAFKA_SASL_PASSWORD": "not the password",
        "CANARYSTREAM_PRINCIPAL": pair.principal,
        "CANARYSTREAM_PRINCIPAL_KEY_FILE": str(pair.private_file),
    }
    command = ["abort", "shop-1", "--reason", "drill", "--service", "shop"]
    done = subprocess.run(
        [sys.executable, "-m", "canarystream", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "refused a SASL_SSL client: SaslAuthenticationFailed" in done.stderr
    assert "kafka_sasl_password" in done.stderr
    assert "Unclosed" not in done.stderr  # the refused clients were closed


def test_a_restart_keeps_the_ca_and_the_passwords_clients_have(
    secure_broker: SecureBroker,
) -> None:
    """Clients configured before a restart connect after it (storage is not formatted again)."""
    broker = secure_broker.broker
    ca = broker.security.ca_file.read_bytes()
    env_file = broker.security.env_file("actuator").read_text()
    port = str(broker.port)
    assert _kafka(secure_broker, "down", "--secure", "--port", port).returncode == 0
    assert not broker.is_up()
    again = _kafka(secure_broker, "up", "--secure", "--port", port)
    assert again.returncode == 0, again.stderr
    assert broker.security.ca_file.read_bytes() == ca
    assert broker.security.env_file("actuator").read_text() == env_file
    assert broker_ready(_connection(secure_broker.settings("actuator")))


def _kafka(secure_broker: SecureBroker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canarystream", "kafka", *args],
        env={**os.environ, "CANARYSTREAM_KAFKA_HOME": str(secure_broker.home)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
