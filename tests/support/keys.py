"""Keys of the principals tests run as, so workers and actuators start signed, as in production.

:func:`generate_test_keys` writes a fresh Ed25519 key pair for each of :data:`PRINCIPALS`
(``worker`` signs decisions, ``actuator`` is an actuator's identity, ``deployer`` announces
rollouts, ``approver`` approves them) into a directory; :class:`TestKeys` turns them into the
environment each process needs, and an access file granting each its part
(:meth:`TestKeys.write_access`). The ``test_keys`` fixture makes one set per session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from canarystream.contracts.signing import Signer
from canarystream.principals import KeyPair, generate_key_pair, write_access_file

__all__ = ["GRANTS", "PRINCIPALS", "TestKeys", "generate_test_keys", "test_keys"]

PRINCIPALS = ("worker", "actuator", "deployer", "approver")


@dataclass(frozen=True)
class TestKeys:
    """The key pairs of :data:`PRINCIPALS`, by name, and the environments that use them."""

    __test__ = False  # not a test class, whatever its name

    directory: Path
    pairs: dict[str, KeyPair]

    def private_pem(self, principal: str) -> str:
        return self.pairs[principal].private_file.read_text()

    def public_pem(self, principal: str) -> str:
        return self.pairs[principal].public_pem

    def signer(self, principal: str) -> Signer:
        """A signer with ``principal``'s private key."""
        return Signer.ed25519(self.private_pem(principal))

    def signed_as(self, principal: str) -> tuple[str, Signer]:
        """``principal`` and its signer, as an event publisher signs with them."""
        return principal, self.signer(principal)

    def worker_env(self) -> dict[str, str]:
        """A worker's settings: it signs decisions with the ``worker`` key."""
        return {
            "CANARYSTREAM_SIGNING_SCHEME": "ed25519",
            "CANARYSTREAM_SIGNING_KEY": self.private_pem("worker"),
        }

    def actuator_env(self) -> dict[str, str]:
        """An actuator's settings: it trusts decisions signed with the ``worker`` key."""
        return {
            "CANARYSTREAM_SIGNING_SCHEME": "ed25519",
            "CANARYSTREAM_VERIFY_KEYS": orjson.dumps([self.public_pem("worker")]).decode(),
        }

    def recorder_env(self, actuators: dict[str, str]) -> dict[str, str]:
        """An audit recorder's settings: it trusts the ``worker`` key for verdicts and
        decisions and, for each actuator instance (``kind/name``) of ``actuators``, the key of
        the principal it maps to for that instance's reports."""
        keys = {instance: self.public_pem(name) for instance, name in actuators.items()}
        return {
            "CANARYSTREAM_SIGNING_SCHEME": "ed25519",
            "CANARYSTREAM_VERIFY_KEYS": orjson.dumps([self.public_pem("worker")]).decode(),
            "CANARYSTREAM_AUDIT_ACTUATOR_KEYS": orjson.dumps(keys).decode(),
        }

    def write_access(self, path: Path) -> Path:
        """An access file at ``path`` listing every principal with its public key and
        :data:`GRANTS`; returns ``path``."""
        return _write_access(self, path)

    def principal_env(self, principal: str) -> dict[str, str]:
        """A person's or the deploy system's settings for signed commands."""
        return {
            "CANARYSTREAM_PRINCIPAL": principal,
            "CANARYSTREAM_PRINCIPAL_KEY_FILE": str(self.pairs[principal].private_file),
        }


#: What each test principal may do in :meth:`TestKeys.write_access`'s file, on every service.
GRANTS = (
    {
        "principals": ["deployer"],
        "actions": ["start", "supersede"],
        "policies": ["*"],
        "inline_policies": True,  # simulated rollouts may carry one
    },
    {"principals": ["approver"], "actions": ["approve", "abort", "pause", "resume"]},
    {"principals": ["worker"], "actions": ["heartbeat"]},
)


def _write_access(keys: TestKeys, path: Path) -> Path:
    grants = [{"services": ["*"], **grant} for grant in GRANTS]
    return write_access_file(path, keys.pairs.values(), grants)


def generate_test_keys(directory: Path) -> TestKeys:
    """Fresh key pairs of :data:`PRINCIPALS` in ``directory`` (replacing any there)."""
    pairs = {name: generate_key_pair(name, directory, force=True) for name in PRINCIPALS}
    return TestKeys(directory, pairs)


@pytest.fixture(scope="session")
def test_keys(tmp_path_factory: pytest.TempPathFactory) -> TestKeys:
    """One set of the principals' keys for the whole session."""
    return generate_test_keys(tmp_path_factory.mktemp("keys"))
