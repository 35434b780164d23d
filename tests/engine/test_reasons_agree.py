"""A decision's reasons alone reproduce its action: they are the evidence that decided it.

Every preset of the simulator runs in closed loop under the default policy, for several seeds;
each decision is then judged from its reasons only (with its summary to tell which rule
fired): a rollback for a critical regression names checks whose reasons FAIL and are critical;
an advance or promotion on evidence has every applicable check PASS with the bound compared
shown within the tolerance in force (the promote tolerance when promoting); no reason shows a
PASS without the bound it was tested with, and a FAIL is exactly an e-value past its threshold.
Low-traffic rollouts (1-2 req/s, some with errors x3) add the low-traffic rule's decisions:
an advance under it has every check PASS or inconclusive and not leaning; a promotion under it
has every check PASS, or ruling out the rule's wider bound, or waived with a lower quantile
of it that passed or ruled out its bound; no reason is marked by the rule outside them.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import pytest

from canarystream.analysis.checks import UNIT_CLASSES, check_name
from canarystream.contracts.decision import Action, CheckReason, Decision, Verdict
from canarystream.engine import Engine
from canarystream.policy.model import Policy
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.paired import CHUNK, Cell, PairedRollout
from canarystream.simulate.presets import build_preset, preset_names

SEEDS = (0, 1, 2)
_EPS = 1e-9


@cache
def decisions(seed: int) -> tuple[Decision, ...]:
    """Every preset side by side in one closed-loop run (each is its own service)."""
    scenarios = [
        build_preset(name, rps=20, duration=2400, seed_offset=seed) for name in preset_names()
    ]
    engine = Engine()
    out: list[Decision] = []
    for _ in simulate(scenarios, seed=seed, engine=_Recorder(engine, out)):
        pass
    return tuple(out)


@cache
def low_traffic_decisions() -> tuple[Decision, ...]:
    """Healthy canaries at 1-2 req/s and errors x3 at 1 req/s, on the default 30-minute plan."""
    runs = [
        (Cell("aa-2rps", rate=2.0), 500),
        (Cell("aa-2rps", rate=2.0), 501),
        (Cell("aa-1rps", rate=1.0), 500),
        (Cell("errors-x3-1rps", rate=1.0, null=False, error_mult=3.0), 913),
        (Cell("errors-x3-1rps", rate=1.0, null=False, error_mult=3.0), 922),
    ]
    out: list[Decision] = []
    for cell, seed in runs:
        gen = PairedRollout(cell, seed, service=f"{cell.name}-{seed}")
        engine = Engine()
        out += engine.process(gen.deployment_event())
        for minute in range(45):
            for event in gen.chunk(float(minute * CHUNK), build=True)[0]:
                out += engine.process(event)
            if out[-1].action in (Action.PROMOTE, Action.ROLLBACK):
                break
    return tuple(out)


class _Recorder:
    """The real engine, keeping every decision it returns."""

    def __init__(self, engine: Engine, out: list[Decision]) -> None:
        self.engine, self.out = engine, out

    def process(self, event: dict[str, Any]) -> list[Decision]:
        found = self.engine.process(event)
        self.out.extend(found)
        return found


def _checks(decision: Decision) -> list[CheckReason]:
    return [r for r in decision.reasons if r.kind in UNIT_CLASSES]


def _applicable(reason: CheckReason) -> bool:
    # Not applicable: neither cohort sent anything this unit looks at (shown as no data).
    return not (
        reason.verdict is Verdict.NO_DATA
        and reason.canary_samples == 0
        and reason.baseline_samples == 0
        and not reason.kind.startswith("slo_")
    )


def _within(reason: CheckReason) -> bool:
    """The upper bound shown lies within the tolerance in force (or the blast radius)."""
    assert reason.upper is not None, f"{reason.check}: PASS without the bound it was tested with"
    if "blast radius" in reason.message:
        return True
    if reason.kind == "latency":  # an exceedance ratio at (1 + tolerance in force) x baseline
        return reason.upper <= 1.0 + _EPS
    assert reason.advance_tolerance is not None
    return reason.upper <= reason.advance_tolerance + _EPS


PROMOTE_BOUNDS = {
    check_name(check): check.promote_bound()
    for check in Policy().checks
    if check.kind in ("error_rate", "latency", "latency_shift")
}


def judge(decision: Decision) -> list[str]:
    """What in ``decision``'s reasons disagrees with its action (empty: nothing)."""
    problems: list[str] = []
    checks = _checks(decision)
    for reason in checks:
        if reason.verdict is Verdict.PASS and not _within(reason):
            problems.append(f"{reason.check}: PASS with upper {reason.upper} beyond its bound")
        if reason.e_value is None or reason.threshold is None or reason.verdict is Verdict.NO_DATA:
            continue
        crossed = reason.e_value >= reason.threshold * (1 + _EPS)
        if reason.verdict is Verdict.FAIL and not reason.e_value >= reason.threshold * (1 - _EPS):
            problems.append(f"{reason.check}: FAIL with e={reason.e_value} under the threshold")
        if reason.verdict is not Verdict.FAIL and crossed:
            problems.append(f"{reason.check}: {reason.verdict} with e={reason.e_value} past it")
    summary = decision.summary
    critical_fails = {r.check for r in checks if r.verdict is Verdict.FAIL and r.critical}
    if decision.action in (Action.ROLLBACK, Action.FREEZE) and summary.startswith(
        "critical regression: "
    ):
        named = summary.removeprefix("critical regression: ").split(";")[0].split(", ")
        for name in named:
            if name not in critical_fails:
                problems.append(f"rollback names {name} but its reason is not a critical FAIL")
        if not critical_fails:
            problems.append("rollback for a critical regression without a critical FAIL")
    if decision.action is Action.ROLLBACK and summary.startswith("non-critical regression"):
        named = summary.rsplit(": ", 1)[1].split(", ")
        failed = {r.check for r in checks if r.verdict is Verdict.FAIL}
        problems += [f"{n}: named, not failing" for n in named if n not in failed]
    on_evidence = "no harm shown" in summary
    if decision.action in (Action.ADVANCE, Action.PROMOTE) and on_evidence:
        if critical_fails:
            problems.append(f"advanced with critical FAILs {sorted(critical_fails)}")
        if not [r for r in checks if _applicable(r)]:
            problems.append("advanced on evidence with no applicable check")
        for reason in filter(_applicable, checks):
            if reason.verdict is not Verdict.PASS:
                problems.append(f"advanced with {reason.check} {reason.verdict}")
    if decision.action is Action.PROMOTE and on_evidence:
        for reason in checks:
            bound = PROMOTE_BOUNDS.get(reason.check)
            shown = reason.advance_tolerance
            if bound is not None and not math.isclose(shown or 0.0, bound, rel_tol=1e-9):
                problems.append(
                    f"{reason.check}: promoted against {shown}, not the promote tolerance {bound}"
                )
    problems += _low_traffic_problems(decision, checks)
    gating = [r for r in checks if _applicable(r)]
    if (
        decision.action is Action.HOLD
        and "deadline passed without evidence" in summary
        and gating
        and all(r.verdict is Verdict.PASS for r in gating)
    ):
        problems.append("held for want of evidence while every check PASSes")
    return problems


RULE = Policy().low_traffic
ADVANCE_TOLERANCES = {
    check_name(check): float(getattr(check, "advance_tolerance", 0.0)) for check in Policy().checks
}


def _low_traffic_problems(decision: Decision, checks: list[CheckReason]) -> list[str]:
    """What in a decision's reasons disagrees with the low-traffic rule's part in it."""
    marked = [r for r in checks if r.risk is not None]
    under = "low-traffic rule at stage" in decision.summary
    moved = decision.action in (Action.ADVANCE, Action.PROMOTE)
    if not (under and moved):
        return [f"{r.check}: marked {r.risk} outside a move under the rule" for r in marked]
    problems: list[str] = []
    by_name = {r.check: r for r in checks}
    for reason in filter(_applicable, checks):
        if reason.verdict is Verdict.FAIL or reason.verdict is Verdict.NO_DATA:
            problems.append(f"{reason.check}: {reason.verdict} yet moved on under the rule")
        if reason.e_value is not None and reason.e_value >= RULE.lean_e_value:
            problems.append(f"{reason.check}: leaning (e={reason.e_value}) yet moved on")
        if reason.verdict is Verdict.PASS:
            continue
        if reason.risk is None:
            problems.append(f"{reason.check}: {reason.verdict} and not taken by the rule")
        elif decision.action is Action.ADVANCE and reason.risk != "not_leaning":
            problems.append(f"{reason.check}: {reason.risk} at an intermediate stage")
        elif decision.action is Action.PROMOTE:
            problems += _promoted_under_rule(reason, by_name)
    return problems


def _promoted_under_rule(reason: CheckReason, by_name: dict[str, CheckReason]) -> list[str]:
    """A check not passing in a promotion under the rule: ruled out the wider bound, or waived
    with a lower quantile that passed or did."""
    if reason.risk == "ruled_out":
        wider = (
            RULE.error_ratio
            if reason.kind == "error_rate"
            else ADVANCE_TOLERANCES.get(reason.check)
        )
        if reason.advance_tolerance is None or wider is None:
            return [f"{reason.check}: ruled out without the bound"]
        if not math.isclose(reason.advance_tolerance, wider, rel_tol=1e-9):
            return [f"{reason.check}: ruled out {reason.advance_tolerance}, not {wider}"]
        return [] if _within(reason) else [f"{reason.check}: upper {reason.upper} beyond it"]
    if reason.risk == "waived" and reason.kind == "latency" and "covered by " in reason.message:
        name = reason.message.split("covered by ", 1)[1].split(" ", 1)[0]
        cover = by_name.get(name)
        if cover is None or cover.kind != "latency":
            return [f"{reason.check}: covered by {name}, not a latency quantile"]
        if not (cover.verdict is Verdict.PASS or cover.risk == "ruled_out"):
            return [f"{reason.check}: covered by {name}, which neither passed nor ruled out"]
        return []
    return [f"{reason.check}: {reason.risk} in a promotion under the rule"]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_decision_s_reasons_reproduce_its_action(seed: int) -> None:
    found = decisions(seed)
    bad = {
        f"{d.deployment}#{d.seq} {d.action.value}: {d.summary}": problems
        for d in found
        if (problems := judge(d))
    }
    assert not bad, bad


def test_every_low_traffic_decision_s_reasons_reproduce_its_action() -> None:
    found = low_traffic_decisions()
    bad = {
        f"{d.deployment}#{d.seq} {d.action.value}: {d.summary}": problems
        for d in found
        if (problems := judge(d))
    }
    assert not bad, bad
    # It proves something only if the rule advanced, promoted and was refused.
    summaries = [(d.action, d.summary) for d in found]
    assert any(a is Action.ADVANCE and "low-traffic rule at stage" in s for a, s in summaries)
    assert any(a is Action.PROMOTE and "low-traffic rule at stage" in s for a, s in summaries)
    assert any(a is Action.HOLD and "low-traffic rule not applied" in s for a, s in summaries)
    risks = {r.risk for d in found for r in d.reasons}
    assert {"ruled_out", "waived", "not_leaning"} <= risks


def test_the_judge_refuses_a_promotion_under_the_rule_that_its_reasons_do_not_support() -> None:
    promoted = next(
        d
        for d in low_traffic_decisions()
        if d.action is Action.PROMOTE and "low-traffic rule" in d.summary
    )
    assert judge(promoted) == []

    def altered(check: str, **update: Any) -> Decision:
        reasons = [r.model_copy(update=update) if r.check == check else r for r in promoted.reasons]
        return promoted.model_copy(update={"reasons": reasons})

    assert judge(altered("error_rate", upper=RULE.error_ratio * 1.1))  # beyond the wider bound
    assert judge(altered("error_rate", advance_tolerance=10.0))  # another bound than the rule's
    assert judge(altered("error_rate", risk=None))  # inconclusive, not taken by the rule
    assert judge(altered("error_rate", e_value=RULE.lean_e_value))  # leaning
    assert judge(altered("latency-p90", verdict=Verdict.INCONCLUSIVE, risk=None))  # no cover


def test_the_matrix_reaches_every_kind_of_decision() -> None:
    # The test above proves something only if the runs rolled back, advanced and promoted.
    actions = {d.action for seed in SEEDS for d in decisions(seed)}
    assert {Action.ADVANCE, Action.PROMOTE, Action.ROLLBACK, Action.HOLD} <= actions, actions
    summaries = [d.summary for seed in SEEDS for d in decisions(seed)]
    assert any("critical regression" in s for s in summaries)
    assert any("no harm shown" in s and "promoted" in s for s in summaries)


def test_the_judge_refuses_reasons_that_disagree_with_the_action() -> None:
    # A promotion whose latency reason reports the advance tolerance, or a PASS without its
    # bound, or a rollback naming a check whose reason passed, is caught.
    promoted = next(
        d
        for seed in SEEDS
        for d in decisions(seed)
        if d.action is Action.PROMOTE and "no harm shown" in d.summary
    )
    assert judge(promoted) == []
    latency = next(i for i, r in enumerate(promoted.reasons) if r.kind == "latency")
    wrong = promoted.reasons[latency].model_copy(update={"advance_tolerance": 0.15})
    reasons = [*promoted.reasons[:latency], wrong, *promoted.reasons[latency + 1 :]]
    assert judge(promoted.model_copy(update={"reasons": reasons}))

    unbounded = promoted.reasons[latency].model_copy(update={"upper": None})
    reasons = [*promoted.reasons[:latency], unbounded, *promoted.reasons[latency + 1 :]]
    with pytest.raises(AssertionError, match="PASS without the bound"):
        judge(promoted.model_copy(update={"reasons": reasons}))

    rollback = next(
        d
        for seed in SEEDS
        for d in decisions(seed)
        if d.action is Action.ROLLBACK and "critical regression" in d.summary
    )
    assert judge(rollback) == []
    passed = [
        r.model_copy(update={"verdict": Verdict.INCONCLUSIVE}) if r.verdict is Verdict.FAIL else r
        for r in rollback.reasons
    ]
    assert judge(rollback.model_copy(update={"reasons": passed}))
