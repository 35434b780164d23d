"""Recorded events of a few rollouts (one advancing, one rolled back), written once."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset

T0 = 1_790_000_000.0
PRESETS = ("healthy", "errors-x3")


def events_of(presets: tuple[str, ...] = PRESETS, rps: float = 30.0) -> list[dict]:
    """Closed-loop events of ``presets`` side by side, in ts order."""
    scenarios = [
        build_preset(name, service=f"svc-{name}", rps=rps, duration=1500, start_ts=T0)
        for name in presets
    ]
    return list(simulate(scenarios, seed=5))


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSON Lines file of :func:`events_of`."""
    path = tmp_path_factory.mktemp("report") / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events_of()))
    return path
