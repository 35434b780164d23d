"""The low-traffic rule: a healthy canary at 1-2 req/s moves on under a stated, weaker
guarantee; a regressed one never slips through it; switched off, inconclusive evidence holds.

Rollouts are the low-traffic benchmark's (paired cohorts, the default policy's 30-minute plan,
engine only); a regressed canary is rolled back within minutes, so the attacks are cheap.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from canarystream.analysis.checks import CheckGroup, Gate, Tick
from canarystream.analysis.cohort import CohortBucket
from canarystream.contracts.decision import Action, Decision, Verdict
from canarystream.engine import Engine
from canarystream.policy.model import ErrorRateCheck, LowTrafficRule, Policy
from canarystream.simulate.paired import CHUNK, T0, Cell, PairedRollout

HORIZON_MIN = 45


def run(cell: Cell, seed: int, **policy: Any) -> list[Decision]:
    """Every decision of one rollout, to its end or 45 minutes of event time."""
    gen = PairedRollout(cell, seed)
    started = gen.deployment_event()
    started["policy"] = {**started["policy"], **policy}
    engine = Engine()
    out = engine.process(started)
    for minute in range(HORIZON_MIN):
        events, _ = gen.chunk(float(minute * CHUNK), build=True)
        for event in events:
            out += engine.process(event)
            if out[-1].action in (Action.PROMOTE, Action.ROLLBACK):
                return out
    return out


def reasons_of(decision: Decision) -> dict[str, Any]:
    return {reason.check: reason for reason in decision.reasons}


def test_a_healthy_canary_at_2_rps_is_promoted_at_30_minutes_with_its_guarantee() -> None:
    decisions = run(Cell("aa-2rps", rate=2.0), seed=500)
    last = decisions[-1]
    assert last.action is Action.PROMOTE and last.ts - T0 == 1800.0
    # Each stage moved on at its minimum duration, under the rule (the p99 is never judged).
    advances = [d for d in decisions if d.action is Action.ADVANCE][1:]
    assert [d.ts - T0 for d in advances] == [360.0, 720.0, 1080.0, 1440.0]
    assert all("low-traffic rule" in d.summary and "leaning" in d.summary for d in advances)
    assert "latency-p99 not judged" in last.summary
    assert "covered by latency-p90" in last.summary
    assert "error_rate ratio ≤ ×" in last.summary and "at 95%" in last.summary
    # The rule's own clause, word for word: what it waived, what covers it, what it ruled out.
    assert last.summary.startswith(
        "low-traffic rule at stage 4 (50%): latency-p99 not judged (no baseline p99 to compare "
        "with yet: its sketch holds 859 of the 1,000 requests it needs, which takes at least "
        "2.3 baseline req/s), covered by latency-p90 ≤ +7.5%; error_rate ratio ≤ ×1.90 at 95%; "
        "promoted; guarantee at 95% confidence: "
    )
    found = reasons_of(last)
    assert found["error_rate"].message.endswith(
        "; under the low-traffic rule: error_rate ratio ≤ ×1.90 at 95%"
    )
    assert found["latency-p99"].message.endswith(
        "; waived by the low-traffic rule: not judged (no baseline p99 to compare with yet: its "
        "sketch holds 859 of the 1,000 requests it needs, which takes at least 2.3 baseline "
        "req/s); covered by latency-p90 ≤ +7.5%"
    )
    assert found["latency-p99"].risk == "waived"
    assert "2.3 baseline req/s" in found["latency-p99"].message
    assert found["latency-p99"].ruled_out is None
    error = found["error_rate"]
    assert error.risk == "ruled_out" and error.verdict is Verdict.INCONCLUSIVE
    assert error.upper is not None and error.upper <= LowTrafficRule().error_ratio
    assert error.advance_tolerance == LowTrafficRule().error_ratio
    assert error.ruled_out == error.upper


def test_switched_off_the_same_canary_is_held_at_the_first_deadline_as_before() -> None:
    decisions = run(Cell("aa-2rps", rate=2.0), seed=500, low_traffic={"enabled": False})
    held = [d for d in decisions if d.action is Action.HOLD]
    assert held and held[0].ts - T0 == 1080.0 and held[0].stage == 0
    assert "latency-p99: no baseline p99" in held[0].summary
    assert all(d.action is not Action.PROMOTE for d in decisions)
    assert not any("low-traffic" in d.summary for d in decisions)
    assert all(r.risk is None for d in decisions for r in d.reasons)


ERRORS_X3 = Cell("errors-x3", null=False, error_mult=3.0)


@pytest.mark.parametrize("rate", [1.0, 2.0])
@pytest.mark.parametrize("seed", [900, 901])
def test_errors_x3_are_rolled_back(rate: float, seed: int) -> None:
    decisions = run(replace(ERRORS_X3, rate=rate), seed=seed)
    assert decisions[-1].action is Action.ROLLBACK


def test_errors_x3_that_look_healthy_do_not_rule_out_the_rule_s_ratio() -> None:
    # Seed 913 at 1 req/s escapes rollback for 45 minutes (its canary drew few errors, its
    # baseline many): ×3 is not ruled out, so it holds; a rule of ×4 would promote it.
    cell = replace(ERRORS_X3, rate=1.0)
    last = run(cell, seed=913)[-1]
    assert last.action is Action.HOLD
    assert "low-traffic rule not applied: error_rate: the rule's wider bound" in last.summary
    loose = run(cell, seed=913, low_traffic={"error_ratio": 4.0})[-1]
    assert loose.action is Action.PROMOTE and "error_rate ratio ≤ ×3.46" in loose.summary


def test_errors_x3_leaning_toward_harm_are_held_not_advanced() -> None:
    # Seed 922 at 1 req/s: its error evidence has reached the advance level, though not the
    # rollback threshold: it holds. Without the lean test it would advance, and with a loose
    # ratio be promoted at 30 minutes.
    cell = replace(ERRORS_X3, rate=1.0)
    last = run(cell, seed=922)[-1]
    assert last.action is Action.HOLD
    assert "error_rate leans toward harm: evidence against it at e = " in last.summary
    blind = run(cell, seed=922, low_traffic={"lean_e_value": 1e6, "error_ratio": 50})[-1]
    assert blind.action is Action.PROMOTE and blind.ts - T0 == 1800.0


@pytest.mark.parametrize("rate", [1.0, 2.0])
@pytest.mark.parametrize("seed", [900, 901])
def test_latency_x1_25_is_never_promoted_under_the_rule(rate: float, seed: int) -> None:
    cell = Cell("latency-x1.25", rate=rate, null=False, latency_mult=1.25)
    decisions = run(cell, seed=seed)
    assert decisions[-1].action is Action.ROLLBACK


def _error_unit(canary: tuple[int, int], baseline: tuple[int, int]) -> Any:
    def bucket(requests: int, errors: int) -> CohortBucket:
        found = CohortBucket()
        for index in range(requests):
            found.requests.add(40.0, 503 if index < errors else 200)
        return found

    group = CheckGroup(ErrorRateCheck(), alpha=0.05 / 6, trackers={})
    (unit,) = group.units.values()
    group.update(Tick(bucket(*canary), bucket(*baseline), {}, now=5.0))
    return unit


PROMOTING = Gate(ready=True, next_share=1.0, promoting=True, alpha=0.05)


def test_a_check_leans_toward_harm_on_evidence_or_on_its_estimate() -> None:
    rule = LowTrafficRule()
    healthy = _error_unit(canary=(2000, 20), baseline=(2000, 20))
    assert healthy.leans(healthy.evaluate(PROMOTING), rule.lean_e_value, rule.error_ratio) is None
    # 60 errors against 20: evidence against ×1.1 past the advance level of 10.
    worse = _error_unit(canary=(2000, 60), baseline=(2000, 20))
    evidence = worse.evaluate(PROMOTING)
    assert evidence.e_value is not None and evidence.e_value >= rule.lean_e_value
    assert "evidence against it" in worse.leans(evidence, rule.lean_e_value, rule.error_ratio)
    # Too few errors for evidence, but an estimate past the rule's bound (×4 against ×3).
    few = _error_unit(canary=(400, 8), baseline=(400, 2))
    evidence = few.evaluate(PROMOTING)
    assert evidence.e_value is not None and evidence.e_value < rule.lean_e_value
    assert "beyond ×3" in few.leans(evidence, rule.lean_e_value, rule.error_ratio)


def test_a_wide_bound_is_ruled_out_only_within_the_rule_s_ratio() -> None:
    unit = _error_unit(canary=(3600, 36), baseline=(3600, 36))
    found = unit.evaluate(PROMOTING)
    assert found.verdict is Verdict.INCONCLUSIVE  # ×1.35 is out of reach at 36 errors
    risk = unit.risk_evidence(found, 3.0)
    assert risk.verdict is Verdict.PASS and risk.ruled_out == risk.upper <= 3.0
    assert unit.risk_evidence(found, 1.5).verdict is Verdict.INCONCLUSIVE
    reason = risk.under_rule("ruled_out", "under the rule").reason()
    assert reason.risk == "ruled_out" and reason.advance_tolerance == 3.0
    assert reason.message.endswith("; under the rule")


def test_the_rule_is_on_by_default_and_validated() -> None:
    assert Policy().low_traffic.enabled
    with pytest.raises(ValueError, match="error_ratio"):
        Policy.model_validate({"low_traffic": {"error_ratio": 0.5}})
    with pytest.raises(ValueError, match="lean_e_value"):
        Policy.model_validate({"low_traffic": {"lean_e_value": 1.0}})
