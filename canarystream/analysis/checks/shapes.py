"""Statistical shapes that several check kinds share.

* :class:`RateRatioUnit` — a ratio of event rates, canary over baseline (errors, probes);
* :class:`OneSampleRateUnit` — the canary's rate against an absolute budget (SLOs);
* :class:`MeanDifferenceUnit` — a stream of canary-minus-baseline differences (typical
  latency, gauges).

Each gives its verdict in :meth:`evaluate` and reports the same numbers in :meth:`explain`.
A FAIL (rollback) is decided by a change-aware test (an e-detector, or restarted confidence
sequences; see :mod:`~canarystream.analysis.sequential`), so a regression that starts late in
the rollout is not held back by the evidence of the healthy minutes before it; a PASS (no harm
shown) by the cumulative confidence bounds, which use all the evidence.
"""

from __future__ import annotations

import math

from canarystream.analysis.checks.base import (
    Evidence,
    Gate,
    Tick,
    Unit,
    leaning,
    samples_to_reach,
)
from canarystream.analysis.cohort import CohortBucket, Slice
from canarystream.analysis.sequential import (
    MeanRestarts,
    MeanSequence,
    RatioSequence,
    rate_upper_bound,
)
from canarystream.analysis.state import Reader, State
from canarystream.contracts.decision import CheckReason, Verdict
from canarystream.readable import evidence_text, percent, times

__all__ = ["MeanDifferenceUnit", "OneSampleRateUnit", "RateRatioUnit"]


class RateRatioUnit(Unit):
    """Ratio of event rates (errors per request, failed probes per probe)."""

    def __init__(  # noqa: PLR0913 -- keyword-only tolerances of the check
        self,
        name: str,
        *,
        critical: bool,
        alpha: float,
        tolerance: float,
        advance_tolerance: float,
        promote_tolerance: float,
        abs_margin: float,
    ) -> None:
        self.name, self.critical, self.alpha = name, critical, alpha
        self.tolerance = tolerance
        self.advance_tolerance = advance_tolerance
        self.promote_tolerance = promote_tolerance
        self.abs_margin = abs_margin
        self.test = RatioSequence(anchors=(tolerance, advance_tolerance), detect=tolerance)
        self.exposure = [0, 0]  # canary, baseline
        self.events = [0, 0]

    def bound_text(self, value: float) -> str:
        return f"ratio ≤ {times(value)}"

    def extract(self, bucket: CohortBucket) -> tuple[int, int]:
        """(events, exposure) of one cohort in one tick."""
        raise NotImplementedError

    def update(self, tick: Tick) -> None:
        xc, nc = self.extract(tick.canary)
        xb, nb = self.extract(tick.baseline)
        self.exposure[0] += nc
        self.exposure[1] += nb
        self.events[0] += xc
        self.events[1] += xb
        self.test.update(xc, xb, nc, nb)

    def _within_margin(self, upper: float, gate: Gate) -> bool:
        """Whether the extra bad requests are bounded within the blast-radius margin."""
        # Blast radius: rare events at a small share cannot show a tight ratio quickly, but a
        # bound on the extra bad requests, as a share of *all* traffic at the next stage
        # (ratio bound - 1) x baseline rate x next share, within a margin is no harm either.
        base_rate = self.events[1] / self.exposure[1] if self.exposure[1] else 1.0
        if math.isfinite(upper) and (upper - 1.0) * base_rate * gate.next_share <= self.abs_margin:
            return True
        # With no events in either cohort no ratio can be judged; the canary's own rate bounds
        # the extra bad requests too (the baseline's rate is at least 0); at promotion the next
        # share is all traffic, so the bound must be within the margin on its own.
        canary_rate = rate_upper_bound(self.events[0], self.exposure[0], gate.alpha)
        return canary_rate * gate.next_share <= self.abs_margin

    def _leaning(self, e_value: float, bound: float, gate: Gate) -> str | None:
        """Why the evidence leans toward harm (None: it does not); see :func:`leaning`."""
        estimate = self.test.estimate()
        beyond = None
        if estimate is not None and estimate > bound:
            beyond = f"estimate {times(estimate)} beyond {times(bound)}"
        return leaning(e_value, gate, self.test.e_value(self.tolerance), beyond)

    def evaluate(self, gate: Gate) -> Evidence:
        if self.exposure[0] == 0 and self.exposure[1] == 0:
            return Evidence(self, gate, None)
        if self.exposure[0] == 0:
            return Evidence(self, gate, Verdict.NO_DATA)
        e_value = self.test.detector()
        if e_value * self.alpha >= 1.0:
            return Evidence(self, gate, Verdict.FAIL, e_value=e_value)
        if not gate.ready:
            return Evidence(self, gate, Verdict.INCONCLUSIVE, e_value=e_value)
        upper = self.test.upper_bound(gate.alpha)
        bound = gate.in_force(self.advance_tolerance, self.promote_tolerance)
        passes, why = upper <= bound, None
        if not passes and self._within_margin(upper, gate):
            why = self._leaning(e_value, bound, gate)
            passes = why is None
        return Evidence(
            self,
            gate,
            Verdict.PASS if passes else Verdict.INCONCLUSIVE,
            e_value=e_value,
            upper=upper,
            bound=bound,
            ruled_out=upper if gate.promoting and math.isfinite(upper) else None,
            more=None if passes else self._more(upper, bound, gate, margin=why is None),
            leaning=why,
        )

    def risk_evidence(self, evidence: Evidence, error_ratio: float) -> Evidence | None:
        gate = evidence.gate
        upper = self.test.upper_bound(gate.alpha)
        return Evidence(
            self,
            gate,
            Verdict.PASS if upper <= error_ratio else Verdict.INCONCLUSIVE,
            e_value=evidence.e_value,
            upper=upper,
            bound=error_ratio,
            ruled_out=upper if math.isfinite(upper) else None,
        )

    def leans(self, evidence: Evidence, e_level: float, error_ratio: float) -> str | None:
        found = super().leans(evidence, e_level, error_ratio)
        estimate = self.test.estimate()
        if found is None and estimate is not None and estimate > error_ratio:
            found = f"estimate {times(estimate)} beyond {times(error_ratio)}"
        return found

    def _more(self, upper: float, bound: float, gate: Gate, *, margin: bool) -> int | None:
        """Further canary exposure before the upper bound passes (log-ratio scale); on the
        blast-radius margin too if ``margin`` (not for evidence that leans toward harm)."""
        estimate = self.test.estimate()
        if estimate is None or not 0.0 < estimate < math.inf or not math.isfinite(upper):
            return None
        # The blast-radius clause passes a bound up to 1 + margin / (base rate x next share).
        base_rate = self.events[1] / self.exposure[1] if self.exposure[1] else 0.0
        if margin and base_rate > 0.0 and gate.next_share > 0.0:
            bound = max(bound, 1.0 + self.abs_margin / (base_rate * gate.next_share))
        return samples_to_reach(
            self.exposure[0], math.log(estimate), math.log(upper), math.log(bound)
        )

    def explain(self, evidence: Evidence) -> CheckReason:
        e_value = evidence.e_value
        if e_value is None:
            e_value = self.test.detector()
        lower = self.test.lower_bound(self.alpha)
        upper = evidence.upper
        in_force = evidence.bound
        if in_force is None:
            in_force = evidence.gate.in_force(self.advance_tolerance, self.promote_tolerance)
        estimate = self.test.estimate()
        rates = [e / n if n else None for e, n in zip(self.events, self.exposure, strict=True)]
        # The interval in the message is context at the confidence in force; the ``upper``
        # field is only the bound a PASS was tested with.
        interval = self.interval_upper(evidence)
        message = (
            f"rate canary {percent(rates[0])} vs baseline {percent(rates[1])}: "
            f"{times(estimate)} [{times(lower)}, {times(interval)}], "
            f"{evidence_text(e_value, 1 / self.alpha)}, tolerance {times(self.tolerance)}"
        )
        if evidence.verdict is Verdict.PASS and upper is not None and upper > in_force:
            message += (
                f"; no harm by blast radius: extra bad requests within "
                f"{percent(self.abs_margin)} of all traffic at {percent(evidence.gate.next_share)}"
            )
        return self.account(
            evidence,
            canary_samples=self.exposure[0],
            baseline_samples=self.exposure[1],
            estimate=estimate if estimate is None or math.isfinite(estimate) else None,
            lower=lower,
            upper=upper if upper is not None and math.isfinite(upper) else None,
            e_value=e_value,
            threshold=1.0 / self.alpha,
            tolerance=self.tolerance,
            advance_tolerance=in_force,
            message=message,
        )

    def interval_upper(self, evidence: Evidence) -> float | None:
        if evidence.upper is not None:
            return evidence.upper
        return self.test.upper_bound(evidence.gate.alpha)

    def to_state(self) -> State:
        return {
            **super().to_state(),
            "tolerance": self.tolerance,
            "advance_tolerance": self.advance_tolerance,
            "promote_tolerance": self.promote_tolerance,
            "abs_margin": self.abs_margin,
            "test": self.test.to_state(),
            "exposure": list(self.exposure),
            "events": list(self.events),
        }

    def restore(self, r: Reader, check: object, trackers: object) -> None:
        self.tolerance, self.advance_tolerance = r.real("tolerance"), r.real("advance_tolerance")
        self.promote_tolerance, self.abs_margin = r.real("promote_tolerance"), r.real("abs_margin")
        self.test = RatioSequence.from_state(r.child("test"))
        self.exposure, self.events = r.integers("exposure", 2), r.integers("events", 2)


class OneSampleRateUnit(Unit):
    """Absolute budget on a canary rate (error rate, or share of requests over a latency).

    Each canary request is an event with probability ``p``; the test is
    ``H0: p <= budget`` via a :class:`RatioSequence` on the odds ratio against the budget.
    """

    def __init__(
        self, name: str, *, critical: bool, alpha: float, budget: float, describe: str
    ) -> None:
        self.name, self.critical, self.alpha = name, critical, alpha
        self.budget = budget
        self.describe = describe
        self.test = RatioSequence(anchors=(1.0,), detect=1.0)
        self.events = 0
        self.samples = 0

    def bound_text(self, value: float) -> str:
        return f"rate ≤ {percent(value)}"

    def extract(self, requests: Slice) -> int:
        """Canary requests in one tick that count against the budget."""
        raise NotImplementedError

    def update(self, tick: Tick) -> None:
        n = tick.canary.requests.requests
        if n:
            x = self.extract(tick.canary.requests)
            self.events += x
            self.samples += n
            self.test.update(x, n - x, self.budget, 1.0 - self.budget)

    def _rate(self, odds_ratio: float) -> float:
        if math.isinf(odds_ratio):
            return 1.0
        return self.budget * odds_ratio / (self.budget * odds_ratio + 1.0 - self.budget)

    def evaluate(self, gate: Gate) -> Evidence:
        if self.samples == 0:
            return Evidence(self, gate, Verdict.NO_DATA)
        e_value = self.test.detector()
        if e_value * self.alpha >= 1.0:
            return Evidence(self, gate, Verdict.FAIL, e_value=e_value)
        if not gate.ready:
            return Evidence(self, gate, Verdict.INCONCLUSIVE, e_value=e_value)
        upper = self.test.upper_bound(gate.alpha)
        passes = upper <= 1.0
        more = None
        estimate = self.test.estimate()
        if not passes and estimate is not None and 0.0 < estimate < math.inf:
            more = samples_to_reach(self.samples, math.log(estimate), math.log(upper), 0.0)
        return Evidence(
            self,
            gate,
            Verdict.PASS if passes else Verdict.INCONCLUSIVE,
            e_value=e_value,
            upper=upper,
            bound=1.0,
            ruled_out=self._rate(upper) if gate.promoting and math.isfinite(upper) else None,
            more=more,
        )

    def explain(self, evidence: Evidence) -> CheckReason:
        e_value = evidence.e_value
        if e_value is None:
            e_value = self.test.detector()
        rate = self.events / self.samples if self.samples else None
        lower = self._rate(self.test.lower_bound(self.alpha))
        upper = None if evidence.upper is None else self._rate(evidence.upper)
        interval = self.interval_upper(evidence)
        message = (
            f"canary {self.describe} {percent(rate)} [{percent(lower)}, {percent(interval)}] vs "
            f"budget {percent(self.budget)}, {evidence_text(e_value, 1 / self.alpha)}"
        )
        return self.account(
            evidence,
            canary_samples=self.samples,
            estimate=rate,
            lower=lower,
            upper=upper,
            e_value=e_value,
            threshold=1.0 / self.alpha,
            tolerance=self.budget,
            advance_tolerance=self.budget,
            message=message,
        )

    def interval_upper(self, evidence: Evidence) -> float | None:
        tested = evidence.upper
        return self._rate(self.test.upper_bound(evidence.gate.alpha) if tested is None else tested)

    def to_state(self) -> State:
        return {
            **super().to_state(),
            "budget": self.budget,
            "describe": self.describe,
            "test": self.test.to_state(),
            "events": self.events,
            "samples": self.samples,
        }

    def restore(self, r: Reader, check: object, trackers: object) -> None:
        self.budget, self.describe = r.real("budget"), r.text("describe")
        self.test = RatioSequence.from_state(r.child("test"))
        self.events, self.samples = r.integer("events"), r.integer("samples")


class MeanDifferenceUnit(Unit):
    """Checks on a stream of canary-minus-baseline differences.

    A :class:`MeanSequence` on the differences fails the check when its lower bound exceeds
    ``limit`` (at half of alpha), or when one of its :class:`MeanRestarts` does (the other
    half, shared by the restarts), and passes it when its upper bound is within
    ``advance_limit`` (``promote_limit`` when promoting). Subclasses decide what one
    difference is and how to show it to a person.
    """

    limit: float
    advance_limit: float
    promote_limit: float
    min_count: int
    tolerance: float
    advance_tolerance: float

    def __init__(self, target: int, every: int = 6, horizon: int = 60) -> None:
        self.diffs = MeanSequence(target=target)
        self.restarts = MeanRestarts(target, every, horizon)
        self.samples = [0, 0]

    def add(self, value: float) -> None:
        """Add one difference to the cumulative sequence and the restarts."""
        self.diffs.update(value)
        self.restarts.update(value)

    def tested_lower(self) -> float:
        """The lower bound the rollback is tested with: the higher of the cumulative
        sequence's (at its share of alpha) and the restarts' (each at its own)."""
        alpha = self.alpha * self.restarts.start_share()
        whole = self.diffs.mean - self.diffs.radius(alpha)
        restarted = self.restarts.highest_lower(self.alpha, self.diffs, self.min_count)
        return max(whole, restarted)

    def fails(self) -> bool:
        """Whether the cumulative sequence or a restart shows a difference above ``limit``."""
        return self.tested_lower() > self.limit

    def severe_limit(self) -> float:
        """The difference the lower bound must pass for a failure to roll back at once even
        when the check is not critical (infinite: never)."""
        return math.inf

    def shown(self, value: float) -> float:
        """A difference (or bound) in the units the check's tolerance is written in."""
        return value

    def describe(self, estimate: float | None, lower: float | None, upper: float | None) -> str:
        """One readable sentence about the current estimate and bounds."""
        raise NotImplementedError

    def evaluate(self, gate: Gate) -> Evidence:
        if self.samples[0] == 0 and self.samples[1] == 0:
            return Evidence(self, gate, None)
        if self.samples[0] == 0:
            return Evidence(self, gate, Verdict.NO_DATA)
        if self.diffs.count < self.min_count:
            return Evidence(self, gate, Verdict.INCONCLUSIVE)
        lower = self.tested_lower()
        if lower > self.limit:
            return Evidence(self, gate, Verdict.FAIL, severe=lower > self.severe_limit())
        if not gate.ready:
            return Evidence(self, gate, Verdict.INCONCLUSIVE)
        limit = gate.in_force(self.advance_limit, self.promote_limit)
        upper = self.diffs.mean + self.diffs.radius(gate.alpha)
        passes = upper <= limit
        return Evidence(
            self,
            gate,
            Verdict.PASS if passes else Verdict.INCONCLUSIVE,
            upper=upper,
            bound=limit,
            ruled_out=self.shown(upper) if gate.promoting else None,
            more=None
            if passes
            else samples_to_reach(self.samples[0], self.diffs.mean, upper, limit),
        )

    def risk_evidence(self, evidence: Evidence, error_ratio: float) -> Evidence | None:
        # What advancing asks (the advance tolerance), at the confidence of evidence's gate.
        found = self.evaluate(Gate(True, 1.0, False, evidence.gate.alpha))
        if found.verdict is Verdict.PASS and found.upper is not None:
            found.ruled_out = self.shown(found.upper)
        return found

    def leans(self, evidence: Evidence, e_level: float, error_ratio: float) -> str | None:
        if self.diffs.count < 2:
            return None
        mean = self.diffs.mean
        lower = mean - self.diffs.radius(1.0 / e_level)
        if lower > self.limit:
            return (
                f"lower bound {self.shown(lower):+.3g} at 1/{e_level:g} above its tolerance "
                f"{self.shown(self.limit):+.3g}"
            )
        if mean > self.advance_limit:
            return (
                f"estimate {self.shown(mean):+.3g} beyond its advance tolerance "
                f"{self.shown(self.advance_limit):+.3g}"
            )
        return None

    def explain(self, evidence: Evidence) -> CheckReason:
        ready = self.diffs.count >= 2
        mean = self.diffs.mean
        estimate = self.shown(mean) if self.diffs.count else None
        lower = self.shown(self.tested_lower()) if ready else None
        upper = None if evidence.upper is None else self.shown(evidence.upper)
        interval = self.interval_upper(evidence)  # context for the message
        in_force = (
            self.shown(self.promote_limit) if evidence.gate.promoting else self.advance_tolerance
        )
        return self.account(
            evidence,
            canary_samples=self.samples[0],
            baseline_samples=self.samples[1],
            estimate=estimate,
            lower=lower,
            upper=upper,
            tolerance=self.tolerance,
            advance_tolerance=in_force,
            message=self.describe(estimate, lower, interval),
        )

    def interval_upper(self, evidence: Evidence) -> float | None:
        if evidence.upper is not None:
            return self.shown(evidence.upper)
        if self.diffs.count < 2:  # a spread needs two differences
            return None
        return self.shown(self.diffs.mean + self.diffs.radius(evidence.gate.alpha))

    def to_state(self) -> State:
        return {
            **super().to_state(),
            "tolerance": self.tolerance,
            "advance_tolerance": self.advance_tolerance,
            "limit": self.limit,
            "advance_limit": self.advance_limit,
            "promote_limit": self.promote_limit,
            "min_count": self.min_count,
            "diffs": self.diffs.to_state(),
            "restarts": self.restarts.to_state(),
            "samples": list(self.samples),
        }

    def restore(self, r: Reader, check: object, trackers: object) -> None:
        self.tolerance, self.advance_tolerance = r.real("tolerance"), r.real("advance_tolerance")
        self.limit, self.advance_limit = r.real("limit"), r.real("advance_limit")
        self.promote_limit, self.min_count = r.real("promote_limit"), r.integer("min_count")
        self.diffs = MeanSequence.from_state(r.child("diffs"))
        self.restarts = MeanRestarts.from_state(r.child("restarts"))
        self.samples = r.integers("samples", 2)
