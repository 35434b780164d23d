"""Recorded events → the engine (exactly as ``canarystream replay``) → rollouts' series."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.replay import Rejection, ReplayResult, replay_files
from canarystream.report.series import SeriesRecorder

__all__ = ["record_files"]


def record_files(
    paths: Iterable[str | Path],
    engine: Engine,
    *,
    on_decision: Callable[[Decision], None] | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[ReplayResult, SeriesRecorder]:
    """Replay ``paths`` through ``engine`` with a recorder attached; the replay and the series.

    The replay is :func:`~canarystream.replay.replay_files` itself (same decoding, merging
    and batching), so the decisions are the ones ``canarystream replay`` writes.
    """
    recorder = SeriesRecorder().attach(engine)

    def decided(decision: Decision) -> None:
        recorder.decided(decision)
        if on_decision is not None:
            on_decision(decision)

    try:
        result = replay_files(
            paths,
            engine=engine,
            on_decision=decided,
            on_reject=on_reject,
            on_progress=on_progress,
        )
    finally:
        engine.observer = None
    for rollout in engine.rollouts.values():
        recorder.learn(rollout)
    return result, recorder
