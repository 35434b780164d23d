"""What a promotion rests on, and what a held low-traffic canary still needs.

A promotion's summary states, per check, the regression its promote-confidence bound rules out
(the reason's ``ruled_out``, the bound the PASS was tested with); a hold at the stage deadline
names, per inconclusive check, the further canary requests its bound is estimated to need and
the time that takes at the stage's rate, and carrying on that long does settle it.
"""

from __future__ import annotations

import math
import re

from canarystream.contracts.decision import Action, Decision, Verdict
from canarystream.engine import Engine
from tests.support.streams import Cohort, Stream, fast_policy, run, seconds

ERRORS_10PCT = Cohort(error_rate=0.1)


def _checks(decision: Decision) -> dict[str, object]:
    return {r.check: r for r in decision.reasons if r.kind in ("error_rate", "latency")}


def test_a_promotion_states_the_bound_each_check_rests_on() -> None:
    stream = Stream(seed=3)
    decisions = run([stream.started(policy=fast_policy()), *stream.requests(0, 150)])
    promote = next(d for d in decisions if d.action is Action.PROMOTE)
    error, latency = (r for r in promote.reasons if r.kind in ("error_rate", "latency"))
    # The error ratio's guarantee is the upper bound its PASS was tested with (90 % here).
    assert error.verdict is Verdict.PASS and error.ruled_out == error.upper
    assert error.upper is not None
    # The quantile's is the tightest tolerance whose exceedance bound is within 1.
    assert latency.ruled_out in (0.1, 0.2, 0.3)
    assert "guarantee at 90% confidence:" in promote.summary
    assert f"error_rate ratio ≤ ×{error.upper:#.3g}".rstrip(".") in promote.summary
    assert f"latency-p90 ≤ +{latency.ruled_out:.1%}" in promote.summary
    # Earlier decisions are not promotions: they state no guarantee.
    advances = [d for d in decisions if d.action is Action.ADVANCE]
    assert advances and all(r.ruled_out is None for d in advances for r in d.reasons)
    assert all("guarantee" not in d.summary for d in advances)


def _slow_policy() -> dict[str, object]:
    """One stage whose error check needs more than its 60 s deadline at 10 req/s; without the
    low-traffic rule (which would promote it at 30 s, its ratio ruled out within x3)."""
    return fast_policy(
        low_traffic={"enabled": False},
        stages=[{"traffic_percent": 50, "min_duration": 30, "max_duration": 60}],
        checks=[
            {
                "kind": "error_rate",
                "tolerance": 1.1,
                "advance_tolerance": 1.5,
                "promote_tolerance": 1.5,
                "advance_abs_margin": 0,
            }
        ],
    )


def test_a_hold_at_the_deadline_says_what_each_check_still_needs() -> None:
    stream = Stream(seed=5, baseline=ERRORS_10PCT, canary=ERRORS_10PCT)
    engine = Engine()
    decisions = run(
        [stream.started(policy=_slow_policy()), *stream.requests(0, 70, rate=10)], engine
    )
    hold = next(d for d in decisions if d.action is Action.HOLD)
    assert seconds(hold) == 60
    (reason,) = (r for r in hold.reasons if r.kind == "error_rate")
    assert reason.verdict is Verdict.INCONCLUSIVE
    assert reason.more_samples is not None and reason.more_samples > 0
    match = re.search(
        r"error_rate: an estimated ([\d,]+) more canary requests, about (.+?) at", hold.summary
    )
    assert match, hold.summary
    assert int(match.group(1).replace(",", "")) == reason.more_samples
    # Carrying on at the same rate for twice the estimate settles it: the canary is promoted.
    wait = 2 * reason.more_samples / 10
    later = run(stream.requests(70, 70 + wait, rate=10), engine)
    assert any(d.action is Action.PROMOTE for d in later), [d.summary for d in later]


def test_a_quantile_without_a_baseline_threshold_says_what_traffic_it_takes() -> None:
    policy = fast_policy(
        stages=[{"traffic_percent": 50, "min_duration": 30, "max_duration": 60, "min_samples": 10}],
        checks=[{"kind": "latency", "quantile": 0.99}],
    )
    stream = Stream(seed=2)
    decisions = run([stream.started(policy=policy), *stream.requests(0, 70, rate=2)])
    hold = next(d for d in decisions if d.action is Action.HOLD)
    (reason,) = (r for r in hold.reasons if r.kind == "latency")
    assert reason.verdict is Verdict.INCONCLUSIVE and reason.more_samples is None
    # A decayed sketch with a 5-minute half-life holds r x 300 / ln 2 requests at r req/s;
    # a p99 needs 10 / 0.01 = 1,000 of them: 2.3 req/s, whatever the rollout's length.
    held = re.search(r"its sketch holds (\d+) of the 1,000 requests", hold.summary)
    assert held, hold.summary
    assert 100 < int(held.group(1)) <= 120  # 2 req/s for 60 s, barely decayed
    assert f"which takes at least {1000 * math.log(2) / 300:.1f} baseline req/s" in hold.summary


def test_the_guarantee_lists_every_check_in_policy_order() -> None:
    stream = Stream(seed=3)
    decisions = run([stream.started(policy=fast_policy()), *stream.requests(0, 150)])
    promote = next(d for d in decisions if d.action is Action.PROMOTE)
    error, latency = (r for r in promote.reasons if r.kind in ("error_rate", "latency"))
    assert error.upper is not None and latency.ruled_out is not None
    assert promote.summary.endswith(
        "; promoted; guarantee at 90% confidence: "
        + f"error_rate ratio ≤ ×{error.upper:#.3g}".rstrip(".")
        + f", latency-p90 ≤ +{latency.ruled_out:.1%}"
    ), promote.summary


def _approved_alone(checks: list[dict[str, object]], rate: float) -> Decision:
    """One stage that needs approval, approved at 61 s: the promotion it makes."""
    policy = fast_policy(
        stages=[{"traffic_percent": 50, "min_duration": 60, "min_samples": 50, "approval": True}],
        checks=checks,
    )
    stream = Stream(seed=4)
    events = [
        stream.started(policy=policy),
        *stream.requests(0, 61, rate=rate),
        stream.control("approved", 61),
        *stream.requests(61, 70, rate=rate),
    ]
    decisions = run(sorted(events, key=lambda e: float(str(e["ts"]))))
    return next(d for d in decisions if d.action is Action.PROMOTE)


def test_a_promotion_on_approval_alone_says_no_regression_was_ruled_out() -> None:
    promote = _approved_alone(fast_policy()["checks"], rate=1)
    error, latency = (r for r in promote.reasons if r.kind in ("error_rate", "latency"))
    assert error.verdict is latency.verdict is Verdict.INCONCLUSIVE
    # The error ratio's bound still rules out something (a wide one); the p90 nothing.
    assert error.ruled_out is not None and latency.ruled_out is None
    assert promote.summary == (
        "stage 0 approved by alice; promoted; guarantee at 90% confidence: "
        + f"error_rate ratio ≤ ×{error.ruled_out:#.3g}".rstrip(".")
        + ", latency-p90 none"
    )


def test_a_promotion_without_any_judged_check_states_no_guarantee() -> None:
    # The probe check never receives a probe result: nothing was judged, nothing is claimed.
    promote = _approved_alone([{"kind": "probe", "critical": False}], rate=2)
    assert promote.summary == "stage 0 approved by alice; promoted"


def test_a_deadline_hold_short_of_samples_with_nothing_judged_says_so() -> None:
    # The stage never has its samples (so the low-traffic rule is not asked) and its only
    # check never receives a probe result: no check to name, only the samples missing.
    policy = fast_policy(
        stages=[
            {"traffic_percent": 50, "min_duration": 30, "max_duration": 60, "min_samples": 10**6}
        ],
        checks=[{"kind": "probe", "critical": False}],
    )
    stream = Stream(seed=1)
    decisions = run([stream.started(policy=policy), *stream.requests(0, 70)])
    hold = decisions[-1]
    assert (hold.action, seconds(hold)) == (Action.HOLD, 60)
    assert hold.summary == "stage 0 deadline passed without evidence of no harm (too few samples)"
