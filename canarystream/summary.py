"""Rollout summaries folded from decisions: where each rollout stands, with no I/O.

The decisions topic is the cluster's record of every rollout; :class:`RolloutBook` folds its
decisions, in any number of calls, into one :class:`RolloutSummary` per deployment (phase,
stage, traffic, the last decision and the checks that keep it from moving on) and keeps each
rollout's timeline. Nothing here reads a clock: ages are computed against a ``now`` the caller
gives.

Invariants:

* One deployment's decisions share a partition (they are keyed by deployment), so they arrive
  in ``seq`` order; a decision whose ``seq`` is not above the last one folded is a duplicate
  (a recovered worker publishes a batch again) and changes nothing.
* A rollout's start is its first decision folded. When the reader did not go back far enough
  to see ``seq`` 0 or 1, :attr:`RolloutSummary.first_seq` says so.
* A rollout enters its stage at the first decision naming that stage; a finished rollout's
  time in stage stops at the decision that finished it.

>>> from canarystream.contracts.decision import Action, Phase, decision_id_for
>>> def decision(seq, action, stage, share, phase=Phase.RUNNING):
...     return Decision(decision_id=decision_id_for("d1", seq, action.value), deployment="d1",
...         service="shop", seq=seq, action=action, ts=100.0 + 60 * seq, stage=stage,
...         traffic_percent=share, phase=phase, baseline_version="v1", canary_version="v2",
...         policy="default", summary=action.value)
>>> book = RolloutBook()
>>> for d in (decision(1, Action.ADVANCE, 0, 5), decision(2, Action.ADVANCE, 1, 25)):
...     _ = book.add(d)
>>> (summary,) = book.summaries()
>>> summary.stage, summary.traffic_percent, summary.age(400.0), summary.in_stage(400.0)
(1, 25.0, 240.0, 180.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from canarystream.contracts.decision import CheckReason, Decision, Phase, Verdict

__all__ = [
    "ATTENTION",
    "CheckStatus",
    "RolloutBook",
    "RolloutSummary",
    "plain_value",
    "summarize",
]

#: Verdicts of the checks a summary lists: what keeps a rollout from moving on.
ATTENTION = (Verdict.FAIL, Verdict.INCONCLUSIVE)

# Checks whose estimate, bound and tolerance are a ratio of canary to baseline rates.
_RATIO_KINDS = frozenset({"error_rate", "probe"})


def plain_value(kind: str, value: float | None, *, of: str = "estimate") -> str:
    """A check's number in the units its kind speaks: ``×`` ratios, percentages, or as is.

    ``of`` says which number it is (``estimate``, ``bound`` or ``tolerance``): a latency
    check's estimate and tolerance are relative changes, its bound a ratio of exceedances.

    >>> plain_value("error_rate", 1.8349), plain_value("latency", 0.125)
    ('×1.83', '+12.5%')
    >>> plain_value("latency", 1.02, of="bound"), plain_value("slo_error_rate", 0.0042)
    ('×1.02', '0.42%')
    >>> plain_value("latency_shift", 0.031), plain_value("latency_shift", 0.15, of="bound")
    ('+3.1%', '+15%')
    >>> plain_value("gauge", 12345.678), plain_value("error_rate", None)
    ('12346', '—')
    """
    if value is None or not math.isfinite(value):
        return "—"
    if kind in _RATIO_KINDS or (kind == "latency" and of == "bound"):
        return f"×{value:.3g}"
    if kind in ("latency", "latency_shift"):  # relative changes (0.05: 5 % slower)
        return f"{value * 100:+.3g}%"
    if kind.startswith("slo"):
        return f"{value * 100:.3g}%"
    return f"{value:.5g}"


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """One check that keeps a rollout where it is: its verdict and numbers, raw and plain."""

    check: str
    kind: str
    verdict: Verdict
    critical: bool
    estimate: float | None
    bound: float | None
    tolerance: float | None
    message: str

    @classmethod
    def from_reason(cls, reason: CheckReason) -> CheckStatus:
        """The status of one reason of a decision; the bound is the upper confidence limit,
        the tolerance the one in force (advance or promote) when the reason names it."""
        tolerance = reason.advance_tolerance
        if tolerance is None:
            tolerance = reason.tolerance
        return cls(
            check=reason.check,
            kind=reason.kind,
            verdict=reason.verdict,
            critical=reason.critical,
            estimate=reason.estimate,
            bound=reason.upper,
            tolerance=tolerance,
            message=reason.message,
        )

    @property
    def plain(self) -> str:
        """``estimate ×1.83, bound ×2.4, tolerance ×1.5`` in the units of the check's kind."""
        return (
            f"estimate {plain_value(self.kind, self.estimate)}, "
            f"bound {plain_value(self.kind, self.bound, of='bound')}, "
            f"tolerance {plain_value(self.kind, self.tolerance, of='tolerance')}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output: raw numbers and the readable line."""
        return {
            "check": self.check,
            "kind": self.kind,
            "verdict": self.verdict.value,
            "critical": self.critical,
            "estimate": _finite(self.estimate),
            "bound": _finite(self.bound),
            "tolerance": _finite(self.tolerance),
            "plain": self.plain,
            "message": self.message,
        }


@dataclass(slots=True)
class RolloutSummary:
    """Where one rollout stands after the decisions folded so far."""

    last: Decision
    started_at: float
    stage_since: float
    first_seq: int
    decisions: int = 1
    ended_at: float | None = None
    ending: Decision | None = None  # the decision that finished the rollout
    paged: bool = False  # some decision of the rollout asked for a person

    @property
    def deployment(self) -> str:
        return self.last.deployment

    @property
    def service(self) -> str:
        return self.last.service

    @property
    def phase(self) -> Phase:
        return self.last.phase

    @property
    def stage(self) -> int:
        return self.last.stage

    @property
    def traffic_percent(self) -> float:
        return self.last.traffic_percent

    @property
    def attention(self) -> list[CheckStatus]:
        """The last decision's checks that fail or are inconclusive (guards included); for a
        finished rollout whose last decision has none (a rollback verified), those of the
        decision that finished it: why it ended."""
        found = _attention(self.last)
        if not found and self.ending is not None:
            found = _attention(self.ending)
        return found

    def age(self, now: float) -> float:
        """Seconds from the rollout's first decision to ``now`` (never negative)."""
        return max(0.0, now - self.started_at)

    def in_stage(self, now: float) -> float:
        """Seconds in the current stage, up to ``now`` or to the rollout's end."""
        end = now if self.ended_at is None else min(now, self.ended_at)
        return max(0.0, end - self.stage_since)

    def fold(self, decision: Decision) -> None:
        """Take the rollout's next decision (``seq`` above :attr:`last`'s)."""
        if decision.stage != self.last.stage:
            self.stage_since = decision.ts
        if self.ended_at is None and decision.phase.is_terminal:
            self.ended_at = decision.ts
            self.ending = decision
        self.paged = self.paged or decision.page
        self.decisions += 1
        self.last = decision

    def to_dict(self, now: float) -> dict[str, Any]:
        """Plain data for JSON output (times as epoch seconds, durations in seconds)."""
        last = self.last
        return {
            "deployment": last.deployment,
            "service": last.service,
            "baseline_version": last.baseline_version,
            "canary_version": last.canary_version,
            "policy": last.policy,
            "phase": last.phase.value,
            "stage": last.stage,
            "traffic_percent": last.traffic_percent,
            "started_at": self.started_at,
            "stage_since": self.stage_since,
            "ended_at": self.ended_at,
            "age_seconds": self.age(now),
            "in_stage_seconds": self.in_stage(now),
            "paged": self.paged,
            "decisions": self.decisions,
            "first_seq": self.first_seq,
            "last_decision": {
                "decision_id": last.decision_id,
                "seq": last.seq,
                "action": last.action.value,
                "ts": last.ts,
                "summary": last.summary,
                "page": last.page,
            },
            "attention": [check.to_dict() for check in self.attention],
        }


@dataclass
class RolloutBook:
    """The fold: decisions in, one :class:`RolloutSummary` and one timeline per deployment.

    ``keep_timelines``: also keep every decision of each rollout (for :meth:`timeline`).
    """

    keep_timelines: bool = True
    duplicates: int = 0  # decisions folded again (same or older seq): ignored
    _rollouts: dict[str, RolloutSummary] = field(default_factory=dict)
    _timelines: dict[str, list[Decision]] = field(default_factory=dict)

    def add(self, decision: Decision) -> RolloutSummary | None:
        """Fold one decision; the rollout's summary, or None for a duplicate."""
        summary = self._rollouts.get(decision.deployment)
        if summary is None:
            summary = RolloutSummary(
                last=decision,
                started_at=decision.ts,
                stage_since=decision.ts,
                first_seq=decision.seq,
                ended_at=decision.ts if decision.phase.is_terminal else None,
                ending=decision if decision.phase.is_terminal else None,
                paged=decision.page,
            )
            self._rollouts[decision.deployment] = summary
        elif decision.seq <= summary.last.seq:
            self.duplicates += 1
            return None
        else:
            summary.fold(decision)
        if self.keep_timelines:
            self._timelines.setdefault(decision.deployment, []).append(decision)
        return summary

    def extend(self, decisions: Iterable[Decision]) -> RolloutBook:
        """Fold every decision of ``decisions``; returns self."""
        for decision in decisions:
            self.add(decision)
        return self

    def get(self, deployment: str) -> RolloutSummary | None:
        return self._rollouts.get(deployment)

    def timeline(self, deployment: str) -> list[Decision]:
        """The rollout's decisions in ``seq`` order (empty without ``keep_timelines``)."""
        return list(self._timelines.get(deployment, ()))

    def summaries(self) -> list[RolloutSummary]:
        """Every rollout: live ones first, then by most recent decision."""
        return sorted(
            self._rollouts.values(),
            key=lambda s: (s.phase.is_terminal, -s.last.ts, s.deployment),
        )

    @property
    def newest_ts(self) -> float | None:
        """The event time of the newest decision folded (None before any): the clock of a
        cluster whose event time is not the wall clock's (a replay, a demo)."""
        return max((s.last.ts for s in self._rollouts.values()), default=None)

    def __len__(self) -> int:
        return len(self._rollouts)


def summarize(decisions: Iterable[Decision]) -> list[RolloutSummary]:
    """Every rollout's summary from ``decisions`` (see :meth:`RolloutBook.summaries`)."""
    return RolloutBook(keep_timelines=False).extend(decisions).summaries()


def _attention(decision: Decision) -> list[CheckStatus]:
    return [CheckStatus.from_reason(r) for r in decision.reasons if r.verdict in ATTENTION]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
