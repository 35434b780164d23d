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
    assert [(name, kind) for name, _, kind, _ in found] == [
        ("error_rate", "request"),
        ("probe-login", "probe"),
    ]
    for _, more, kind, wait in found:
        rate = seen[kind] / DEADLINE  # the stage and the rollout both started at T0
        assert wait == f"{duration(int(more.replace(',', '')) / rate)} at the current rate"
