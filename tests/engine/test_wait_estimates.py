"""A hold at a stage's deadline says how long each inconclusive check still needs at the
canary's current rate: its requests counted in the stage, its other samples since the start.

The rate is recounted here from the events fed (those before the hold's tick closed), and the
wait is the estimated samples over it, so the sentence a person reads can be checked to the
second.
"""

from __future__ import annotations

import re

from canarystream.contracts.decision import Action
from canarystream.readable import duration
from tests.support.streams import T0, Cohort, Stream, fast_policy, merge, run, seconds

DEADLINE = 60.0
POLICY = fast_policy(
    low_traffic={"enabled": False},
    baseline_mode="stable",
    stages=[
        {"traffic_percent": 10, "min_duration": 30, "min_samples": 10, "max_duration": DEADLINE},
        {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
    ],
    checks=[
        {"kind": "error_rate", "advance_abs_margin": 0.0},
        {"kind": "probe", "probe": "login", "advance_abs_margin": 0.0},
    ],
)
ERRORS_10PCT = Cohort(error_rate=0.1)
NEEDS = re.compile(r"([\w-]+): an estimated ([\d,]+) more canary (request|probe)s, about ([^;)]+)")


def test_a_deadline_hold_says_how_long_each_check_needs_at_the_current_rate() -> None:
    # 1 in 10 requests to the canary (4 of 40 a second); probes from 10 s on, one a second.
    stream = Stream(2, baseline=Cohort(error_rate=0.05), canary=Cohort(error_rate=0.05))
    events = merge(
        [stream.started(policy=POLICY)],
        stream.requests(0, 70, rate=36, canary_rate=4),
        stream.probes(10, 70, "login", baseline_fail=0.2, canary_fail=0.35),
    )
    decisions = run(events)
    hold = decisions[-1]
    assert (hold.action, seconds(hold)) == (Action.HOLD, DEADLINE)
    seen = {
        kind: sum(
            1
            for e in events
            if e["type"] == kind and e["version"] == "v2" and e["ts"] < T0 + DEADLINE
        )
        for kind in ("request", "probe")
    }
    assert seen["probe"] == 50 and seen["request"] > 200  # neither rate is 1 a second

    found = NEEDS.findall(hold.summary)
    assert "at the current rate; probe-login: an estimated" in hold.summary  # one after another
    assert [(name, kind) for name, _, kind, _ in found] == [
        ("error_rate", "request"),
        ("probe-login", "probe"),
    ]
    for _, more, kind, wait in found:
        rate = seen[kind] / DEADLINE  # the stage and the rollout both started at T0
        assert wait == f"{duration(int(more.replace(',', '')) / rate)} at the current rate"


LATER = fast_policy(
    low_traffic={"enabled": False},
    baseline_mode="stable",
    guards={"sample_ratio": {"enabled": False}},
    stages=[
        {"traffic_percent": 10, "min_duration": 30, "min_samples": 10, "approval": True},
        {"traffic_percent": 50, "min_duration": 30, "min_samples": 0, "max_duration": DEADLINE},
    ],
    checks=[{"kind": "error_rate", "advance_abs_margin": 0.0}],
)


def _later_stage(canary_rate: float) -> tuple[list[dict[str, object]], list[str]]:
    """Stage 0 approved at 31 s; from the tick stage 1 begins in (30 s) the canary sends
    ``canary_rate`` requests a second (and a gauge, so that it is never silent): the
    deadline hold's summary and the times of the advance and the hold."""
    stream = Stream(6, baseline=Cohort(error_rate=0.05), canary=Cohort(error_rate=0.03))
    events = merge(
        [stream.started(policy=LATER), stream.control("approved", 31)],
        stream.requests(0, 30, rate=36, canary_rate=4),
        stream.requests(30, 31 + DEADLINE + 10, rate=36, canary_rate=canary_rate),
        stream.gauges(0, 31 + DEADLINE + 10, "cpu", baseline=0.5, canary=0.5),
    )
    decisions = run(events)
    advance = next(d for d in decisions if d.action is Action.ADVANCE and d.stage == 1)
    hold = decisions[-1]
    assert hold.action is Action.HOLD and hold.stage == 1
    assert seconds(hold) - seconds(advance) >= DEADLINE
    return events, [hold.summary, str(seconds(advance)), str(seconds(hold))]


def test_a_later_stage_s_wait_counts_the_canary_s_requests_from_that_stage_s_start() -> None:
    events, (summary, began, held) = _later_stage(canary_rate=1)
    # The stage's requests are those of the ticks it closed: from the 5 s tick in which it
    # began (30-35 s), over the time since it began.
    start, end = T0 + 5 * (float(began) // 5), T0 + float(held)
    in_stage = sum(
        1
        for e in events
        if e["type"] == "request" and e["version"] == "v2" and start <= e["ts"] < end  # type: ignore[operator]
    )
    ((name, more, kind, wait),) = NEEDS.findall(summary)
    assert (name, kind) == ("error_rate", "request")
    rate = in_stage / (float(held) - float(began))  # about 1 a second, not stage 0's 4
    assert wait == f"{duration(int(more.replace(',', '')) / rate)} at the current rate"


def test_a_canary_sending_no_requests_in_the_stage_is_given_no_wait() -> None:
    _, (summary, _, _) = _later_stage(canary_rate=0)
    match = re.search(r"error_rate: an estimated ([\d,]+) more canary requests\)", summary)
    assert match, summary  # the count alone: no time can be estimated at no rate


def test_a_sub_second_stage_s_wait_is_estimated_at_its_rate() -> None:
    # Ticks of half a second: the stage's deadline passes 1 s after it began, and the wait
    # is the count over the rate of that one second (not "no rate" for want of more time).
    policy = fast_policy(
        tick=0.5,
        low_traffic={"enabled": False},
        baseline_mode="stable",
        guards={"sample_ratio": {"enabled": False}},
        stages=[{"traffic_percent": 50, "min_duration": 0.5, "max_duration": 1, "min_samples": 0}],
        checks=[
            {
                "kind": "error_rate",
                "tolerance": 1.02,
                "advance_tolerance": 1.05,
                "promote_tolerance": 1.05,
                "advance_abs_margin": 0.0,
            }
        ],
    )
    stream = Stream(3, baseline=ERRORS_10PCT, canary=Cohort(error_rate=0.08))
    events = merge([stream.started(policy=policy)], stream.requests(0, 1.2, rate=400))
    hold = run(events)[-1]
    assert (hold.action, seconds(hold)) == (Action.HOLD, 1.0)
    ((_, more, _, wait),) = NEEDS.findall(hold.summary)
    seen = sum(1 for e in events if e.get("version") == "v2" and e["ts"] < T0 + 1.0)
    assert wait == f"{duration(int(more.replace(',', '')) / seen)} at the current rate"


def test_a_stage_without_canary_requests_is_not_given_up_on_before_its_deadline() -> None:
    # With no requests in the stage there is no rate to say waiting is futile: the low-traffic
    # rule is asked at the deadline (its evidence from stage 0 then promotes), not before.
    policy = {**LATER, "low_traffic": {"enabled": True}}
    stream = Stream(6, baseline=Cohort(error_rate=0.05), canary=Cohort(error_rate=0.03))
    events = merge(
        [stream.started(policy=policy), stream.control("approved", 31)],
        stream.requests(0, 30, rate=36, canary_rate=4),
        stream.requests(30, 31 + DEADLINE + 10, rate=36, canary_rate=0),
        stream.gauges(0, 31 + DEADLINE + 10, "cpu", baseline=0.5, canary=0.5),
    )
    promote = run(events)[-1]
    assert (promote.action, promote.stage, seconds(promote)) == (Action.PROMOTE, 1, 95)
    assert promote.summary.startswith("low-traffic rule at stage 1 (50%)")
