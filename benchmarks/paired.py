"""The engine fed a paired rollout (:mod:`canarystream.simulate.paired`) minute by minute."""

from __future__ import annotations

from collections.abc import Iterator

from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.simulate.paired import CHUNK, Cell, PairedRollout

__all__ = ["TERMINAL", "paired_decisions"]

TERMINAL = ("rollback", "promote")


def paired_decisions(cell: Cell, seed: int, horizon_min: int) -> Iterator[list[Decision]]:
    """A new engine's decisions on each event of ``cell``'s rollout drawn from ``seed``
    (the default policy), for ``horizon_min`` minutes of event time or until the caller stops.
    """
    gen = PairedRollout(cell, seed)
    engine = Engine()
    engine.process(gen.deployment_event())
    for k in range(horizon_min):
        events, _ = gen.chunk(float(k * CHUNK), build=True)
        for event in events:
            yield engine.process(event)
