"""An actuator acts once per decision across restarts: its fence is rebuilt from its own reports
on the actuations topic, and hooks whose intent was recorded never run again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from canarystream.actuators import (
    ActuationMetrics,
    Actuator,
    Fence,
    HAProxyConfig,
    HAProxyRouter,
    HookActuator,
    HookRunner,
    HookRunnerConfig,
    MemoryRouter,
)
from canarystream.actuators.fencing import Admission
from canarystream.actuators.service import ActuatorService
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.decision import Action, Decision, Phase
from canarystream.contracts.events import CompensationHook
from canarystream.contracts.signing import Signer, generate_ed25519_key
from canarystream.contracts.topics import ACTUATIONS_TOPIC
from tests.actuators.test_service import (
    KEY,
    ROLLBACK,
    SIGNER,
    publish,
    reports,
    running,
    signed,
    wait_for_reports,
)
from tests.support.actuators import EVERY_SERVICE, HAProxy, make_decision
from tests.support.broker import Stack

PY = sys.executable
# Writes its pid to argv[1] + ".pid", appends a line to argv[1], then sleeps argv[2] seconds.
SLOW_MARK = (
    "import os, sys, time; open(sys.argv[1] + '.pid', 'w').write(str(os.getpid())); "
    "open(sys.argv[1], 'a').write('ran\\n'); time.sleep(float(sys.argv[2]))"
)


def _haproxy_service(stack: Stack, haproxy: HAProxy, name: str = "edge") -> ActuatorService:
    router = HAProxyRouter(
        HAProxyConfig(
            address=haproxy.socket,
            backend=haproxy.backend,
            baseline_server=haproxy.baseline_server,
            canary_server=haproxy.canary_server,
        )
    )
    actuator = Actuator(
        router,
        verifier=SIGNER.verifier(),
        scope=EVERY_SERVICE,
        metrics=ActuationMetrics(CollectorRegistry()),
    )
    return ActuatorService(
        actuator, stack.connection, name=name, metrics_port=None, poll_seconds=0.2
    )


def _weights(haproxy: HAProxy) -> tuple[int, int]:
    router = HAProxyRouter(
        HAProxyConfig(
            address=haproxy.socket,
            backend=haproxy.backend,
            baseline_server=haproxy.baseline_server,
            canary_server=haproxy.canary_server,
        )
    )
    return asyncio.run(router.weights())


@pytest.mark.kafka
def test_an_old_signed_decision_replayed_after_a_restart_is_refused(
    stack: Stack, haproxy: HAProxy
) -> None:
    rollout = [
        make_decision(0, traffic_percent=10.0),
        make_decision(1, traffic_percent=25.0),
        make_decision(2, traffic_percent=50.0),
        make_decision(3, **ROLLBACK),
    ]
    with running(_haproxy_service(stack, haproxy)):
        publish(stack, [signed(d) for d in rollout])
        applied = wait_for_reports(stack, 4)
    assert [r.status for r in applied] == [ActuationStatus.APPLIED] * 4
    assert {r.actuator for r in applied} == {"haproxy/edge"}
    assert _weights(haproxy) == (100, 0)

    # A new process: nothing in memory. The attacker replays the signed seq-1 and seq-0
    # decisions (25 %, 10 %) after the rollback.
    with running(_haproxy_service(stack, haproxy)):
        publish(stack, [signed(rollout[1]), signed(rollout[0])])
        got = wait_for_reports(stack, 6)
    replayed = got[4:]
    assert [r.status for r in replayed] == [ActuationStatus.REJECTED] * 2, replayed
    assert "applied already" in replayed[0].detail
    assert _weights(haproxy) == (100, 0)


@pytest.mark.kafka
def test_the_fence_of_one_instance_is_not_another_s(stack: Stack) -> None:
    first = MemoryRouter()
    decision = make_decision(0, traffic_percent=30.0)

    def service(router: MemoryRouter, name: str) -> ActuatorService:
        actuator = Actuator(router, verifier=SIGNER.verifier(), scope=EVERY_SERVICE)
        return ActuatorService(actuator, stack.connection, name=name, poll_seconds=0.2)

    with running(service(first, "dc1")):
        publish(stack, [signed(decision)])
        wait_for_reports(stack, 1)
    # Another router of the same kind, started after: the decision is its own to apply.
    second = MemoryRouter()
    with running(service(second, "dc2")):
        publish(stack, [signed(decision)])  # redelivered, as a new group from now on sees it
        got = wait_for_reports(stack, 2)
    assert [(r.actuator, r.status.value) for r in got] == [
        ("memory/dc1", "applied"),
        ("memory/dc2", "applied"),
    ]
    assert second.history == [(decision.deployment, 30.0)]


def _rollback_with(hooks: list[CompensationHook]) -> Decision:
    decision = make_decision(1, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK)
    return decision.model_copy(update={"compensation": hooks})


def _hook_service(stack: Stack, name: str = "h") -> ActuatorService:
    hooks = HookActuator(
        HookRunner(HookRunnerConfig(allow_any=True)),
        verifier=SIGNER.verifier(),
        scope=EVERY_SERVICE,
    )
    return ActuatorService(hooks, stack.connection, name=name, poll_seconds=0.2)


@pytest.mark.kafka
def test_hooks_are_not_run_again_when_their_decision_comes_back_after_a_restart(
    stack: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    hook = CompensationHook(name="down", command=[PY, "-c", SLOW_MARK, str(marker), "0"])
    decision = _rollback_with([hook])
    with running(_hook_service(stack)):
        publish(stack, [signed(decision)])
        started, done = wait_for_reports(stack, 2)
    assert (started.status, done.status) == (ActuationStatus.STARTED, ActuationStatus.APPLIED)
    assert marker.read_text() == "ran\n"

    with running(_hook_service(stack)):
        publish(stack, [signed(decision)])
        got = wait_for_reports(stack, 3)
    assert got[2].status is ActuationStatus.REJECTED and "handled already" in got[2].detail
    assert marker.read_text() == "ran\n"


@pytest.mark.kafka
def test_hooks_cut_off_by_a_crash_are_reported_unknown_not_run_again(
    stack: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    hook = CompensationHook(
        name="down", command=[PY, "-c", SLOW_MARK, str(marker), "60"], timeout_seconds=90
    )
    decision = _rollback_with([hook])
    env = {
        **stack.env,
        "CANARYSTREAM_SIGNING_SCHEME": "hmac-sha256",
        "CANARYSTREAM_VERIFY_KEYS": orjson.dumps([KEY]).decode(),
    }
    command = [
        *(PY, "-m", "canarystream", "actuate", "hooks", "--allow-any-hook"),
        *("--service", "shop", "--name", "crash", "--start-from", "earliest"),
        *("--metrics-port", "0"),
    ]
    log = tmp_path / "actuate.log"

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as sink:
            return subprocess.Popen(
                command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )

    first = start()
    try:
        publish(stack, [signed(decision)])
        stack.wait_for(lambda: marker.exists() or first.poll() is not None, 30, "the hook")
        assert first.poll() is None, log.read_text()
    finally:
        # A crash mid-hook: the actuator and its hook die; the offset is not committed.
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        pid = tmp_path / "ran.pid"
        if pid.exists():  # the hook runs in a session of its own
            os.kill(int(pid.read_text()), signal.SIGKILL)
    (intent,) = reports(stack)
    assert intent.status is ActuationStatus.STARTED and intent.actuator == "hooks/crash"

    second = start()
    try:
        got = wait_for_reports(stack, 2, timeout=40)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(15)
    assert got[1].decision_id == decision.decision_id
    assert got[1].status is ActuationStatus.FAILED
    assert got[1].detail.startswith("unknown outcome, needs a person"), got[1].detail
    time.sleep(0.5)
    assert marker.read_text() == "ran\n"


def test_the_fence_rebuilt_from_reports_refuses_what_was_done_and_flags_what_was_begun() -> None:
    traffic = Actuator(MemoryRouter(), verifier=None, scope=EVERY_SERVICE, fence=Fence())
    hooks = HookActuator(HookRunner(), verifier=None, scope=EVERY_SERVICE, fence=Fence())

    def report(decision: Decision, status: ActuationStatus) -> ActuationReport:
        return ActuationReport(
            actuation_id=f"r{decision.seq}{status.value}",
            decision_id=decision.decision_id,
            deployment=decision.deployment,
            service=decision.service,
            seq=decision.seq,
            action=decision.action,
            backend="x",
            status=status,
            ts=0.0,
            traffic_percent_requested=decision.traffic_percent,
        )

    d0, d1, d2 = (make_decision(seq) for seq in range(3))
    for handler in (traffic, hooks):
        handler.remember(report(d0, ActuationStatus.APPLIED))
        handler.remember(report(d2, ActuationStatus.REJECTED))  # refused: not done
    hooks.remember(report(d1, ActuationStatus.STARTED))
    traffic.remember(report(d1, ActuationStatus.FAILED))  # a traffic failure may be retried
    assert traffic.fence.admit(d0.decision_id, d0.deployment, 0) is Admission.DUPLICATE
    assert traffic.fence.admit(d1.decision_id, d1.deployment, 1) is Admission.NEW
    assert hooks.fence.admit(d1.decision_id, d1.deployment, 1) is Admission.UNKNOWN_OUTCOME
    assert hooks.fence.admit(d0.decision_id, d0.deployment, 0) is Admission.DUPLICATE
    unknown = asyncio.run(hooks.actuate(d1, None))
    assert unknown.status is ActuationStatus.FAILED
    assert unknown.detail.startswith("unknown outcome, needs a person")
    again = asyncio.run(hooks.actuate(d1, None))  # reported once, then a duplicate
    assert again.status is ActuationStatus.REJECTED and "handled already" in again.detail
    hooks.remember(report(d1, ActuationStatus.APPLIED))
    assert hooks.fence.admit(d1.decision_id, d1.deployment, 1) is Admission.DUPLICATE


@pytest.mark.kafka
def test_after_a_rebalance_the_new_owner_refuses_what_the_old_one_applied(stack: Stack) -> None:
    routers = {"a": MemoryRouter(), "b": MemoryRouter()}

    def service(router: MemoryRouter) -> ActuatorService:
        actuator = Actuator(router, verifier=SIGNER.verifier(), scope=EVERY_SERVICE)
        return ActuatorService(actuator, stack.connection, name="ha", poll_seconds=0.2)

    rollout = [make_decision(seq, traffic_percent=10.0 * (seq + 1)) for seq in range(3)]
    a, b = service(routers["a"]), service(routers["b"])
    with running(a), running(b):
        # Both read the reports back at start, when there were none; the group splits the
        # partitions between them (two members join in more than one round: waited for here,
        # so that the decisions are not published into a rebalance).
        stack.wait_for(
            lambda: len(a.assignment) + len(b.assignment) == 12 and a.assignment and b.assignment,
            60,
            "the group to split the partitions",
        )
        publish(stack, [signed(d) for d in rollout])
        wait_for_reports(stack, 3, timeout=60)
        owner = "a" if routers["a"].history else "b"
        other = {"a": b, "b": a}[owner]
        ({"a": a, "b": b}[owner]).stop()  # leaves the group: its partitions move to the other
        stack.wait_for(lambda: len(other.assignment) == 12, 30, "the partitions to move over")
        publish(stack, [signed(rollout[1])])  # the signed seq-1 decision, replayed
        got = wait_for_reports(stack, 4, timeout=60)
    survivor = "b" if owner == "a" else "a"
    assert routers[survivor].history == []
    assert got[3].status is ActuationStatus.REJECTED and "applied already" in got[3].detail
    assert got[3].actuator == "memory/ha"


@pytest.mark.kafka
def test_a_signing_actuator_ignores_forged_reports_when_it_rebuilds_its_fence(
    stack: Stack,
) -> None:
    own_key = Signer.ed25519(generate_ed25519_key()[0])
    router = MemoryRouter()

    def service() -> ActuatorService:
        actuator = Actuator(router, verifier=SIGNER.verifier(), scope=EVERY_SERVICE)
        return ActuatorService(
            actuator, stack.connection, name="s", poll_seconds=0.2, report_signer=own_key
        )

    with running(service()):
        publish(stack, [signed(make_decision(0, traffic_percent=10.0))])
        (first,) = wait_for_reports(stack, 1)
    # A writer to the actuations topic forges this instance's report of a seq far ahead, so
    # that the rollout's next decisions would be refused as stale.
    forged = first.model_copy(update={"decision_id": "forged", "seq": 99, "actuation_id": "forged"})
    value = orjson.dumps(forged.model_dump(mode="json"))
    stack.produce_raw(ACTUATIONS_TOPIC, [value], key=first.deployment.encode())
    with running(service()):
        publish(stack, [signed(make_decision(1, traffic_percent=25.0))])
        got = wait_for_reports(stack, 3)
    assert got[-1].seq == 1 and got[-1].status is ActuationStatus.APPLIED, got[-1].detail
    assert router.history[-1] == (first.deployment, 25.0)
