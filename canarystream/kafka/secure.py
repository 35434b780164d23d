"""Security material of a secured local broker: a CA of its own, the broker's certificate,
and the SCRAM users the broker knows.

``canarystream kafka up --secure`` calls :func:`prepare` once per data directory. It writes,
under ``<data>/security/``:

- ``ca.pem`` (the CA's certificate, public) and ``ca-key.pem`` (its key, 0600);
- ``broker.pem`` (0600): the broker's PKCS#8 key and its certificate chain, which Kafka reads
  as a PEM keystore; its certificate names ``127.0.0.1`` and ``localhost`` and serves both as
  server and as client (the broker connects to itself between listeners);
- ``users.json`` (0600, versioned plain data): one random password per user;
- ``<user>.env`` (0600): the ``CANARYSTREAM_*`` variables with which that user's clients
  connect (source it, or copy the lines into a service's environment).

Everything is generated with the ``cryptography`` package; nothing calls ``openssl`` or
``keytool``. Files that exist are reused, so a restart keeps the CA the clients trust and the
passwords formatted into the broker's storage.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from canarystream.errors import BrokerError

__all__ = ["MECHANISM", "USERS", "SecureSetup", "prepare"]

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
USERS = (ADMIN, "worker", "actuator")  # the broker itself authenticates as ``admin``
_USERS_VERSION = 1
_VALIDITY = datetime.timedelta(days=825)  # the longest validity clients accept for a server


@dataclass(frozen=True)
class SecureSetup:
    """Where a secured broker's material lives, and the users' passwords."""

    directory: Path
    passwords: dict[str, str]

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def keystore(self) -> Path:
        """The broker's key and certificate chain (Kafka's PEM keystore)."""
        return self.directory / "broker.pem"

    def env_file(self, user: str) -> Path:
        return self.directory / f"{user}.env"

    def client_settings(self, user: str, bootstrap: str) -> dict[str, str]:
        """The settings (field names of :class:`~canarystream.settings.Settings`) with which
        ``user``'s clients connect to ``bootstrap``."""
        return {
            "kafka_bootstrap": bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": MECHANISM,
            "kafka_sasl_username": user,
            "kafka_sasl_password": self.passwords[user],
            "kafka_ssl_cafile": str(self.ca_file),
        }

    def client_env(self, user: str, bootstrap: str) -> dict[str, str]:
        """The same as environment variables (``KAFKA_BOOTSTRAP``, ``CANARYSTREAM_*``)."""
        return {
            "KAFKA_BOOTSTRAP" if name == "kafka_bootstrap" else f"CANARYSTREAM_{name.upper()}": v
            for name, v in self.client_settings(user, bootstrap).items()
        }

    def scram_arguments(self) -> list[str]:
        """``--add-scram`` options of ``kafka-storage format`` for every user."""
        return [
            f"--add-scram={MECHANISM}=[name={user},password={password}]"
            for user, password in self.passwords.items()
        ]

    def write_env_files(self, bootstrap: str) -> None:
        """One ``<user>.env`` per user (0600), for ``bootstrap``."""
        for user in self.passwords:
            lines = (f"{name}={value}" for name, value in self.client_env(user, bootstrap).items())
            _write_private(self.env_file(user), ("\n".join(lines) + "\n").encode())


def prepare(directory: Path, *, users: Iterable[str] = USERS) -> SecureSetup:
    """Create (or reuse) the CA, the broker's keystore and the users' passwords in
    ``directory``; return where they are."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    setup = SecureSetup(directory, _passwords(directory / "users.json", users))
    if not (setup.ca_file.exists() and setup.ca_key_file.exists()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca_certificate(ca_key)
        _write_private(setup.ca_key_file, _key_pem(ca_key))
        setup.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        setup.keystore.unlink(missing_ok=True)  # issued by a CA that is gone
    if not setup.keystore.exists():
        issuer = serialization.load_pem_private_key(setup.ca_key_file.read_bytes(), None)
        if not isinstance(issuer, ec.EllipticCurvePrivateKey):
            raise BrokerError(f"{setup.ca_key_file}: not the EC key this broker's CA uses")
        ca_cert = x509.load_pem_x509_certificate(setup.ca_file.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _broker_certificate(key, issuer, ca_cert)
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, ca_cert))
        _write_private(setup.keystore, _key_pem(key) + chain)
    return setup


def _passwords(path: Path, users: Iterable[str]) -> dict[str, str]:
    """The passwords of the users in ``path``, with new ones drawn for ``users`` it lacks."""
    stored: dict[str, str] = {}
    if path.exists():
        try:
            data = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise BrokerError(f"{path}: not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != _USERS_VERSION:
            raise BrokerError(f"{path}: expected version {_USERS_VERSION} of the users file")
        found = data.get("users")
        if not isinstance(found, dict) or not all(isinstance(v, str) and v for v in found.values()):
            raise BrokerError(f"{path}: users must map each name to its password")
        stored = found
    wanted = {**stored, **{u: secrets.token_urlsafe(24) for u in users if u not in stored}}
    if wanted != stored:
        _write_private(path, orjson.dumps({"version": _USERS_VERSION, "users": wanted}))
    return wanted


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file only its owner may read (0600 from its creation)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "canarystream local broker"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


_CA_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


def _ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = _name(f"canarystream local CA {secrets.token_hex(4)}")
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _broker_certificate(
    key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name("canarystream-broker"))
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
