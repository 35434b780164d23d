"""False rollbacks of healthy canaries under the default checks, and the threshold that rolls back.

Each rollout here is a closed loop: the canary receives the share of the last decision (the
baseline all other traffic, as in the default ``stable`` mode), so exposures differ between
the cohorts and from stage to stage, and every check is looked at every tick. The policy is
the default one with shorter stages; its checks, weights and alpha are the defaults.

The rollback threshold of each check is computed here from the policy alone: the rollout's
alpha is shared by the checks in proportion to their weights, and a check over every gauge
(``metric: '*'``) or with a breakdown splits its share equally over at most 16 units. The
checks on rates and quantiles (e-processes) must report exactly that threshold, a rollback
must follow from an e-value at or above it, and the tick before, the same e-value must still
be below it. The checks on mean differences (typical latency, gauges) report confidence
bounds instead: they fail when the lower bound passes the tolerance, and report no e-value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from scipy.stats import binom

from canarystream.contracts.decision import Action, CheckReason, Decision, Verdict
from canarystream.engine import Engine
from canarystream.policy.model import (
    ErrorRateCheck,
    GaugeCheck,
    LatencyCheck,
    Policy,
    check_name,
)
from tests.support.streams import T0, Cohort, Stream, merge, seconds

UNITS_PER_DYNAMIC_CHECK = 16  # the documented cap of units a breakdown or '*' check may grow
STAGES = [
    {"traffic_percent": percent, "min_duration": 60, "min_samples": 100} for percent in (5, 20, 50)
]
POLICY: dict[str, Any] = {"name": "default-short", "stages": STAGES}
TICK = Policy().tick
GAUGE = "cpu_utilization"
HORIZON = 900.0  # s of event time; a canary that has shown no harm by then is left held


def expected_thresholds(policy: Policy) -> dict[str, float]:
    """Rollback threshold (1/alpha) of each check kind of ``policy``, from its fields alone."""
    total = sum(check.weight for check in policy.checks)
    out: dict[str, float] = {}
    for check in policy.checks:
        alpha = policy.alpha * check.weight / total
        dynamic = (isinstance(check, GaugeCheck) and check.metric == "*") or (
            isinstance(check, (ErrorRateCheck, LatencyCheck)) and check.breakdown is not None
        )
        if dynamic:
            alpha /= UNITS_PER_DYNAMIC_CHECK
        out[check_name(check)] = 1.0 / alpha
    return out


EXPECTED = expected_thresholds(Policy.model_validate(POLICY))


def test_the_expected_thresholds_are_those_of_the_default_policy() -> None:
    # alpha 0.05 over six checks of weight 1: 1/120 each, and 1/16 of that per gauge.
    assert pytest.approx(EXPECTED) == (
        {
            "error_rate": 120.0,
            "latency_shift": 120.0,
            "latency-p50": 120.0,
            "latency-p90": 120.0,
            "latency-p99": 120.0,
            "gauges": 1920.0,
        }
    )
    assert Policy.model_validate(POLICY).checks == Policy().checks


E_PROCESS_KINDS = {"error_rate", "latency", "probe", "slo_error_rate", "slo_latency"}


def threshold_of(reason: CheckReason) -> float:
    """The expected threshold of a check's reason (a gauge unit is ``gauge[<metric>]``)."""
    return EXPECTED[reason.check.split("[", 1)[0]]


def crossed(reason: CheckReason) -> bool:
    """Whether the reason shows its check's rollback condition met."""
    if reason.kind in E_PROCESS_KINDS:
        assert reason.e_value is not None
        return reason.e_value >= threshold_of(reason)
    assert reason.tolerance is not None
    return reason.lower is not None and reason.lower > reason.tolerance


def check_reasons(decision: Decision) -> list[CheckReason]:
    return [r for r in decision.reasons if r.kind != "guard"]


def closed_loop(
    seed: int, total_rps: float, canary: Cohort | None = None, horizon: float = HORIZON
) -> Iterator[tuple[dict[str, Any], list[Decision]]]:
    """Events of one rollout and the decisions each one drew, the share following them.

    A decision takes effect from the next 5 s chunk of traffic, as a router applies it.
    """
    stream = Stream(seed, canary=canary or Cohort())
    engine = Engine()
    start = stream.started(policy=POLICY)
    decided = engine.process(start)
    yield start, decided
    share, live, t = decided[-1].traffic_percent / 100, True, 0.0
    while live and t < horizon:
        events = merge(
            stream.requests(
                t, t + TICK, rate=total_rps * (1 - share), canary_rate=total_rps * share
            ),
            stream.gauges(t, t + TICK, GAUGE, baseline=0.5, canary=0.5),
        )
        for event in events:
            decided = engine.process(event)
            yield event, decided
            for decision in decided:
                share = decision.traffic_percent / 100
                live = live and not decision.phase.is_terminal
        t += TICK


def decisions_of(seed: int, total_rps: float, canary: Cohort | None = None) -> list[Decision]:
    return [d for _, decided in closed_loop(seed, total_rps, canary) for d in decided]


def assert_thresholds_pinned(decisions: list[Decision]) -> None:
    """Every check's reason reports the policy's threshold; a rollback crossed it."""
    for decision in decisions:
        for reason in check_reasons(decision):
            if reason.kind in E_PROCESS_KINDS:
                assert reason.threshold == pytest.approx(threshold_of(reason), rel=1e-12), reason
            else:
                assert (reason.threshold, reason.e_value) == (None, None), reason
        if decision.action is Action.ROLLBACK:
            failed = [r for r in check_reasons(decision) if r.verdict is Verdict.FAIL]
            assert failed, decision.summary
            assert all(crossed(reason) for reason in failed), failed
        elif "shared degradation" not in decision.summary:
            critical = [r for r in check_reasons(decision) if r.critical]
            assert not any(crossed(reason) for reason in critical), decision


# -------------------------------------------------------------------------- healthy canaries

LEVELS = (20.0, 60.0, 150.0)  # requests per second of the whole service


@pytest.mark.parametrize("total_rps", LEVELS)
def test_healthy_canaries_are_not_rolled_back_and_report_the_policy_threshold(
    total_rps: float,
) -> None:
    decisions = decisions_of(seed=int(total_rps), total_rps=total_rps)

    assert_thresholds_pinned(decisions)
    assert [d.action for d in decisions if d.action is Action.ROLLBACK] == []
    shares = sorted({d.traffic_percent for d in decisions})
    assert shares[:2] == [5.0, 20.0]  # looked at under at least two unequal exposures
    kinds = {r.check.split("[", 1)[0] for d in decisions for r in check_reasons(d)}
    assert kinds == set(EXPECTED)  # every default check, the gauge one included


def false_rollbacks(seeds: range, levels: tuple[float, ...]) -> tuple[int, int]:
    """(rollbacks, rollouts) of healthy canaries over ``seeds`` x ``levels``."""
    rolled_back = runs = 0
    for total_rps in levels:
        for seed in seeds:
            decisions = decisions_of(seed=10_000 + seed, total_rps=total_rps)
            assert_thresholds_pinned(decisions)
            rolled_back += any(d.action is Action.ROLLBACK for d in decisions)
            runs += 1
    return rolled_back, runs


def not_above_alpha(rolled_back: int, runs: int, alpha: float) -> bool:
    """False unless a one-sided binomial test rejects 'rate <= alpha' at p < 0.001."""
    return float(binom.sf(rolled_back - 1, runs, alpha)) >= 0.001


def test_the_binomial_bound_rejects_a_rate_far_above_alpha() -> None:
    assert not_above_alpha(0, 30, 0.05) and not_above_alpha(5, 30, 0.05)
    assert not not_above_alpha(8, 30, 0.05)
    assert not not_above_alpha(30, 300, 0.05)  # 10 %


def test_false_rollback_rate_of_healthy_canaries_is_within_alpha() -> None:
    rolled_back, runs = false_rollbacks(range(4), LEVELS[:2])
    assert not_above_alpha(rolled_back, runs, Policy().alpha), (rolled_back, runs)


@pytest.mark.slow
def test_false_rollback_rate_over_many_healthy_rollouts_is_within_alpha() -> None:
    rolled_back, runs = false_rollbacks(range(4, 64), LEVELS)
    assert not_above_alpha(rolled_back, runs, Policy().alpha), (rolled_back, runs)


# ----------------------------------------------------------- the crossing, tick by tick

ERRORS_X4 = Cohort(error_rate=0.04)
ERRORS_X2_5 = Cohort(error_rate=0.025)
ERRORS_X3 = Cohort(error_rate=0.03)
SLOWER = Cohort(median_ms=52.0)
WIDER_TAIL = Cohort(sigma=0.8)


def probe_before(events: list[dict[str, Any]], at: float) -> Decision:
    """The reasons as of the tick before ``at``: the events before it and a pause."""
    engine = Engine()
    for event in events:
        if event["ts"] < at:
            engine.process(event)
    pause = {
        "type": "deployment_paused",
        "ts": at - 0.001,
        "deployment": events[0]["deployment"],
        "actor": "auditor",
    }
    (hold,) = engine.process(pause)
    assert hold.action is Action.HOLD
    return hold


@pytest.mark.parametrize(
    ("canary", "total_rps", "seed"),
    [
        (ERRORS_X4, 60.0, 1),
        (ERRORS_X4, 150.0, 2),
        (ERRORS_X2_5, 60.0, 4),
        (ERRORS_X3, 20.0, 5),  # crosses 120 at e = 125
        (WIDER_TAIL, 60.0, 6),  # a latency quantile
        (SLOWER, 60.0, 3),  # typical latency (a confidence sequence)
    ],
    ids=[
        "errors-x4-60rps",
        "errors-x4-150rps",
        "errors-x2.5-60rps",
        "errors-x3-20rps",
        "tail-60rps",
        "latency-60rps",
    ],
)
def test_a_rollback_happens_at_the_first_tick_past_the_policy_threshold(
    canary: Cohort, total_rps: float, seed: int
) -> None:
    events: list[dict[str, Any]] = []
    decisions: list[Decision] = []
    for event, decided in closed_loop(seed, total_rps, canary):
        events.append(event)
        decisions.extend(decided)
    assert_thresholds_pinned(decisions)
    rollback = decisions[-1]
    assert rollback.action is Action.ROLLBACK, [d.summary for d in decisions]
    assert rollback.summary.startswith("critical regression: ")
    assert seconds(rollback) % TICK == 0

    failed = {r.check: r for r in check_reasons(rollback) if r.verdict is Verdict.FAIL}
    before = {r.check: r for r in check_reasons(probe_before(events, rollback.ts))}
    assert failed
    for name, reason in failed.items():
        assert crossed(reason), reason
        assert not crossed(before[name]), before[name]
        assert before[name].verdict is not Verdict.FAIL
    assert rollback.ts > T0
