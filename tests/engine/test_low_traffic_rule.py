"""The low-traffic rule's choices on hand-made evidence: which lower quantile covers an
unjudged one, and every shortfall named when the rule cannot promote."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from canarystream.contracts.decision import Verdict
from canarystream.engine import lowtraffic
from canarystream.policy.model import LowTrafficRule

PASS, OPEN = Verdict.PASS, Verdict.INCONCLUSIVE


def quantile(
    name: str, q: float, verdict: Verdict, *, scope: str = "all", risk: str | None = None
) -> Any:
    unit = SimpleNamespace(latency_quantile=lambda: (scope, q), leans=lambda *_: None)
    return SimpleNamespace(name=name, verdict=verdict, risk=risk, unit=unit)


P99 = quantile("p99", 0.99, OPEN)


def test_the_highest_passed_lower_quantile_of_the_same_latency_covers() -> None:
    candidates = [
        quantile("p50", 0.50, PASS),
        quantile("p75", 0.75, PASS, risk="ruled_out"),
        quantile("p90", 0.90, OPEN),  # neither passed nor ruled out
        quantile("p95-other", 0.95, PASS, scope="other"),  # another latency
        quantile("p999", 0.999, PASS),  # not lower
        P99,
    ]
    assert lowtraffic._cover(P99, candidates, set()).name == "p75"
    assert lowtraffic._cover(P99, candidates, {"p75"}).name == "p50"  # acknowledged: not proof
    assert lowtraffic._cover(P99, candidates, {"p75", "p50"}) is None
    assert lowtraffic._cover(P99, [quantile("p99b", 0.99, PASS)], set()) is None  # not lower


def test_a_check_that_is_no_quantile_has_no_cover() -> None:
    errors = SimpleNamespace(
        name="error_rate",
        verdict=OPEN,
        risk=None,
        unit=SimpleNamespace(latency_quantile=lambda: None),
    )
    assert lowtraffic._cover(errors, [quantile("p50", 0.5, PASS)], set()) is None


def inconclusive(name: str) -> Any:
    """A check with no estimate that cannot rule out the rule's wider bound."""
    unit = SimpleNamespace(
        leans=lambda *_: None,
        latency_quantile=lambda: None,
        risk_evidence=lambda *_: None,
    )
    return SimpleNamespace(name=name, verdict=OPEN, risk=None, unit=unit)


def test_the_rule_names_every_check_that_keeps_it_from_promoting() -> None:
    found = [inconclusive("error_rate"), quantile("p50", 0.5, PASS), inconclusive("probes")]
    outcome = lowtraffic.consider(found, set(), LowTrafficRule(), promoting=True, confidence=0.95)
    assert outcome.evidence is None
    assert outcome.statement == (
        "not applied: error_rate: the rule's wider bound not ruled out at 95%; "
        "probes: the rule's wider bound not ruled out at 95%"
    )


def unjudged(name: str, q: float) -> Any:
    """A latency quantile whose baseline threshold cannot be estimated yet."""
    found = quantile(name, q, OPEN)
    found.unit.unestimated = lambda: "too few baseline requests"
    return found


def test_every_unjudged_quantile_without_a_cover_and_every_open_check_is_named() -> None:
    found = [unjudged("p99", 0.99), unjudged("p999", 0.999), inconclusive("error_rate")]
    outcome = lowtraffic.consider(found, set(), LowTrafficRule(), promoting=True, confidence=0.95)
    assert outcome.evidence is None
    assert outcome.statement == (
        "not applied: error_rate: the rule's wider bound not ruled out at 95%; "
        "p99 not judged and no lower quantile of it passed; "
        "p999 not judged and no lower quantile of it passed"
    )


class Found:
    """Hand-made evidence of one check: its verdict, whether it leans, how the rule took it."""

    def __init__(self, name: str, verdict: Verdict | None, leaning: str | None = None) -> None:
        self.name, self.verdict = name, verdict
        self.risk: str | None = None
        self.note = ""
        self.unit = SimpleNamespace(leans=lambda *_: leaning, latency_quantile=lambda: None)

    def under_rule(self, risk: str, note: str) -> Found:
        self.risk, self.note = risk, note
        return self


def advancing(found: list[Any], skip: frozenset[str] = frozenset()) -> lowtraffic.Outcome:
    return lowtraffic.consider(found, set(skip), LowTrafficRule(), promoting=False, confidence=0.95)


def test_advancing_passes_over_exactly_the_inconclusive_checks_and_marks_them() -> None:
    found = [Found("error_rate", OPEN), Found("p50", PASS), Found("probes", OPEN)]
    outcome = advancing(found)

    assert outcome.evidence == found  # the same evidence, in order
    assert outcome.statement == "error_rate, probes inconclusive, none leaning toward harm"
    note = "inconclusive, not leaning toward harm: passed over by the low-traffic rule"
    assert [(f.risk, f.note) for f in found] == [
        ("not_leaning", note),
        (None, ""),
        ("not_leaning", note),
    ]


def test_every_failing_silent_or_leaning_check_is_named_and_nothing_moves_on() -> None:
    found = [
        Found("error_rate", Verdict.FAIL),
        Found("probes", Verdict.NO_DATA),
        Found("p90", OPEN, leaning="estimate ×2 beyond ×1.5"),
        Found("p50", OPEN),
    ]
    outcome = advancing(found)

    assert outcome.evidence is None
    assert outcome.statement == (
        "not applied: error_rate fail; probes no_data; "
        "p90 leans toward harm: estimate ×2 beyond ×1.5"
    )
    assert all(f.risk is None and f.note == "" for f in found)


def test_acknowledged_and_unused_checks_are_not_the_rule_s_to_weigh() -> None:
    # A check a person acknowledged, or one with no evidence at all, neither blocks the rule
    # nor is passed over by it; with nothing left to weigh the rule says nothing.
    found = [Found("error_rate", Verdict.FAIL), Found("unused", None)]
    assert advancing(found, skip=frozenset({"error_rate"})) == lowtraffic.Outcome(None, "")
    disabled = lowtraffic.consider(
        [Found("p50", OPEN)], set(), LowTrafficRule(enabled=False), promoting=False, confidence=0.95
    )
    assert disabled == lowtraffic.Outcome(None, "")
