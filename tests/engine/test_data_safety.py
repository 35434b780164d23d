"""Data safety: compensation hooks on rollback, freezing past a rollback-unsafe stage, and the
verification that the service recovered after a rollback."""

from __future__ import annotations

from typing import Any

import numpy as np

from canarystream.analysis.cohort import Slice
from canarystream.analysis.recovery import RecoveryWatch
from canarystream.contracts.decision import Action, Phase, Verdict
from canarystream.policy.model import RollbackVerification
from tests.support.streams import Cohort, Stream, fast_policy, run, seconds

BROKEN = Cohort(error_rate=0.12)
HOOKS = [
    {"name": "migration-down", "command": ["./migrate", "down", "42"]},
    {"name": "notify-ledger", "url": "https://ledger.internal/compensate", "timeout_seconds": 5},
]


def started(stream: Stream, **fields: Any) -> dict[str, Any]:
    return {**stream.started(policy=fast_policy()), **fields}


def test_rollback_carries_the_compensation_hooks_and_is_verified_when_the_service_recovers():
    stream = Stream(1, canary=BROKEN)
    events = [
        started(stream, compensation=HOOKS),
        *stream.requests(0, 10),  # rolled back at 5 s; the router drains the canary by 10 s
        *stream.requests(10, 500, canary_rate=0),  # then baseline only, healthy
    ]
    decisions = run(sorted(events, key=lambda e: e["ts"]))
    rollback = next(d for d in decisions if d.action is Action.ROLLBACK)
    assert [hook.name for hook in rollback.compensation] == ["migration-down", "notify-ledger"]
    assert rollback.compensation[0].command == ["./migrate", "down", "42"]
    verdict = decisions[-1]
    assert verdict.action is Action.ROLLBACK_VERIFIED
    assert seconds(verdict) == seconds(rollback) + 300
    assert (verdict.phase, verdict.traffic_percent, verdict.page) == (Phase.ROLLED_BACK, 0, False)
    assert {r.verdict for r in verdict.reasons} == {Verdict.PASS}
    assert all(not d.compensation for d in decisions if d is not rollback)


def test_a_service_still_failing_after_the_rollback_is_not_recovering_and_pages():
    stream = Stream(2, canary=BROKEN)
    events = [
        started(stream),
        *stream.requests(0, 10),
        # The damage outlives the canary: the baseline now fails too (e.g. corrupted data).
        *stream.requests(10, 500, canary_rate=0, baseline=Cohort(error_rate=0.08)),
    ]
    decisions = run(sorted(events, key=lambda e: e["ts"]))
    assert [d.action for d in decisions][-2:] == [Action.ROLLBACK, Action.ROLLBACK_NOT_RECOVERING]
    verdict = decisions[-1]
    assert verdict.page
    failed = {r.check for r in verdict.reasons if r.verdict is Verdict.FAIL}
    assert failed == {"recovery-error-rate"}


def test_past_the_rollback_unsafe_stage_a_regression_freezes_traffic_and_pages():
    stream = Stream(3, canary=BROKEN)
    events = [
        started(stream, rollback_unsafe_from_stage=0, compensation=HOOKS[:1]),
        *stream.requests(0, 200),
    ]
    decisions = run(events)
    actions = [d.action for d in decisions]
    assert actions == [Action.ADVANCE, Action.FREEZE], "frozen: nothing automatic follows"
    freeze = decisions[-1]
    assert (freeze.phase, freeze.traffic_percent, freeze.page) == (Phase.FROZEN, 10.0, True)
    assert "unsafe for data" in freeze.summary and not freeze.compensation


def test_a_person_decides_for_a_frozen_rollout_abort_rolls_back_with_hooks():
    stream = Stream(3, canary=BROKEN)
    events = [
        started(stream, rollback_unsafe_from_stage=0, compensation=HOOKS[:1]),
        *stream.requests(0, 200),
        stream.control("aborted", 200),
    ]
    decisions = run(events)
    assert [d.action for d in decisions][-2:] == [Action.FREEZE, Action.ROLLBACK]
    abort = decisions[-1]
    assert (abort.phase, abort.traffic_percent) == (Phase.ABORTED, 0.0)
    assert [hook.name for hook in abort.compensation] == ["migration-down"]


def test_resuming_a_frozen_rollout_judges_it_again():
    stream = Stream(4, canary=BROKEN)
    events = [
        started(stream, rollback_unsafe_from_stage=0),
        *stream.requests(0, 200),
        stream.control("resumed", 200),
    ]
    decisions = run(events)
    assert [d.action for d in decisions] == [Action.ADVANCE, Action.FREEZE, Action.FREEZE]


def test_before_the_unsafe_stage_a_regression_still_rolls_back():
    stream = Stream(5, canary=BROKEN)
    decisions = run([started(stream, rollback_unsafe_from_stage=1), *stream.requests(0, 200)])
    assert Action.ROLLBACK in [d.action for d in decisions]
    assert Action.FREEZE not in [d.action for d in decisions]


def _slice(rng: np.random.Generator, n: int, error_rate: float) -> Slice:
    requests = Slice()
    for latency, failed in zip(
        rng.lognormal(np.log(40), 0.5, n), rng.random(n) < error_rate, strict=True
    ):
        requests.add(float(latency), 503 if failed else 200)
    return requests


def test_recovery_verdict_false_alarm_rate_is_within_alpha_when_nothing_changed():
    """Simulation oracle: identical levels before and after must rarely read as 'not
    recovering'. Two one-sided tests at 5 % each: at most ~10 %, far less with the margins."""
    rng = np.random.default_rng(11)
    config = RollbackVerification(error_ratio_tolerance=1.0, error_abs_margin=0.0,
                                  latency_tolerance=0.0)  # fmt: skip
    runs, alarms = 300, 0
    for _ in range(runs):
        watch = RecoveryWatch(config, ((500, 599),))
        for _ in range(10):
            watch.fold_reference(_slice(rng, 60, 0.02))
        watch.start(0.0)
        for _ in range(10):
            watch.fold_after(_slice(rng, 60, 0.02))
        recovered, _, _ = watch.verdict()
        alarms += not recovered
    assert alarms / runs <= 0.10 + 3 * np.sqrt(0.1 * 0.9 / runs)


def test_recovery_verdict_detects_a_doubled_error_rate():
    rng = np.random.default_rng(12)
    watch = RecoveryWatch(RollbackVerification(), ((500, 599),))
    for _ in range(20):
        watch.fold_reference(_slice(rng, 100, 0.02))
    watch.start(0.0)
    for _ in range(20):
        watch.fold_after(_slice(rng, 100, 0.06))
    recovered, summary, _ = watch.verdict()
    assert not recovered and "recovery-error-rate" in summary
    assert not watch.watching
