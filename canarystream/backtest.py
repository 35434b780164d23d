"""Backtests: recorded rollouts judged again under a policy, beside what the recording says.

A backtest is a replay (:mod:`canarystream.replay`: the same inputs, decoder, engine and
decisions) of a recording whose routing was set by something else, so the routing is the
recording's: each ``traffic_shifted`` event says what share the canary received from its
``ts`` on, whatever the policy decides. So no decision is awaited: every policy is applied
with no ``actuation_deadline``, and no rollout is held because the recording never routed
what the policy decided. Two kinds of line are taken aside on the way:

* ``decision`` lines (the decisions topic recorded beside the events, or a decisions file
  given as one more input): what happened at the time. They are compared with the policy's,
  never applied; one that is not a valid decision is rejected like any bad line.
* ``traffic_shifted`` events are applied as the engine applies them, and their shares noted:
  the recording's routing, shown when it holds no decision.

For each rollout, :class:`Course` sums up one judge's decisions (the policy's or the
recording's): where it ended and when, the stages it walked, its first hold and its rollback
or promotion, all in event time from the rollout's start. Same input, same result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from canarystream.contracts.codec import decode_decision
from canarystream.contracts.decision import Action, Decision, Phase
from canarystream.engine import Engine
from canarystream.governance.identity import Origin
from canarystream.policy.loading import PolicyRegistry
from canarystream.policy.model import Policy
from canarystream.replay import Rejection, ReplayResult, replay_files

__all__ = [
    "BacktestEngine",
    "BacktestResult",
    "Comparison",
    "Course",
    "Unawaited",
    "backtest_files",
]

_DECISION = "decision"
_SHIFT = "traffic_shifted"


@dataclass
class Course:
    """What one judge decided about one rollout, in event time from the rollout's start."""

    decisions: int = 0
    phase: Phase | None = None  # after the last decision
    stage: int | None = None  # after the last decision
    last_action: Action | None = None
    phase_since: float | None = None  # when the final phase and stage were entered
    stages: list[float] = field(default_factory=list)  # traffic % of each stage entered
    first_hold: float | None = None
    ended: tuple[Action, float] | None = None  # the first rollback or promotion

    def add(self, decision: Decision, start: float) -> None:
        """Fold one decision of the rollout that started at ``start`` (epoch s)."""
        at = decision.ts - start
        if decision.phase != self.phase or decision.stage != self.stage:
            self.phase_since = at
        if decision.action is Action.ADVANCE and decision.stage != self.stage:
            self.stages.append(decision.traffic_percent)  # not a hold cleared at its stage
        if decision.action is Action.HOLD and self.first_hold is None:
            self.first_hold = at
        if decision.action in (Action.ROLLBACK, Action.PROMOTE) and self.ended is None:
            self.ended = (decision.action, at)
        self.phase, self.stage = decision.phase, decision.stage
        self.last_action = decision.action
        self.decisions += 1

    @property
    def outcome(self) -> str:
        """Where the rollout ended: its phase, with a rollback's verification if any."""
        if self.phase is None:
            return "none"
        if self.last_action is Action.ROLLBACK_VERIFIED:
            return f"{self.phase.value} (recovery verified)"
        if self.last_action is Action.ROLLBACK_NOT_RECOVERING:
            return f"{self.phase.value} (not recovering)"
        return self.phase.value


@dataclass
class Comparison:
    """One rollout: the policy's course, the recording's decisions, and its routing."""

    deployment: str
    service: str
    started_at: float | None  # epoch s; None: the policy never started it
    policy_name: str | None
    policy: Course
    recorded: Course
    routed: list[float]  # traffic % of the recording's traffic_shifted events, in order


@dataclass
class BacktestResult:
    """A backtest's replay, and per rollout (in start order) its comparison."""

    replay: ReplayResult
    rollouts: list[Comparison]
    recorded_decisions: int  # decision lines the recording held

    @property
    def judged(self) -> bool:
        """Whether the policy judged any rollout (see :attr:`ReplayResult.judged`)."""
        return self.replay.judged


class Unawaited(PolicyRegistry):
    """The policies of another registry, inline ones included, with no actuation deadline."""

    def __init__(self, base: PolicyRegistry) -> None:
        named = [_unawaited(base.resolve(name)) for name in base.names()]
        super().__init__(named, default=_unawaited(base.default))

    def resolve(self, spec: str | Mapping[str, Any] | None) -> Policy:
        """The policy a deployment asks for (see :meth:`PolicyRegistry.resolve`), unawaited."""
        return _unawaited(super().resolve(spec))


def _unawaited(policy: Policy) -> Policy:
    if policy.actuation_deadline is None:
        return policy
    return policy.model_copy(update={"actuation_deadline": None})


class BacktestEngine(Engine):
    """The engine, with the recording's decision lines taken aside and its routing noted.

    Everything else is the engine's own: telemetry, announcements, commands and
    ``traffic_shifted`` events are applied exactly as in ``replay`` and the worker, under the
    same policies with no actuation deadline (:class:`Unawaited`).
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(
            Unawaited(engine.policies), tombstone_ttl=engine.tombstone_ttl, access=engine.access
        )
        self.recorded: list[Decision] = []
        self.routed: dict[str, list[float]] = {}

    @classmethod
    def like(cls, engine: Engine) -> BacktestEngine:
        """A backtest engine with ``engine``'s policies, tombstone time and access."""
        return cls(engine)

    def process(
        self, event: Any, message: str | None = None, origin: Origin | None = None
    ) -> list[Decision]:
        """As :meth:`Engine.process`; a ``decision`` is kept as recorded, never applied."""
        kind = event.get("type") if type(event) is dict else None
        if kind == _DECISION:
            self.recorded.append(_recorded_decision(event))
            return []
        decisions = super().process(event, message, origin)
        if kind == _SHIFT:  # applied: so valid
            self.routed.setdefault(event["deployment"], []).append(float(event["traffic_percent"]))
        return decisions


def _recorded_decision(event: dict[str, Any]) -> Decision:
    """A recorded decision line, validated as the decisions topic's readers do."""
    return decode_decision(orjson.dumps(event))


def backtest_files(  # noqa: PLR0913 -- keyword-only callbacks and options
    paths: Iterable[str | Path],
    *,
    engine: Engine | None = None,
    on_decision: Callable[[Decision], None] | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    strict: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Judge the recordings in ``paths`` under ``engine``'s policies (see the module doc).

    The arguments are :func:`~canarystream.replay.replay_files`'s; ``on_decision`` sees the
    policy's decisions, in the order replay writes them.
    """
    judge = BacktestEngine.like(engine or Engine())
    mine: dict[str, list[Decision]] = {}

    def decided(decision: Decision) -> None:
        mine.setdefault(decision.deployment, []).append(decision)
        if on_decision is not None:
            on_decision(decision)

    result = replay_files(
        paths,
        engine=judge,
        on_decision=decided,
        on_reject=on_reject,
        strict=strict,
        on_progress=on_progress,
    )
    return BacktestResult(
        replay=result,
        rollouts=_compare(judge, mine),
        recorded_decisions=len(judge.recorded),
    )


def _compare(judge: BacktestEngine, mine: dict[str, list[Decision]]) -> list[Comparison]:
    """Per rollout, the policy's course beside the recording's: the policy's rollouts in
    start order, then those only the recording decided about, by deployment id."""
    theirs: dict[str, list[Decision]] = {}
    for decision in sorted(judge.recorded, key=lambda d: (d.deployment, d.seq, d.ts)):
        theirs.setdefault(decision.deployment, []).append(decision)
    out: list[Comparison] = []
    for deployment, rollout in judge.rollouts.items():
        start = rollout.started_at
        out.append(
            Comparison(
                deployment=deployment,
                service=rollout.service,
                started_at=start,
                policy_name=rollout.policy.name,
                policy=_course(mine.get(deployment, []), start),
                recorded=_course(theirs.get(deployment, []), start),
                routed=judge.routed.get(deployment, []),
            )
        )
    for deployment in sorted(theirs.keys() - judge.rollouts.keys()):
        recorded = theirs[deployment]
        start = next((d.ts for d in recorded if d.seq == 0), recorded[0].ts)
        out.append(
            Comparison(
                deployment=deployment,
                service=recorded[0].service,
                started_at=None,
                policy_name=None,
                policy=Course(),
                recorded=_course(recorded, start),
                routed=judge.routed.get(deployment, []),
            )
        )
    return out


def _course(decisions: list[Decision], start: float) -> Course:
    course = Course()
    for decision in decisions:
        course.add(decision, start)
    return course
