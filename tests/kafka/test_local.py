"""The local broker's version: pinned in the pom, overridable per machine."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from canarystream.kafka.local import KAFKA_VERSION, LocalKafka

POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"


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
