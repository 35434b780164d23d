"""Principals and their Ed25519 keys: who speaks to canarystream, and with which key.

A principal is a named sender: a person (``alice@corp``), the deploy system, the worker, an
actuator. Each holds a private key (``NAME.key``: PEM, PKCS#8, readable by its owner alone)
and publishes its public key (``NAME.pub``): the worker's verifies decisions and heartbeats,
a person's or the deploy system's verifies the announcements and commands it signs (listed in
the access file).

>>> check_principal("alice@corp")
'alice@corp'
>>> check_principal("Alice")
Traceback (most recent call last):
...
canarystream.errors.ConfigError: principal 'Alice': a name is 1-128 characters of a-z, 0-9, \
'.', '_', '@' and '-', starting with a letter or digit
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from canarystream.atomicfile import write_atomically
from canarystream.contracts.signing import Signer, generate_ed25519_key
from canarystream.errors import ConfigError

__all__ = [
    "PRINCIPAL_PATTERN",
    "KeyPair",
    "access_snippet",
    "check_principal",
    "generate_key_pair",
    "principal_signer",
    "write_access_file",
]

PRINCIPAL_PATTERN = r"^[a-z0-9][a-z0-9._@-]{0,127}$"
_PRINCIPAL = re.compile(PRINCIPAL_PATTERN)


def check_principal(name: str) -> str:
    """``name`` if it is a valid principal name, else :class:`ConfigError` saying why."""
    if not _PRINCIPAL.fullmatch(name):
        raise ConfigError(
            f"principal {name!r}: a name is 1-128 characters of a-z, 0-9, '.', '_', '@' and "
            "'-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class KeyPair:
    """The files of one principal's key pair and its public key."""

    principal: str
    private_file: Path
    public_file: Path
    public_pem: str


def generate_key_pair(name: str, directory: Path, *, force: bool = False) -> KeyPair:
    """Write a fresh Ed25519 key pair for principal ``name`` as ``NAME.key`` (mode 0600) and
    ``NAME.pub`` in ``directory`` (created if missing).

    Existing files are kept, and :class:`ConfigError` raised, unless ``force``: a key that
    is overwritten by mistake cannot be recovered, and every grant of it stops working.
    """
    check_principal(name)
    private_file = directory / f"{name}.key"
    public_file = directory / f"{name}.pub"
    if not force:
        existing = [str(path) for path in (private_file, public_file) if path.exists()]
        if existing:
            raise ConfigError(
                f"refusing to overwrite {' and '.join(existing)} (--force replaces the key "
                "pair; the grants of the old key then stop working)"
            )
    private_pem, public_pem = generate_ed25519_key()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(private_file, private_pem, mode=0o600)
        write_atomically(public_file, public_pem, mode=0o644)
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot write the key pair: {exc.strerror}") from exc
    return KeyPair(name, private_file, public_file, public_pem.decode("ascii"))


def access_snippet(pair: KeyPair) -> str:
    """The access-file entry that introduces the principal by its public key (grants to add)."""
    key = "\n".join(f"      {line}" for line in pair.public_pem.strip().splitlines())
    return f"principals:\n  {pair.principal}:\n    public_key: |\n{key}\n"


def write_access_file(
    path: Path, pairs: Iterable[KeyPair], grants: Iterable[Mapping[str, Any]]
) -> Path:
    """Write an access file at ``path`` listing ``pairs`` (their public keys inline) and
    ``grants`` as given; return ``path``. For a run's own principals (the demo, tests)."""
    document = {
        "version": 1,
        "principals": {pair.principal: {"public_key": pair.public_pem} for pair in pairs},
        "grants": [dict(grant) for grant in grants],
    }
    try:
        write_atomically(path, yaml.safe_dump(document, sort_keys=False).encode(), mode=0o644)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the access file: {exc.strerror}") from exc
    return path


def _read_private_key(path: Path) -> bytes:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"CANARYSTREAM_PRINCIPAL_KEY_FILE ({path}): cannot read: {exc.strerror}"
        ) from exc
    if mode & 0o077 and os.name == "posix":
        raise ConfigError(
            f"CANARYSTREAM_PRINCIPAL_KEY_FILE ({path}): readable by others (mode {mode:o}); "
            f"a private key must be readable by its owner alone (chmod 600 {path})"
        )
    return data


def principal_signer(settings: Any) -> tuple[str, Signer]:
    """The caller's principal and a signer with its key, from the ``principal`` and
    ``principal_key_file`` settings; :class:`ConfigError` naming what is missing."""
    missing = [
        f"CANARYSTREAM_{name.upper()}"
        for name in ("principal", "principal_key_file")
        if getattr(settings, name) is None
    ]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} not set: commands are signed with your principal's key "
            "(make one with `canarystream keys generate NAME`)"
        )
    principal = check_principal(settings.principal)
    return principal, Signer.ed25519(_read_private_key(settings.principal_key_file))
