"""The access file: principals with their keys, and grants of actions on services."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from canarystream.errors import ConfigError
from canarystream.governance.access import Action, access_from_mapping, load_access
from tests.support.access import access_document, access_of, grant, principal

EXAMPLE = Path(__file__).parents[2] / "deploy" / "access.example.yaml"
ALICE, BOB = principal("alice"), principal("bob")


def test_the_example_file_loads_and_says_what_its_comments_say() -> None:
    access = load_access(EXAMPLE)

    assert access.allows_start("deploy-bot", "payments", "strict-eu")
    assert not access.allows_start("deploy-bot", "payments", "lenient")
    assert not access.allows_start("deploy-bot", "payments", None)  # no inline policies
    assert access.allows_start("alice", "checkout-eu", None)
    assert not access.allows("alice", Action.START, "payments")
    assert access.allows("bob", Action.APPROVE, "payments")
    assert not access.allows("bob", Action.APPROVE, "search")
    assert access.allows("worker", Action.HEARTBEAT, "search")
    assert not access.allows("worker", Action.ABORT, "search")


def test_nothing_is_allowed_without_a_grant() -> None:
    access = access_of([ALICE], [])

    assert not any(access.allows("alice", action, "checkout") for action in Action)
    assert access.verifier("alice") is not None
    assert access.verifier("mallory") is None


def test_services_are_case_sensitive_globs_and_policies_need_their_own_grant() -> None:
    access = access_of(
        [ALICE, BOB],
        [
            grant([ALICE], ["start"], ["check*"], policies=["default"]),
            grant([BOB], ["start"], ["*"], policies=[], inline=True),
        ],
    )

    assert access.allows_start("alice", "checkout", "default")
    assert not access.allows_start("alice", "Checkout", "default")
    assert not access.allows_start("alice", "checkout", "fast")
    assert not access.allows_start("alice", "checkout", None)
    assert access.allows_start("bob", "anything", None)
    assert not access.allows_start("bob", "anything", "default")


def test_a_key_may_be_a_file_relative_to_the_access_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "alice.pub").write_bytes(ALICE.public_pem)
    document = access_document([ALICE], [grant([ALICE], ["abort"])])
    document["principals"]["alice"]["public_key"] = "keys/alice.pub"
    (tmp_path / "access.yaml").write_text(yaml.safe_dump(document))

    access = load_access(tmp_path / "access.yaml")

    assert access.verifier("alice").verify(b"x", ALICE.sign(b"x"))  # type: ignore[union-attr]
    assert not access.verifier("alice").verify(b"x", BOB.sign(b"x"))  # type: ignore[union-attr]


def test_the_example_loads_from_anywhere(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "access.yaml")

    assert set(load_access(tmp_path / "access.yaml").verifiers) == {
        "deploy-bot",
        "alice",
        "bob",
        "worker",
        "edge-1",
    }
    assert load_access(tmp_path / "access.yaml").allows("edge-1", Action.ROUTE, "checkout")


def _error(document: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        access_from_mapping(document, source="access.yaml")
    return str(caught.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["grants"][1].update(actions=["start", "deploy"]), "grants.1.actions.1: "),
        (lambda d: d["grants"][1].update(services=["ok", ""]), "grants.1.services.1: "),
        (lambda d: d["grants"][0].update(services=[]), "grants.0.services: "),
        (lambda d: d["grants"][0].update(principals=["alice", "eve"]), "grants.0.principals.1: "),
        (lambda d: d["grants"][0].update(everyone=True), "grants.0.everyone: "),
        (lambda d: d.update(roles=[]), "roles: "),
        (lambda d: d["principals"]["alice"].update(public_key="keys/none.pub"), "alice.public_key"),
        (lambda d: d["principals"]["bob"].update(public_key="AAAA"), "principals.bob.public_key"),
        (lambda d: d["principals"]["bob"].pop("public_key"), "principals.bob.public_key: "),
        (lambda d: d.update(version=2), "version: "),
        (lambda d: d.update(command_max_age_seconds=0), "command_max_age_seconds: "),
        (lambda d: d.update(command_max_age_seconds=-900), "command_max_age_seconds: "),
        (lambda d: d.update(command_max_age_seconds=1e12), "command_max_age_seconds: "),
        (lambda d: d.update(command_max_age_seconds=float("nan")), "command_max_age_seconds: "),
        (lambda d: d.update(command_max_age_seconds=float("inf")), "command_max_age_seconds: "),
        (lambda d: d.update(command_max_age_seconds="15m"), "command_max_age_seconds: "),
    ],
)
def test_errors_name_the_field(change, expected: str) -> None:
    document = access_document([ALICE, BOB], [grant([ALICE], ["abort"]), grant([BOB], ["approve"])])
    change(document)

    message = _error(document)

    assert message.startswith("access.yaml: invalid access file")
    assert expected in message


def test_unknown_principal_is_named_with_its_place() -> None:
    document = access_document([ALICE], [grant([ALICE, "eve"], ["abort"])])

    assert "grants.0.principals.1: unknown principal 'eve'" in _error(document)


def test_a_file_that_is_not_a_mapping_or_not_yaml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- alice\n")
    (tmp_path / "broken.yaml").write_text("principals: [\n")

    with pytest.raises(ConfigError, match=r"list\.yaml: an access file is a mapping"):
        load_access(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_access(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="cannot read access file"):
        load_access(tmp_path / "missing.yaml")
