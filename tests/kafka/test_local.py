"""The local broker's version: pinned in the pom, overridable per machine."""

from __future__ import annotations

import base64
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from canarystream.errors import BrokerError
from canarystream.kafka.local import KAFKA_VERSION, LocalKafka, broker_resource, new_cluster_id

POM = broker_resource("pom.xml")


def test_the_pom_pins_the_version_the_code_names() -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pinned = ET.parse(POM).getroot().find("m:properties/m:kafka.version", ns)
    assert pinned is not None and pinned.text == KAFKA_VERSION


def test_another_version_gets_its_own_jars_and_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CANARYSTREAM_KAFKA_VERSION", raising=False)
    pinned = LocalKafka(tmp_path)
    assert pinned.version == KAFKA_VERSION
    assert pinned.libs == tmp_path / f"kafka-{KAFKA_VERSION}" / "libs"
    assert pinned.data == tmp_path / "data"

    monkeypatch.setenv("CANARYSTREAM_KAFKA_VERSION", "4.0.2")
    other = LocalKafka(tmp_path)
    assert other.version == "4.0.2"
    assert other.libs == tmp_path / "kafka-4.0.2" / "libs"
    assert other.data == tmp_path / "data-4.0.2"


def test_cluster_ids_never_look_like_an_option() -> None:
    ids = {new_cluster_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    for cluster_id in ids:
        assert not cluster_id.startswith("-")
        raw = base64.urlsafe_b64decode(cluster_id + "==")
        assert len(cluster_id) == 22 and len(raw) == 16
        assert raw != bytes(16)


def test_a_candidate_with_a_leading_dash_is_drawn_again() -> None:
    # 0xF8 puts 62, the index of '-', in the first six bits; the zero id is reserved by Kafka.
    candidates = iter([b"\xf8" + bytes(15), bytes(16), b"\xfb" + bytes(15), b"\x12" * 16])
    cluster_id = new_cluster_id(lambda: next(candidates))
    assert cluster_id == base64.urlsafe_b64encode(b"\x12" * 16).rstrip(b"=").decode()


def test_storage_is_formatted_with_the_id_attached_to_its_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id is passed as ``--cluster-id=ID``: even a leading '-' could not be an option."""
    seen: list[list[str]] = []

    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        return subprocess.CompletedProcess(command, 1, "", "stop here")

    monkeypatch.setattr(subprocess, "run", run)
    broker = LocalKafka(tmp_path)
    with pytest.raises(BrokerError, match="formatting storage failed"):
        broker.format_storage("java", "libs/*", tmp_path / "server.properties")
    (command,) = seen
    options = [part for part in command if part.startswith("--cluster-id")]
    assert len(options) == 1 and options[0].startswith("--cluster-id=")
    assert "-t" not in command
