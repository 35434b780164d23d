"""Peer judges for comparison, fed the same per-minute aggregates as the benchmark's engine.

* :class:`IntervalMannWhitneyJudge` — a Kayenta-like judge (after Netflix ACA's
  Mann-Whitney classifier as documented by Kayenta): every ``interval`` minutes, for each
  metric (error rate, mean latency) over that interval's per-instance, per-minute samples, a
  Mann-Whitney test with a Hodges-Lehmann confidence interval at 98 %. A metric is *High*
  (fails) when the interval's lower bound exceeds ``tolerance`` x |estimate| (the estimate
  is clearly different from zero, not just significantly so), the two-sided p-value is below
  1 - confidence, and the mean ratio canary / baseline is at least 1.0. The score is the share
  of metrics that pass; pass >= 75, marginal >= 50 (a hold), fail < 50 (rollback). With
  ``critical`` any failing metric fails the run (a metric marked critical).
* :class:`ThresholdJudge` — Argo Rollouts / Flagger-like per-minute threshold checks: a
  minute fails if the canary's error rate exceeds 1.5 x the baseline's or 2 % absolute, or
  its p99 latency exceeds 500 ms; ``failure_limit`` failed minutes roll back.

Both follow the policy's stage schedule: five stages of six minutes, promotion at 30 min.
Neither reads the engine's internals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import mannwhitneyu, norm

from canarystream.simulate.paired import ChunkStats

__all__ = ["IntervalMannWhitneyJudge", "JudgeResult", "ThresholdJudge", "hodges_lehmann"]

LIFETIME_MIN = 30  # five stages of six minutes


@dataclass
class JudgeResult:
    """How a judge ended one rollout."""

    outcome: str = "running"  # running | rollback | promote | held
    minute: int | None = None  # minute (since start) of the terminal decision
    exposed: float = 0.0  # canary requests served before the rollback
    holds: int = 0  # judgements that held rather than advanced

    @property
    def done(self) -> bool:
        """Whether the judge reached a terminal decision."""
        return self.outcome in ("rollback", "promote", "held")


def hodges_lehmann(
    experiment: np.ndarray, control: np.ndarray, confidence: float
) -> tuple[float, float, float]:
    """Hodges-Lehmann shift estimate and its distribution-free confidence interval.

    The interval is between order statistics of the pairwise differences, with the rank
    taken from the normal approximation to the Mann-Whitney statistic (as R's wilcox.test
    does for large or tied samples).
    """
    diffs = np.sort((experiment[:, None] - control[None, :]).ravel())
    m, n = len(experiment), len(control)
    mn = m * n
    z = norm.ppf(0.5 + confidence / 2)
    k = math.floor(mn / 2 - z * math.sqrt(mn * (m + n + 1) / 12.0))
    k = min(max(k, 0), mn - 1)
    return float(np.median(diffs)), float(diffs[k]), float(diffs[mn - 1 - k])


def classify(
    experiment: np.ndarray,
    control: np.ndarray,
    *,
    tolerance: float = 0.25,
    confidence: float = 0.98,
    effect_threshold: float = 1.0,
) -> str:
    """``pass``, ``high`` or ``nodata`` for a metric where an increase is worse."""
    if experiment.size == 0 or control.size == 0:
        return "nodata"
    if np.array_equal(np.sort(experiment), np.sort(control)):
        return "pass"
    if np.unique(np.concatenate([experiment, control])).size == 1:
        return "pass"
    estimate, lower, _upper = hodges_lehmann(experiment, control, confidence)
    p_value = mannwhitneyu(experiment, control, alternative="two-sided").pvalue
    control_mean = float(control.mean())
    ratio = float(experiment.mean()) / control_mean if control_mean > 0 else math.inf
    if lower > tolerance * abs(estimate) and p_value < 1 - confidence and ratio >= effect_threshold:
        return "high"
    return "pass"


class IntervalMannWhitneyJudge:
    """Kayenta-like interval judge (see the module docstring)."""

    def __init__(
        self,
        interval_min: int,
        *,
        critical: bool = False,
        pass_score: float = 75.0,
        marginal_score: float = 50.0,
    ) -> None:
        self.interval = interval_min
        self.critical = critical
        self.pass_score = pass_score
        self.marginal_score = marginal_score
        self.minutes: list[ChunkStats] = []
        self.result = JudgeResult()
        self.canary_requests = 0.0

    def observe(self, stats: ChunkStats) -> None:
        """Take one more minute of aggregates; judge at interval boundaries."""
        if self.result.done:
            return
        self.minutes.append(stats)
        self.canary_requests += float(stats.requests[1])
        minute = len(self.minutes)
        if minute % self.interval and minute < LIFETIME_MIN:
            return
        window = self.minutes[-self.interval :]
        verdicts = []
        for metric in ("inst_error_rate", "inst_mean_latency"):
            control = np.concatenate([getattr(s, metric)[0] for s in window])
            experiment = np.concatenate([getattr(s, metric)[1] for s in window])
            verdicts.append(classify(experiment, control))
        judged = [v for v in verdicts if v != "nodata"]
        score = 100.0 * sum(v == "pass" for v in judged) / len(judged) if judged else 0.0
        if self.critical and "high" in judged:
            score = 0.0
        if score < self.marginal_score:
            self.result = JudgeResult("rollback", minute, self.canary_requests, self.result.holds)
        elif minute >= LIFETIME_MIN:
            outcome = "promote" if score >= self.pass_score else "held"
            self.result = JudgeResult(outcome, minute, 0.0, self.result.holds)
        elif score < self.pass_score:
            self.result.holds += 1


class ThresholdJudge:
    """Argo Rollouts / Flagger-like per-minute threshold judge (see the module docstring)."""

    def __init__(
        self,
        *,
        failure_limit: int = 2,
        error_ratio: float = 1.5,
        max_error_rate: float = 0.02,
        max_p99_ms: float = 500.0,
    ) -> None:
        self.failure_limit = failure_limit
        self.error_ratio = error_ratio
        self.max_error_rate = max_error_rate
        self.max_p99_ms = max_p99_ms
        self.failures = 0
        self.minute = 0
        self.canary_requests = 0.0
        self.result = JudgeResult()

    def observe(self, stats: ChunkStats) -> None:
        """Take one more minute: one measurement."""
        if self.result.done:
            return
        self.minute += 1
        self.canary_requests += float(stats.requests[1])
        n_base, n_can = stats.requests
        failed = False
        if n_can > 0:
            rate_can = stats.errors[1] / n_can
            rate_base = stats.errors[0] / n_base if n_base > 0 else 0.0
            failed = rate_can > self.error_ratio * rate_base or rate_can > self.max_error_rate
            failed = failed or bool(stats.p99[1] > self.max_p99_ms)
        self.failures += failed
        if self.failures >= self.failure_limit:
            self.result = JudgeResult("rollback", self.minute, self.canary_requests)
        elif self.minute >= LIFETIME_MIN:
            self.result = JudgeResult("promote", self.minute)
