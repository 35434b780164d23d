"""The low-traffic rule: moving on with inconclusive checks under a weaker, stated guarantee.

What the rule asks is :class:`~canarystream.policy.model.LowTrafficRule`'s. This module
applies it to the evidence of one evaluation, nothing else: no state, so replay and live
decide alike, and the evidence it returns (each check it passed over marked with how, see
``CheckReason.risk``) is what the decision's reasons are built from.
"""

from __future__ import annotations

from dataclasses import dataclass

from canarystream.analysis.checks import Evidence
from canarystream.contracts.decision import Verdict
from canarystream.policy.model import LowTrafficRule

__all__ = ["Outcome", "consider"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the rule found: the evidence to move on with (None: it does not let the rollout
    move on) and the sentence the decision states (the guarantee, or why not)."""

    evidence: list[Evidence] | None
    statement: str


def consider(
    evidence: list[Evidence],
    skip: set[str],
    rule: LowTrafficRule,
    *,
    promoting: bool,
    confidence: float,
) -> Outcome:
    """The rule at a ready stage whose evidence did not show no harm.

    ``skip`` are the checks a person acknowledged; ``confidence`` the promote confidence.
    """
    gating = [e for e in evidence if e.verdict is not None and e.name not in skip]
    if not rule.enabled or not gating:
        return Outcome(None, "")
    blockers: list[str] = []
    for found in gating:
        if found.verdict is Verdict.NO_DATA or found.verdict is Verdict.FAIL:
            blockers.append(f"{found.name} {found.verdict.value}")
            continue
        leaning = found.unit.leans(found, rule.lean_e_value, rule.error_ratio)
        if leaning is not None:
            blockers.append(f"{found.name} leans toward harm: {leaning}")
    if blockers:
        return Outcome(None, "not applied: " + "; ".join(blockers))
    open_ = {id(e) for e in gating if e.verdict is Verdict.INCONCLUSIVE}
    if not promoting:
        names = [e.name for e in evidence if id(e) in open_]
        note = "inconclusive, not leaning toward harm: passed over by the low-traffic rule"
        out = [e.under_rule("not_leaning", note) if id(e) in open_ else e for e in evidence]
        return Outcome(out, f"{', '.join(names)} inconclusive, none leaning toward harm")
    return _promotion(evidence, open_, skip, rule, confidence)


def _promotion(
    evidence: list[Evidence],
    open_: set[int],
    skip: set[str],
    rule: LowTrafficRule,
    confidence: float,
) -> Outcome:
    """At the last stage: each inconclusive check rules out the rule's wider bound, or is a
    quantile with no threshold that a lower quantile of the same latency covers."""
    at = f"at {confidence:.0%}"
    out = list(evidence)
    ruled: list[str] = []
    missing: list[str] = []
    unjudged: list[tuple[int, str]] = []
    for index, found in enumerate(evidence):
        if id(found) not in open_:
            continue
        shortfall = found.unit.unestimated() if found.unit.latency_quantile() else None
        if shortfall is not None and rule.waive_unjudged_quantiles:
            unjudged.append((index, shortfall))
            continue
        risk = found.unit.risk_evidence(found, rule.error_ratio)
        if risk is None or risk.verdict is not Verdict.PASS or risk.ruled_out is None:
            missing.append(f"{found.name}: the rule's wider bound not ruled out {at}")
            continue
        text = f"{found.name} {found.unit.bound_text(risk.ruled_out)}"
        risk.verdict = Verdict.INCONCLUSIVE  # at its own tolerance; the reason says the rest
        out[index] = risk.under_rule("ruled_out", f"under the low-traffic rule: {text} {at}")
        ruled.append(f"{text} {at}")
    waived: list[str] = []
    notes: list[tuple[int, str]] = []
    for index, shortfall in unjudged:
        found = evidence[index]
        cover = _cover(found, out, skip)
        if cover is None:
            missing.append(f"{found.name} not judged and no lower quantile of it passed")
            continue
        covered = (
            f"covered by {cover.name} {cover.unit.bound_text(cover.ruled_out)}"
            if cover.ruled_out is not None
            else f"covered by {cover.name} (passed)"
        )
        note = f"waived by the low-traffic rule: not judged ({shortfall}); {covered}"
        notes.append((index, note))
        waived.append(f"{found.name} not judged ({shortfall}), {covered}")
    if missing:
        return Outcome(None, "not applied: " + "; ".join(missing))
    for index, note in notes:  # marked only now: evidence a hold reports stays as it was
        out[index] = evidence[index].under_rule("waived", note)
    return Outcome(out, "; ".join(waived + ruled))


def _cover(found: Evidence, evidence: list[Evidence], skip: set[str]) -> Evidence | None:
    """The highest lower quantile of ``found``'s latency that passed or ruled out the rule's
    bound (``evidence`` as the rule has taken it so far), if any."""
    own = found.unit.latency_quantile()
    if own is None:
        return None
    best: tuple[float, Evidence] | None = None
    for other in evidence:
        mine = other.unit.latency_quantile()
        if (
            mine is None
            or mine[0] != own[0]
            or mine[1] >= own[1]
            or not (other.verdict is Verdict.PASS or other.risk == "ruled_out")
            or other.name in skip
        ):
            continue
        if best is None or mine[1] > best[0]:
            best = (mine[1], other)
    return None if best is None else best[1]
