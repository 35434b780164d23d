"""Closed-loop simulation: telemetry whose canary share follows the engine's decisions.

A real router sends nothing to a canary until told, so each scenario's canary share starts at
0 and thereafter is the ``traffic_percent`` of the last decision about its deployment; a
terminal decision stops the rollout (rolled back or aborted: the canary gets nothing;
promoted: the canary gets everything and the baseline nothing).

A scenario with ``routing`` runs open loop instead, as a rollout routed by something else: its
share follows the steps, whatever the engine decides, and each step is recorded as a
``traffic_shifted`` event at the moment it takes effect (a recording for ``backtest``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Protocol

from canarystream.contracts.decision import Action, Decision, Phase, decision_id_for
from canarystream.simulate.fleet import Fleet
from canarystream.simulate.scenario import Scenario

__all__ = ["DecisionLike", "EngineLike", "FixedShareEngine", "share_after", "simulate"]

_BY_TS = itemgetter("ts")


class DecisionLike(Protocol):
    """What the loop reads from a decision."""

    @property
    def deployment(self) -> str: ...

    @property
    def traffic_percent(self) -> float: ...

    @property
    def phase(self) -> str: ...

    @property
    def ts(self) -> float: ...


class EngineLike(Protocol):
    """Anything that takes events one by one and answers with decisions."""

    def process(self, event: dict[str, Any]) -> Sequence[DecisionLike]: ...


def share_after(decision: DecisionLike) -> float:
    """The canary's share of traffic (0..1) once the router has applied ``decision``.

    >>> from types import SimpleNamespace as D
    >>> share_after(D(deployment="d", traffic_percent=25.0, phase="running"))
    0.25
    >>> share_after(D(deployment="d", traffic_percent=25.0, phase="rolled_back"))
    0.0
    >>> share_after(D(deployment="d", traffic_percent=50.0, phase="promoted"))
    1.0
    """
    phase = Phase(decision.phase)
    if phase is Phase.PROMOTED:
        return 1.0
    if phase.is_terminal:
        return 0.0
    return min(max(float(decision.traffic_percent) / 100.0, 0.0), 1.0)


def _check_arguments(scenarios: list[Scenario], step: float, delay: float) -> None:
    """Raise ValueError for a bad ``step`` or ``delay``, or a deployment id used twice."""
    if not math.isfinite(step) or step <= 0:
        raise ValueError("step must be a positive number of seconds")
    if not math.isfinite(delay) or delay < 0:
        raise ValueError("delay must be a non-negative number of seconds")
    seen: set[str] = set()
    for scenario in scenarios:
        if scenario.deployment in seen:
            raise ValueError(f"duplicate deployment id {scenario.deployment!r}")
        seen.add(scenario.deployment)


def simulate(
    scenarios: Iterable[Scenario],
    seed: int = 0,
    engine: EngineLike | None = None,
    step: float = 1.0,
    delay: float = 0.0,
) -> Iterator[dict[str, Any]]:
    """Yield the events of all scenarios in ``ts`` order, closing the loop through ``engine``.

    Each scenario's ``deployment_started`` event comes first at its ``start_ts``, then its
    telemetry, merged with the other scenarios' window by window (``step`` seconds of event
    time). Every event is passed to ``engine.process`` just before it is yielded, in the same
    order; the decisions returned set the canary's share for the following windows, from the
    first window that starts ``delay`` seconds of event time or more after the decision's
    ``ts`` (the router's delay in applying it; 0: the next window). When ``engine`` is None
    the real :class:`canarystream.engine.Engine` is created.
    Scenario ``i`` draws from its own stream of ``seed``, so runs are reproducible.
    """
    scenarios = list(scenarios)
    _check_arguments(scenarios, step, delay)
    if not scenarios:
        return
    if engine is None:
        from canarystream.engine import Engine  # noqa: PLC0415  (the engine is optional here)

        engine = Engine()

    fleets = [Fleet(scenario, seed, stream=index) for index, scenario in enumerate(scenarios)]
    shares = {scenario.deployment: 0.0 for scenario in scenarios}
    steered = {s.deployment for s in scenarios if s.routing is None}  # by the decisions
    waiting: deque[DecisionLike] = deque()  # taken, not yet applied by the router (ts order)
    pending = sorted(fleets, key=lambda fleet: fleet.scenario.start_ts)
    origin = pending[0].scenario.start_ts
    end = max(scenario.end_ts for scenario in scenarios)
    window = 0
    while (t0 := origin + window * step) < end:
        t1 = origin + (window + 1) * step
        while waiting and float(waiting[0].ts) + delay <= t0:
            decision = waiting.popleft()
            shares[decision.deployment] = share_after(decision)
        batch = _window(fleets, pending, shares, t0, t1)
        for event in batch:
            waiting.extend(d for d in engine.process(event) if d.deployment in steered)
            yield event
        window += 1
        if (
            not batch
            and pending
            and all(f.scenario.end_ts <= t1 for f in fleets if f not in pending)
        ):
            # Nothing runs until the next rollout starts: jump to its window.
            window = max(window, math.floor((pending[0].scenario.start_ts - origin) / step))


def _window(
    fleets: list[Fleet], pending: list[Fleet], shares: dict[str, float], t0: float, t1: float
) -> list[dict[str, Any]]:
    """The events of the window [t0, t1) in ``ts`` order: the rollouts that start in it
    (taken from ``pending``), the routing changes of open-loop ones, then every running
    fleet's telemetry at its canary's share."""
    batch: list[dict[str, Any]] = []
    while pending and pending[0].scenario.start_ts < t1:
        batch.append(pending.pop(0).deployment_event())
    sources = len(batch)
    telemetry: list[dict[str, Any]] = []
    for fleet in fleets:
        scenario = fleet.scenario
        if scenario.start_ts < t1 and t0 < scenario.end_ts:
            if scenario.routing is None:
                events = fleet.step(t0, t1 - t0, shares[scenario.deployment])
            else:
                shifts, events = _routed(fleet, t0, t1)
                batch += shifts
                sources += bool(shifts)
            if events:
                telemetry += events
                sources += 1
    batch += telemetry
    if sources > 1:
        batch.sort(key=_BY_TS)  # stable: a deployment_started precedes telemetry at its ts
    return batch


def _routed(
    fleet: Fleet, t0: float, t1: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An open-loop fleet's ``traffic_shifted`` events in [t0, t1) and its telemetry there,
    stepped piece by piece so that each share holds exactly from its shift on."""
    scenario = fleet.scenario
    assert scenario.routing is not None
    start = scenario.start_ts
    lo, hi = max(t0, start), min(t1, scenario.end_ts)
    steps = [(round(start + step.at, 3), step.percent) for step in scenario.routing]
    percent = next((p for at, p in reversed(steps) if at <= lo), 0.0)
    shifts: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    cut = lo
    for at, next_percent in steps:
        if not lo <= at < hi:
            continue
        if at > cut:
            events += fleet.step(cut, at - cut, percent / 100.0)
            cut = at
        percent = next_percent
        shifts.append(
            {
                "type": "traffic_shifted",
                "ts": at,
                "deployment": scenario.deployment,
                "service": scenario.service,
                "traffic_percent": fleet.cohort_percent(percent),
            }
        )
    if hi > cut:
        events += fleet.step(cut, hi - cut, percent / 100.0)
    return shifts, events


class FixedShareEngine:
    """A stand-in engine for open-loop runs: every canary gets a fixed share from its start.

    It answers each ``deployment_started`` with one ADVANCE decision to ``percent`` and never
    decides again, so the simulated telemetry does not depend on any analysis.
    """

    def __init__(self, percent: float) -> None:
        if not 0.0 <= percent <= 100.0:
            raise ValueError("percent must lie within 0..100")
        self.percent = float(percent)

    def process(self, event: dict[str, Any]) -> list[Decision]:
        """Return the fixed-share decision for a ``deployment_started``, else nothing."""
        if event.get("type") != "deployment_started":
            return []
        policy = event.get("policy")
        if isinstance(policy, dict):
            policy = str(policy.get("name", "inline"))
        return [
            Decision(
                decision_id=decision_id_for(event["deployment"], 0, Action.ADVANCE.value),
                deployment=event["deployment"],
                service=event["service"],
                seq=0,
                action=Action.ADVANCE,
                ts=event["ts"],
                stage=0,
                traffic_percent=self.percent,
                phase=Phase.RUNNING,
                baseline_version=event["baseline_version"],
                canary_version=event["canary_version"],
                policy=policy or "default",
                summary=f"open loop: canary share fixed at {self.percent:g} %",
            )
        ]
