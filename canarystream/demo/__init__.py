"""``make demo``: a healthy and a regressed rollout, live through Kafka, then replayed.

``python -m canarystream.demo`` runs the live loop (:mod:`canarystream.demo.live`: a worker,
simulated fleets that follow its decisions, a live terminal view); ``--offline`` runs the
broker-free simulation and replay (:mod:`canarystream.demo.offline`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from canarystream.demo.scenarios import PLAN_MINUTES, demo_scenarios
from canarystream.demo.timeline import render_timeline

__all__ = ["demo_scenarios", "main", "render_timeline"]


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m canarystream.demo",
        description="Run a healthy and a regressed canary rollout live through Kafka and a "
        "worker (a broker must answer at KAFKA_BOOTSTRAP or 127.0.0.1:19092), show them in a "
        "live view, then check that an offline replay gives the same decisions.",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="simulate and replay in-process, without a broker or worker",
    )
    parser.add_argument(
        "--speed",
        type=_positive,
        default=20.0,
        help="event seconds per wall second (default 20: the 40-minute plan in 2 minutes)",
    )
    parser.add_argument(
        "--minutes",
        type=_positive,
        default=PLAN_MINUTES,
        help=f"length of the plan in event time, at most {PLAN_MINUTES:g}; a shorter plan "
        "shortens the policy's stages and the regression's onset with it",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("out/demo"), help="output directory (out/demo)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated fleets")
    parser.add_argument(
        "--batch", type=int, default=50, help="telemetry events per Kafka message (50)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return a process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.minutes > PLAN_MINUTES:
        parser.error(f"--minutes must be at most {PLAN_MINUTES:g}")
    if args.batch < 1 or args.seed < 0:
        parser.error("--batch must be at least 1 and --seed non-negative")
    if args.offline:
        from canarystream.demo.offline import run_offline  # noqa: PLC0415

        return run_offline(args.out, minutes=args.minutes, seed=args.seed)
    from canarystream.demo.live import LiveOptions, run_live  # noqa: PLC0415

    options = LiveOptions(
        out_dir=args.out, speed=args.speed, minutes=args.minutes, seed=args.seed, batch=args.batch
    )
    return run_live(options)
