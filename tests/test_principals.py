"""Principals' key pairs: files and modes, no silent overwrite, the caller's signer."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from canarystream.cli import app
from canarystream.contracts.authn import message_credentials, signed_headers
from canarystream.contracts.signing import Verifier
from canarystream.errors import ConfigError
from canarystream.governance.access import Action, access_from_mapping, load_access
from canarystream.governance.identity import authenticate
from canarystream.principals import (
    check_principal,
    generate_key_pair,
    principal_signer,
    write_access_file,
)
from canarystream.settings import load_settings

runner = CliRunner()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_writes_a_private_key_only_its_owner_reads_and_a_matching_public_key(
    tmp_path: Path,
) -> None:
    result = runner.invoke(app, ["keys", "generate", "deploy-bot", "--dir", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    private, public = tmp_path / "k" / "deploy-bot.key", tmp_path / "k" / "deploy-bot.pub"
    assert _mode(private) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_text() in result.stdout
    # the printed access-file entry is YAML naming the principal with this very public key
    snippet = result.stdout[result.stdout.index("principals:") :]
    document = yaml.safe_load(snippet)
    entry = document["principals"]["deploy-bot"]
    assert entry["public_key"].strip() == public.read_text().strip()
    # ... and what the worker reads: with a grant, an access file that authenticates the key
    document["grants"] = [{"principals": ["deploy-bot"], "actions": ["start"], "services": ["*"]}]
    access = access_from_mapping(document)
    assert access.allows("deploy-bot", Action.START, "checkout")
    settings = load_settings(principal="deploy-bot", principal_key_file=private)
    principal, signer = principal_signer(settings)
    headers = signed_headers(signer, principal, b'{"type":"deployment_aborted"}')
    _, signature = message_credentials(headers)
    verifier = Verifier(ed25519_keys=[public.read_bytes()])
    assert verifier.verify(b'{"type":"deployment_aborted"}', signature)
    assert not verifier.verify(b'{"type":"deployment_approved"}', signature)


def test_an_existing_key_is_never_overwritten_without_force(tmp_path: Path) -> None:
    first = generate_key_pair("alice", tmp_path)
    before = first.private_file.read_bytes()
    result = runner.invoke(app, ["keys", "generate", "alice", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "refusing to overwrite" in result.stderr and "--force" in result.stderr
    assert first.private_file.read_bytes() == before
    # only the public half left behind is protected too
    first.private_file.unlink()
    with pytest.raises(ConfigError, match=r"alice\.pub"):
        generate_key_pair("alice", tmp_path)
    replaced = generate_key_pair("alice", tmp_path, force=True)
    assert replaced.private_file.read_bytes() != before
    assert _mode(replaced.private_file) == 0o600


@pytest.mark.parametrize(
    "name", ["", "Alice", "_x", ".hidden", "a/b", "../etc/passwd", "a b", "x" * 129]
)
def test_invalid_principal_names_are_refused_and_nothing_is_written(
    tmp_path: Path, name: str
) -> None:
    result = runner.invoke(app, ["keys", "generate", name, "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "principal" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_valid_principal_names() -> None:
    with pytest.raises(ConfigError):
        check_principal("-x")
    for name in ("alice@corp.example", "deploy-bot", "worker_1", "0ops", "x" * 128):
        assert check_principal(name) == name


def test_the_callers_signer_names_missing_settings_and_refuses_a_readable_key(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="CANARYSTREAM_PRINCIPAL and CANARYSTREAM_PRINCIPAL_KEY"):
        principal_signer(load_settings())
    pair = generate_key_pair("bob", tmp_path)
    with pytest.raises(ConfigError, match="CANARYSTREAM_PRINCIPAL_KEY_FILE not set"):
        principal_signer(load_settings(principal="bob"))
    pair.private_file.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        principal_signer(load_settings(principal="bob", principal_key_file=pair.private_file))
    with pytest.raises(ConfigError, match="cannot read"):
        principal_signer(load_settings(principal="bob", principal_key_file=tmp_path / "none"))


def test_the_principal_setting_is_validated_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CANARYSTREAM_PRINCIPAL", "Not A Name")
    with pytest.raises(ConfigError, match="CANARYSTREAM_PRINCIPAL"):
        load_settings()


def test_a_written_access_file_grants_its_principals_and_verifies_their_keys(
    tmp_path: Path,
) -> None:
    deployer = generate_key_pair("deployer", tmp_path / "keys")
    worker = generate_key_pair("worker", tmp_path / "keys")
    grants = [
        {"principals": ["deployer"], "actions": ["start"], "services": ["shop*"]},
        {"principals": ["worker"], "actions": ["heartbeat"], "services": ["*"]},
    ]
    path = write_access_file(tmp_path / "access.yaml", [deployer, worker], grants)

    access = load_access(path)
    assert access.allows("deployer", Action.START, "shop-eu")
    assert not access.allows("deployer", Action.START, "payments")
    assert not access.allows("worker", Action.START, "shop-eu")
    value = b'{"type":"deployment_started"}'
    signer = principal_signer(
        load_settings(principal="deployer", principal_key_file=deployer.private_file)
    )[1]
    assert authenticate(access, "deployer", signer.sign(value), value).principal == "deployer"
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="cannot write the access file"):
        write_access_file(tmp_path / "a-file" / "access.yaml", [deployer], grants)
