"""The engine alone on one stream sent in messages of 1, 50 and 500 events.

Run with ``python -m benchmarks.batching``. One rollout of a healthy canary, 200 requests/s
from each cohort for 25 minutes of event time (600,000 requests, one stage that never ends
within them; 5 s ticks, so 2,000 requests a tick) goes through
``Engine.process_batch`` a message at a time, each message named as the worker names it;
the figure is events per second of CPU time, best of ``--repeat``, all sizes in one run.

No single message may move a rollout's clock (engine/admission.py), so the events of a
message stamped past a tick boundary wait (a heap push and pop each) until the producer's
next message: the larger the messages against a tick's share of the stream, the more of
it waits. The ratio of each size to one event a message shows that cost.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.errors import ContractError
from tests.support.streams import Stream, fast_policy

__all__ = ["main", "rate"]

SIZES = (1, 50, 500)


def stream(minutes: float = 25.0, rps: float = 200.0) -> list[dict[str, Any]]:  # per cohort
    """A healthy rollout whose one stage outlasts the stream (nothing ends it early)."""
    source = Stream(3)
    policy = fast_policy(
        stages=[{"traffic_percent": 50, "min_duration": 100_000, "min_samples": 50}]
    )
    return [source.started(policy=policy), *source.requests(0, minutes * 60, rate=rps)]


def rate(events: list[dict[str, Any]], size: int, repeat: int = 3) -> tuple[float, int]:
    """Events per CPU second in messages of ``size`` events (best of ``repeat``), and the
    events left waiting at the end."""

    def refuse(index: int, error: ContractError) -> None:
        raise SystemExit(f"event {index} refused: {error}")

    best, waiting = float("inf"), 0
    for _ in range(repeat):
        engine = Engine()
        decided: list[Decision] = []
        started = time.process_time()
        for offset in range(0, len(events), size):
            chunk = events[offset : offset + size]
            decided += engine.process_batch(chunk, refuse, f"canary.telemetry.v1/0@{offset}")
        best = min(best, time.process_time() - started)
        waiting = sum(len(r.admission.pending) for r in engine.rollouts.values())
    return len(events) / best, waiting


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    events = stream()
    rates = {size: rate(events, size, args.repeat) for size in SIZES}
    single = rates[1][0]
    print(f"{len(events):,} events, one rollout, 400 requests/s, 5 s ticks")
    for size, (per_second, waiting) in rates.items():
        print(
            f"{size:>4} events a message: {per_second / 1e6:.2f}M events/s, "
            f"{per_second / single:.2f}x one a message, {waiting} waiting at the end"
        )


if __name__ == "__main__":
    main()
