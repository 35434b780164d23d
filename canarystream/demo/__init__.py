"""``make demo``: a healthy and a regressed rollout, live through Kafka, then replayed.

``canarystream demo`` runs the live loop (:mod:`canarystream.demo.live`: a worker, simulated
fleets that follow its decisions, a live terminal view); ``--offline`` runs the broker-free
simulation and replay (:mod:`canarystream.demo.offline`). ``python -m canarystream.demo`` is
the same command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from canarystream.demo.plan import PLAN_MINUTES

if TYPE_CHECKING:
    from canarystream.demo.scenarios import demo_scenarios
    from canarystream.demo.timeline import render_timeline

__all__ = ["demo_scenarios", "main", "render_timeline", "run_demo"]


def __getattr__(name: str) -> Any:
    # The simulator behind these imports numpy and scipy: loaded when first asked for, so
    # the CLI can read PLAN_MINUTES cheaply.
    if name == "demo_scenarios":
        from canarystream.demo.scenarios import demo_scenarios  # noqa: PLC0415

        return demo_scenarios
    if name == "render_timeline":
        from canarystream.demo.timeline import render_timeline  # noqa: PLC0415

        return render_timeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_demo(  # noqa: PLR0913 -- keyword-only: the demo command's options
    *,
    offline: bool = False,
    speed: float = 20.0,
    minutes: float = PLAN_MINUTES,
    out: Path = Path("out/demo"),
    seed: int = 7,
    batch: int = 50,
) -> int:
    """Run the demo (options as ``canarystream demo`` checks them); return an exit code."""
    if offline:
        from canarystream.demo.offline import run_offline  # noqa: PLC0415

        return run_offline(out, minutes=minutes, seed=seed)
    from canarystream.demo.live import LiveOptions, run_live  # noqa: PLC0415

    options = LiveOptions(out_dir=out, speed=speed, minutes=minutes, seed=seed, batch=batch)
    return run_live(options)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m canarystream.demo [OPTIONS]``: ``canarystream demo [OPTIONS]``."""
    from canarystream.cli import app  # noqa: PLC0415  (the CLI imports this package)

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(["demo", *args], prog_name="canarystream")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    return 0
