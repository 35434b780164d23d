"""The actuator around a backend: signatures, fencing, retries, deadline, dry run, metrics."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from canarystream.actuators import (
    ActuationMetrics,
    Actuator,
    Fence,
    MemoryRouter,
    RetryPolicy,
    TrafficTarget,
)
from canarystream.contracts.actuation import ActuationStatus
from canarystream.contracts.codec import encode_decision
from canarystream.contracts.decision import Action, Decision, Phase
from canarystream.contracts.signing import Signer
from canarystream.errors import RouterError
from tests.support.actuators import DEPLOYMENT, EVERY_SERVICE, make_decision

SIGNER = Signer.hmac(b"test key")
VERIFIER = SIGNER.verifier()


class FakeTime:
    """A monotonic clock that only moves when the actuator sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FlakyRouter(MemoryRouter):
    """Fails its first ``failures`` weight changes; reads back ``skew`` points off."""

    kind = "flaky"

    def __init__(self, failures: int = 0, skew: float = 0.0, report: bool = True) -> None:
        super().__init__()
        self.failures = failures
        self.skew = skew
        self.report = report

    async def set_share(self, target: TrafficTarget) -> None:
        if self.failures > 0:
            self.failures -= 1
            self.calls += 1
            raise RouterError("backend unavailable")
        await super().set_share(target)

    async def get_share(self, deployment: str) -> float | None:
        if not self.report:
            return None
        weight = await super().get_share(deployment)
        return None if weight is None else weight + self.skew


class MemoryFlags:
    """A flag provider kept in memory."""

    kind = "memory_flags"

    def __init__(self) -> None:
        self.rollouts: dict[str, float] = {}

    async def set_share(self, target: TrafficTarget) -> None:
        self.rollouts[target.deployment] = target.canary_percent

    async def get_share(self, deployment: str) -> float | None:
        return self.rollouts.get(deployment)

    def describe(self) -> str:
        return "rollouts in a dict"

    async def close(self) -> None:
        pass


def _actuator(backend: Any, clock: FakeTime | None = None, **kwargs: Any) -> Actuator:
    clock = clock or FakeTime()
    kwargs.setdefault("verifier", VERIFIER)
    kwargs.setdefault("scope", EVERY_SERVICE)
    kwargs.setdefault("retry", RetryPolicy(initial_delay=0.1, jitter=0.0, deadline=10.0))
    kwargs.setdefault("rng", random.Random(7))
    return Actuator(
        backend, monotonic=clock.monotonic, sleep=clock.sleep, clock=lambda: 1.7e9, **kwargs
    )


def _act(actuator: Actuator, decision: Decision, signature: str | None = "sign") -> Any:
    if signature == "sign":
        signature = SIGNER.sign_decision(decision)
    return asyncio.run(actuator.actuate(decision, signature))


def test_applied_after_read_back_agrees() -> None:
    router = MemoryRouter()
    report = _act(_actuator(router), make_decision(0, traffic_percent=5.0))
    assert report.status is ActuationStatus.APPLIED
    assert (report.traffic_percent_requested, report.traffic_percent_observed) == (5.0, 5.0)
    assert report.attempts == 1 and not report.dry_run and report.backend == "memory"
    assert report.seq == 0 and report.action is Action.ADVANCE and report.ts == 1.7e9
    assert router.weights == {DEPLOYMENT: 5.0}


def test_retries_back_off_exponentially_then_apply() -> None:
    clock = FakeTime()
    router = FlakyRouter(failures=3)
    report = _act(_actuator(router, clock), make_decision(0))
    assert report.status is ActuationStatus.APPLIED
    assert report.attempts == 4 and router.calls == 4
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4])


def test_backoff_jitter_comes_from_the_injected_rng() -> None:
    policy = RetryPolicy(initial_delay=0.1, jitter=0.5, deadline=10.0)
    clock = FakeTime()
    _act(
        _actuator(FlakyRouter(failures=2), clock, retry=policy, rng=random.Random(3)),
        make_decision(0),
    )
    draw = random.Random(3)
    expected = [0.1 * (1 - 0.5 * draw.random()), 0.2 * (1 - 0.5 * draw.random())]
    assert clock.sleeps == pytest.approx(expected)
    assert 0.05 <= clock.sleeps[0] <= 0.1 and 0.1 <= clock.sleeps[1] <= 0.2


def test_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay=0.1, jitter=0.0, deadline=10.0)
    router = FlakyRouter(failures=10)
    report = _act(_actuator(router, retry=policy), make_decision(0))
    assert report.status is ActuationStatus.FAILED
    assert report.attempts == 3 and router.calls == 3
    assert "gave up after 3 attempts" in report.detail
    assert "RouterError: backend unavailable" in report.detail


def test_deadline_stops_retrying() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=0.4, jitter=0.0, deadline=1.0)
    clock = FakeTime()
    report = _act(_actuator(FlakyRouter(failures=10), clock, retry=policy), make_decision(0))
    assert report.status is ActuationStatus.FAILED
    assert clock.sleeps == [0.4]  # 0.4 + 0.8 would pass the 1 s deadline
    assert report.attempts == 2 and "deadline of 1 s" in report.detail


def test_a_hung_backend_is_cut_off_at_the_deadline() -> None:
    class Hung(MemoryRouter):
        async def set_share(self, target: TrafficTarget) -> None:
            await asyncio.Event().wait()

    policy = RetryPolicy(max_attempts=1, deadline=0.2)
    actuator = Actuator(Hung(), verifier=VERIFIER, scope=EVERY_SERVICE, retry=policy)  # real clock
    report = _act(actuator, make_decision(0))
    assert report.status is ActuationStatus.FAILED and "timed out" in report.detail


def test_read_back_mismatch_fails() -> None:
    policy = RetryPolicy(max_attempts=2, initial_delay=0.0, jitter=0.0)
    report = _act(_actuator(FlakyRouter(skew=1.0), retry=policy), make_decision(0))
    assert report.status is ActuationStatus.FAILED
    assert report.traffic_percent_observed == 11.0 and report.attempts == 2
    assert "read back 11% for a requested 10%" in report.detail


def test_read_back_within_half_a_point_is_applied() -> None:
    report = _act(_actuator(FlakyRouter(skew=0.5)), make_decision(0))
    assert report.status is ActuationStatus.APPLIED


def test_no_read_back_fails() -> None:
    policy = RetryPolicy(max_attempts=1)
    report = _act(_actuator(FlakyRouter(report=False), retry=policy), make_decision(0))
    assert report.status is ActuationStatus.FAILED and "cannot report" in report.detail


def test_dry_run_changes_nothing() -> None:
    router = MemoryRouter()
    router.weights[DEPLOYMENT] = 5.0
    actuator = _actuator(router, dry_run=True)
    report = _act(actuator, make_decision(1, traffic_percent=10.0))
    assert report.status is ActuationStatus.APPLIED and report.dry_run
    assert report.traffic_percent_observed == 5.0
    assert "would set canary traffic to 10% (now 5%)" in report.detail
    assert router.calls == 0 and router.weights == {DEPLOYMENT: 5.0}
    stale = _act(actuator, make_decision(0, traffic_percent=1.0))  # a drill fences too
    assert stale.status is ActuationStatus.REJECTED and stale.dry_run


def test_dry_run_reports_an_unreachable_backend() -> None:
    class Down(MemoryRouter):
        async def get_share(self, deployment: str) -> float | None:
            raise RouterError("connection refused")

    report = _act(_actuator(Down(), dry_run=True), make_decision(0))
    assert report.status is ActuationStatus.APPLIED and report.traffic_percent_observed is None
    assert "unreadable: RouterError: connection refused" in report.detail


def test_hold_changes_nothing_and_reports_the_observed_share() -> None:
    router = MemoryRouter()
    router.weights[DEPLOYMENT] = 25.0
    decision = make_decision(4, Action.HOLD, traffic_percent=25.0, phase=Phase.HELD)
    report = _act(_actuator(router), decision)
    assert report.status is ActuationStatus.APPLIED and router.calls == 0
    assert report.traffic_percent_observed == 25.0 and report.detail.startswith("hold")


@pytest.mark.parametrize(
    ("signature", "reason"),
    [(None, "unsigned"), ("hmac-sha256:" + "ab" * 32, "bad_signature")],
)
def test_unsigned_and_forged_are_rejected_and_counted(signature: str | None, reason: str) -> None:
    registry = CollectorRegistry()
    router = MemoryRouter()
    actuator = _actuator(router, metrics=ActuationMetrics(registry))
    report = _act(actuator, make_decision(0, Action.PROMOTE, 100.0, Phase.PROMOTED), signature)
    assert report.status is ActuationStatus.REJECTED and router.calls == 0
    assert (
        registry.get_sample_value("canarystream_actuation_rejected_total", {"reason": reason}) == 1
    )
    labels = {"backend": "memory", "status": "rejected"}
    assert registry.get_sample_value("canarystream_actuations_total", labels) == 1


def test_a_decision_signed_with_another_key_is_rejected() -> None:
    decision = make_decision(0)
    forged = Signer.hmac(b"not the key").sign_decision(decision)
    router = MemoryRouter()
    report = _act(_actuator(router), decision, forged)
    assert report.status is ActuationStatus.REJECTED and "signature" in report.detail
    assert router.calls == 0


def test_the_signature_covers_the_message_bytes_when_given() -> None:
    decision = make_decision(0)
    payload = encode_decision(decision)
    router = MemoryRouter()
    actuator = _actuator(router)
    canonical = SIGNER.sign_decision(decision)
    # Signed over other bytes than the message's (here the canonical form): refused.
    refused = asyncio.run(actuator.actuate(decision, canonical, payload))
    assert refused.status is ActuationStatus.REJECTED and router.calls == 0
    # The same decision, re-serialised with other whitespace: other bytes, refused.
    pretty = orjson.dumps(orjson.loads(payload), option=orjson.OPT_INDENT_2)
    refused = asyncio.run(actuator.actuate(decision, SIGNER.sign(payload), pretty))
    assert refused.status is ActuationStatus.REJECTED and router.calls == 0
    applied = asyncio.run(actuator.actuate(decision, SIGNER.sign(payload), payload))
    assert applied.status is ActuationStatus.APPLIED and router.calls == 1


def test_without_a_verifier_signatures_are_not_checked() -> None:
    report = _act(
        _actuator(MemoryRouter(), verifier=None, scope=EVERY_SERVICE), make_decision(0), None
    )
    assert report.status is ActuationStatus.APPLIED


def test_duplicate_and_stale_are_rejected() -> None:
    router = MemoryRouter()
    actuator = _actuator(router)
    assert _act(actuator, make_decision(2, traffic_percent=25.0)).status is ActuationStatus.APPLIED
    duplicate = _act(actuator, make_decision(2, traffic_percent=25.0))
    assert duplicate.status is ActuationStatus.REJECTED and "applied already" in duplicate.detail
    stale = _act(actuator, make_decision(1, traffic_percent=10.0))
    assert stale.status is ActuationStatus.REJECTED
    assert "seq 1 is not newer than seq 2" in stale.detail
    assert router.calls == 1 and router.weights[DEPLOYMENT] == 25.0


def test_a_failed_decision_can_be_redelivered() -> None:
    policy = RetryPolicy(max_attempts=1)
    router = FlakyRouter(failures=1)
    actuator = _actuator(router, retry=policy)
    assert _act(actuator, make_decision(0)).status is ActuationStatus.FAILED
    assert _act(actuator, make_decision(0)).status is ActuationStatus.APPLIED


def test_rollback_goes_to_zero_and_ends_the_rollout_in_the_fence() -> None:
    fence = Fence(max_finished=1)
    router = MemoryRouter()
    actuator = _actuator(router, fence=fence)
    _act(actuator, make_decision(0, traffic_percent=10.0))
    report = _act(actuator, make_decision(1, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK))
    assert report.status is ActuationStatus.APPLIED and router.weights[DEPLOYMENT] == 0.0
    other = make_decision(0, Action.ROLLBACK, 0.0, Phase.ABORTED, deployment="other")
    _act(actuator, other)
    assert DEPLOYMENT not in fence  # the oldest finished rollout is forgotten


def _rolled_back_from_20(**kwargs: Any) -> tuple[MemoryRouter, FakeTime, Any]:
    router = kwargs.pop("router", None) or MemoryRouter()
    clock = FakeTime()
    actuator = _actuator(router, clock, **kwargs)
    _act(actuator, make_decision(0, traffic_percent=20.0))
    report = _act(actuator, make_decision(1, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK))
    return router, clock, report


def test_rollback_is_immediate_by_default() -> None:
    router, clock, report = _rolled_back_from_20()
    assert router.history == [(DEPLOYMENT, 20.0), (DEPLOYMENT, 0.0)] and clock.sleeps == []
    assert report.status is ActuationStatus.APPLIED and "stepped" not in report.detail


def test_gradual_rollback_steps_down_then_verifies_zero() -> None:
    router, clock, report = _rolled_back_from_20(rollback_steps=4, rollback_step_seconds=10.0)
    shares = [share for _, share in router.history]
    assert shares == [20.0, 15.0, 10.0, 5.0, 0.0]
    assert clock.sleeps == [10.0, 10.0, 10.0]  # paced between steps, none after 0
    assert report.status is ActuationStatus.APPLIED and report.traffic_percent_observed == 0.0
    assert report.detail.endswith("stepped 20% -> 15% -> 10% -> 5% -> 0%")


def test_a_failed_step_goes_straight_to_zero() -> None:
    class FailsAt15(MemoryRouter):
        async def set_share(self, target: TrafficTarget) -> None:
            if target.canary_percent == 15.0:
                raise RouterError("busy")
            await super().set_share(target)

    router, clock, report = _rolled_back_from_20(
        router=FailsAt15(), rollback_steps=4, rollback_step_seconds=10.0
    )
    assert [share for _, share in router.history] == [20.0, 0.0] and clock.sleeps == []
    assert report.status is ActuationStatus.APPLIED
    assert "step to 15% failed, went straight to 0%: RouterError: busy" in report.detail


def test_hurry_cuts_a_gradual_rollback_short() -> None:
    router = MemoryRouter()
    actuator = Actuator(
        router, verifier=None, scope=EVERY_SERVICE, rollback_steps=4, rollback_step_seconds=30.0
    )

    async def scenario() -> Any:
        await actuator.actuate(make_decision(0, traffic_percent=20.0), None)
        rollback = make_decision(1, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK)
        task = asyncio.create_task(actuator.actuate(rollback, None))
        await asyncio.sleep(0.2)  # in the first 30 s pause
        actuator.hurry()
        return await asyncio.wait_for(task, 5)

    report = asyncio.run(scenario())
    assert [share for _, share in router.history] == [20.0, 15.0, 0.0]
    assert report.status is ActuationStatus.APPLIED and "remaining steps skipped" in report.detail


def test_gradual_rollback_dry_run() -> None:
    router = MemoryRouter()
    router.weights[DEPLOYMENT] = 20.0
    actuator = _actuator(router, dry_run=True, rollback_steps=3, rollback_step_seconds=5.0)
    report = _act(actuator, make_decision(1, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK))
    assert "would step canary traffic down to 0% in 3 steps 5 s apart (now 20%)" in report.detail
    assert router.calls == 0


def test_flag_provider_backend() -> None:
    flags = MemoryFlags()
    report = _act(_actuator(flags), make_decision(0, traffic_percent=50.0))
    assert report.status is ActuationStatus.APPLIED and report.backend == "memory_flags"
    assert flags.rollouts == {DEPLOYMENT: 50.0}


def test_not_a_backend() -> None:
    with pytest.raises(TypeError, match="not a TrafficBackend"):
        Actuator(object(), verifier=None, scope=EVERY_SERVICE)  # type: ignore[arg-type]


def test_metrics_count_outcomes_and_durations() -> None:
    registry = CollectorRegistry()
    clock = FakeTime()
    policy = RetryPolicy(max_attempts=2, initial_delay=0.5, jitter=0.0)
    actuator = _actuator(
        FlakyRouter(failures=3), clock, retry=policy, metrics=ActuationMetrics(registry)
    )
    _act(actuator, make_decision(0))  # fails twice: failed
    _act(actuator, make_decision(0))  # fails once, then applies
    _act(actuator, make_decision(0))  # duplicate

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    for status in ("applied", "failed", "rejected"):
        assert sample("canarystream_actuations_total", backend="flaky", status=status) == 1
    assert sample("canarystream_actuation_rejected_total", reason="duplicate") == 1
    assert sample("canarystream_actuation_duration_seconds_count", backend="flaky") == 3
    assert sample("canarystream_actuation_duration_seconds_sum", backend="flaky") == 1.0


def test_retry_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)
    with pytest.raises(ValueError, match="deadline"):
        RetryPolicy(deadline=0)
    with pytest.raises(ValueError, match="rollback_steps"):
        Actuator(MemoryRouter(), verifier=None, scope=EVERY_SERVICE, rollback_steps=0)
