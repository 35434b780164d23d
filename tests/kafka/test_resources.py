"""The broker's pom and log config ship inside the package: an installed wheel finds them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from canarystream.kafka.local import KAFKA_VERSION, LocalKafka, broker_resource

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ("pom.xml", "log4j.properties")


def test_the_resources_are_package_files() -> None:
    for name in RESOURCES:
        path = broker_resource(name)
        assert path.is_file()
        assert path.parent == ROOT / "canarystream" / "kafka"
    assert not (ROOT / "deploy" / "kafka" / "pom.xml").exists()


def test_an_unknown_resource_is_an_error() -> None:
    with pytest.raises(FileNotFoundError, match=r"settings\.xml"):
        broker_resource("settings.xml")


def test_the_broker_is_started_with_the_packaged_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Maven reads the packaged pom, the JVM the packaged log config."""
    seen: list[list[str]] = []

    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        return subprocess.CompletedProcess(command, 1, "", "stop here")

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(Exception, match="stop here"):
        LocalKafka(tmp_path).install()
    (command,) = seen
    assert command[command.index("-f") + 1] == str(broker_resource("pom.xml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the sources, so the build leaves nothing in the working tree."""
    base = tmp_path_factory.mktemp("wheel")
    source, out = base / "source", base / "out"
    shutil.copytree(ROOT / "canarystream", source / "canarystream",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=240, check=False, cwd=base,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    (built,) = out.glob("canarystream-*.whl")
    return built


def test_the_wheel_holds_the_resources(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in RESOURCES:
        assert f"canarystream/kafka/{name}" in names
    assert not any(name.startswith(("deploy/", "tests/")) for name in names)


def test_an_installed_wheel_finds_the_pom_outside_the_repository(
    wheel: Path, tmp_path: Path
) -> None:
    """A fresh venv outside the repository: the wheel installed without dependencies, which
    come from this venv's site-packages (appended after the wheel's, so the wheel wins)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    Path(site, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    probe = (
        "import canarystream.kafka.local as local, xml.etree.ElementTree as ET\n"
        "pom = local.broker_resource('pom.xml')\n"
        "print(local.__file__); print(pom); print(ET.parse(pom).getroot().tag)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    module, pom, tag = done.stdout.splitlines()
    assert module.startswith(site) and pom.startswith(site), done.stdout
    assert tag == "{http://maven.apache.org/POM/4.0.0}project"
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pinned = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    assert pinned is not None and pinned.text == KAFKA_VERSION
    cli = subprocess.run(
        [str(python), "-m", "canarystream", "kafka", "--help"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 0 and "up" in cli.stdout, cli.stderr
