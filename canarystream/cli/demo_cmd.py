"""``canarystream demo``: a healthy and a regressed rollout, live through Kafka, then replayed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from canarystream.cli.app import app
from canarystream.demo.plan import PLAN_MINUTES

__all__ = ["demo"]


def _positive(value: float) -> float:
    if not value > 0:
        raise typer.BadParameter(f"must be positive, not {value:g}")
    return value


@app.command()
def demo(
    *,
    offline: Annotated[
        bool, typer.Option(help="Simulate and replay in-process, without a broker or worker.")
    ] = False,
    speed: Annotated[
        float,
        typer.Option(
            callback=_positive,
            help="Event seconds per wall second (20: the 40-minute plan in 2 minutes).",
        ),
    ] = 20.0,
    minutes: Annotated[
        float,
        typer.Option(
            max=PLAN_MINUTES,
            callback=_positive,
            help=f"Length of the plan in event time, at most {PLAN_MINUTES:g}; a shorter plan "
            "shortens the policy's stages and the regression's onset with it.",
        ),
    ] = PLAN_MINUTES,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("out/demo"),
    seed: Annotated[int, typer.Option(min=0, help="Seed of the simulated fleets.")] = 7,
    batch: Annotated[int, typer.Option(min=1, help="Telemetry events per Kafka message.")] = 50,
) -> None:
    """Run a healthy and a regressed canary rollout live through Kafka and a worker, show them
    in a live view, then check that an offline replay gives the same decisions.

    A broker must answer at KAFKA_BOOTSTRAP or 127.0.0.1:19092 (`make demo` starts the local
    one); --offline needs none. Exit code 0: replay = live and each rollout ended as it should.
    """
    from canarystream.demo import run_demo  # noqa: PLC0415  (the live loop imports aiokafka)

    raise typer.Exit(
        run_demo(offline=offline, speed=speed, minutes=minutes, out=out, seed=seed, batch=batch)
    )
