"""The secured broker's material: a CA, a certificate clients verify, private files, users."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import orjson
import pytest
from aiokafka.helpers import create_ssl_context
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from canarystream.errors import BrokerError
from canarystream.kafka.connection import Connection
from canarystream.kafka.local import LocalKafka
from canarystream.kafka.secure import MECHANISM, USERS, prepare
from canarystream.settings import load_settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_passwords_and_env_files_are_readable_by_their_owner_alone(tmp_path: Path) -> None:
    setup = prepare(tmp_path / "security")
    setup.write_env_files("127.0.0.1:19094")
    private = [setup.ca_key_file, setup.keystore, tmp_path / "security" / "users.json"]
    private += [setup.env_file(user) for user in USERS]
    assert {path.name: _mode(path) for path in private} == {p.name: 0o600 for p in private}
    assert _mode(tmp_path / "security") == 0o700
    assert b"PRIVATE KEY" not in setup.ca_file.read_bytes()  # the CA file clients get


def _chain(setup_keystore: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(setup_keystore.read_bytes())


def test_the_broker_certificate_verifies_for_127_0_0_1_and_localhost_only(tmp_path: Path) -> None:
    setup = prepare(tmp_path)
    ca = x509.load_pem_x509_certificate(setup.ca_file.read_bytes())
    leaf, intermediate = _chain(setup.keystore)
    assert intermediate == ca  # the keystore holds the whole chain
    store = Store([ca])
    for name in (x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")):
        verifier = PolicyBuilder().store(store).build_server_verifier(name)
        verifier.verify(leaf, [])
    with pytest.raises(VerificationError):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("example.com")).verify(
            leaf, []
        )
    other = prepare(tmp_path / "other")  # another broker's CA does not vouch for this one
    stranger = x509.load_pem_x509_certificate(other.ca_file.read_bytes())
    with pytest.raises(VerificationError):
        PolicyBuilder().store(Store([stranger])).build_server_verifier(
            x509.DNSName("localhost")
        ).verify(leaf, [])


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> None:
    """A TLS handshake between the two contexts over memory buffers."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    tls_client = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    tls_server = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side, out, peer_in in (
            ("client", tls_client, c_out, s_in),
            ("server", tls_server, s_out, c_in),
        ):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            return
    raise AssertionError("the handshake did not finish")


def test_a_client_trusting_the_ca_file_completes_a_handshake_others_refuse(tmp_path: Path) -> None:
    """What the clients do: aiokafka's context with the CA file, hostname checked."""
    setup = prepare(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(setup.keystore)  # the same PEM file Kafka reads as its keystore
    _handshake(server, create_ssl_context(cafile=str(setup.ca_file)))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, create_ssl_context())  # the system's CAs only


def test_a_restart_reuses_the_ca_the_keystore_and_the_passwords(tmp_path: Path) -> None:
    first = prepare(tmp_path)
    files = {p: p.read_bytes() for p in (first.ca_file, first.ca_key_file, first.keystore)}
    again = prepare(tmp_path)
    assert again.passwords == first.passwords
    assert {p: p.read_bytes() for p in files} == files
    more = prepare(tmp_path, users=(*USERS, "auditor"))
    assert {u: more.passwords[u] for u in USERS} == first.passwords
    assert len(set(more.passwords.values())) == len(USERS) + 1  # each its own, drawn


def test_a_lost_ca_key_reissues_the_broker_certificate(tmp_path: Path) -> None:
    first = prepare(tmp_path)
    old_leaf = _chain(first.keystore)[0]
    first.ca_key_file.unlink()
    again = prepare(tmp_path)
    leaf, ca = _chain(again.keystore)
    assert leaf != old_leaf and ca == x509.load_pem_x509_certificate(again.ca_file.read_bytes())


def test_a_users_file_of_another_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "users.json").write_bytes(orjson.dumps({"version": 9, "users": {}}))
    with pytest.raises(BrokerError, match="version 1"):
        prepare(tmp_path)
    (tmp_path / "users.json").write_bytes(orjson.dumps({"version": 1, "users": ["admin"]}))
    with pytest.raises(BrokerError, match="map each name to its password"):
        prepare(tmp_path)
    (tmp_path / "users.json").write_text("{not json")
    with pytest.raises(BrokerError, match="not valid JSON"):
        prepare(tmp_path)


def test_scram_users_are_formatted_with_their_passwords(tmp_path: Path) -> None:
    setup = prepare(tmp_path)
    assert setup.scram_arguments() == [
        f"--add-scram={MECHANISM}=[name={user},password={setup.passwords[user]}]" for user in USERS
    ]


def test_an_env_file_is_a_complete_client_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = prepare(tmp_path)
    setup.write_env_files("127.0.0.1:19094")
    for line in setup.env_file("worker").read_text().splitlines():
        name, value = line.split("=", 1)
        monkeypatch.setenv(name, value)
    kwargs = Connection(load_settings()).client_kwargs()
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "bootstrap_servers": "127.0.0.1:19094",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "worker",
        "sasl_plain_password": setup.passwords["worker"],
    }
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_secure_properties_serve_clients_sasl_ssl_only(tmp_path: Path) -> None:
    broker = LocalKafka(tmp_path, port=19094, controller_port=19095, secure=True)
    properties = dict(
        line.split("=", 1) for line in broker._properties().splitlines() if "=" in line
    )
    assert properties["listeners"] == ("SASL_SSL://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095")
    assert properties["advertised.listeners"] == "SASL_SSL://127.0.0.1:19094"
    assert properties["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert properties["inter.broker.listener.name"] == "SASL_SSL"
    assert properties["ssl.keystore.location"] == str(broker.security.keystore)
    assert broker.data == tmp_path / "data-secure"  # never the plain broker's storage
