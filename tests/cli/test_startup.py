"""Starting the command line stays cheap: ``--help`` loads none of the heavy libraries.

Each command imports Faust, aiokafka, the engine (numpy) inside its function;
a module-level import in any command module would slow down every ``--help`` and every
typo. The check looks at what a fresh interpreter has loaded, not at a clock.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import orjson
import pytest

import canarystream
from canarystream.cli import replay_cmd
from canarystream.replay import STDIN

ROOT = Path(__file__).parents[2]
OWN_HEAVY = (
    "canarystream.contracts",
    "canarystream.analysis",
    "canarystream.engine",
    "canarystream.settings",
)
HEAVY = (
    "faust", "mode", "aiokafka", "scipy", "river", "numpy", "prometheus_client", "asyncio", "rich",
)  # fmt: skip

_LOADED = """
import runpy, sys
sys.argv = ["canarystream", *sys.argv[1:]]
try:
    runpy.run_module("canarystream", run_name="__main__")
except SystemExit:
    pass
sys.stderr.write(" ".join(sorted(sys.modules)))
"""


def _loaded(*args: str) -> set[str]:
    """The modules a fresh interpreter holds after ``canarystream ARGS``, and the top-level
    packages they belong to."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modules = set(done.stderr.split())
    return modules | {name.split(".")[0] for name in modules}


@pytest.mark.parametrize("args", [("--help",), ("--version",), ()], ids=repr)
def test_the_top_level_help_loads_no_heavy_library(args: tuple[str, ...]) -> None:
    loaded = _loaded(*args)
    assert loaded & set(HEAVY) == set()
    # The contract's models (pydantic, built at import) are for the commands that run.
    assert not any(name.startswith(OWN_HEAVY) for name in loaded), sorted(loaded)


@pytest.mark.parametrize(
    "command",
    [
        "replay",
        "backtest",
        "simulate",
        "worker",
        "demo",
        "approve",
        "policy show",
        "kafka up",
        "bridge otlp",
    ],
)
def test_a_commands_help_loads_no_heavy_library(command: str) -> None:
    assert _loaded(*command.split(), "--help") & set(HEAVY) == set()


def test_a_quiet_replay_loads_neither_scipy_nor_river_nor_rich(tmp_path: Path) -> None:
    # The drift guard's Page-Hinkley test is the package's own and the recovery check loads
    # scipy at its first verdict: replaying loads the engine without scipy (about 1.5 s with
    # river's drift detectors). Quiet with nothing to report, it draws nothing (rich).
    events = [
        {"type": "deployment_started", "ts": 1.79e9, "deployment": "d", "service": "s",
         "baseline_version": "v1", "canary_version": "v2"},
        {"type": "request", "ts": 1.79e9 + 1, "service": "s", "version": "v2",
         "latency_ms": 20.0, "status": 200},
    ]  # fmt: skip
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    loaded = _loaded("replay", "--quiet", str(path))
    assert "canarystream.engine.rollout" in loaded  # the probe saw the engine run
    assert loaded & {"scipy", "river", "rich"} == set()


def test_the_probe_sees_a_heavy_import_when_there_is_one() -> None:
    # `actuate --help` lists every backend with its keys, so it loads their modules.
    assert "prometheus_client" in _loaded("actuate", "--help")


def test_version_prints_the_packages_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "canarystream", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert done.stdout == f"canarystream {project['version']}\n"
    assert canarystream.__version__ == project["version"]


def test_help_in_a_pipe_is_plain_text() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "canarystream", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.startswith("Usage: canarystream [OPTIONS] COMMAND")
    assert "\x1b[" not in done.stdout and "╭" not in done.stdout
    assert "--version" in done.stdout


def test_the_cli_spells_standard_input_as_replay_does() -> None:
    assert replay_cmd.STDIN == STDIN
