"""On the broker: the routing an actuator applied reaches the worker, which judges by it; a
decision nobody applies holds the rollout and pages once its actuation deadline has passed.

An actuator (in this process, signing as the ``actuator`` principal, granted ``route``)
applies the rollout's first two decisions on a backend and publishes what it read back; then
it stops, and the third decision is never applied. Event times start an hour ahead of the
wall clock, so each shift is stamped with its decision's time (an actuator never stamps one
before its decision) and the run decides the same however fast the machine is.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from canarystream.actuators import ActuationMetrics, Actuator
from canarystream.actuators.service import ActuatorService
from canarystream.contracts.authn import message_credentials
from canarystream.contracts.decision import Action
from canarystream.contracts.signing import Verifier
from canarystream.contracts.topics import DEPLOYMENTS_TOPIC, VERDICTS_TOPIC
from canarystream.principals import write_access_file
from tests.actuators.test_service import running
from tests.support.actuators import EVERY_SERVICE, ProtocolOnly
from tests.support.broker import Stack, key, replayed
from tests.support.keys import GRANTS
from tests.support.streams import T0, Stream, fast_policy

pytestmark = pytest.mark.kafka

POLICY = fast_policy(
    name="routed",
    baseline_mode="stable",
    actuation_deadline=30,
    stages=[{"traffic_percent": p, "min_duration": 30, "min_samples": 20} for p in (10, 50, 90)],
    checks=[
        {"kind": "error_rate", "advance_abs_margin": 0.05},
        {"kind": "latency", "quantile": 0.5, "tolerance": 0.2, "advance_tolerance": 0.5},
    ],
)


def _shifts(stack: Stack) -> list[tuple[dict[str, Any], str | None]]:
    """The traffic shifts on the deployments topic, with the principal each claims."""
    out = []
    for message in stack.read_messages(DEPLOYMENTS_TOPIC):
        event = orjson.loads(message.value)
        if event.get("type") == "traffic_shifted":
            out.append((event, message_credentials(message.headers)[0]))
    return out


def _accepted_shifts(stack: Stack) -> int:
    verdicts = [orjson.loads(raw) for raw in stack.read(VERDICTS_TOPIC)]
    judged = [(v["event_type"], v["verdict"]) for v in verdicts]
    return judged.count(("traffic_shifted", "accepted"))


def test_the_worker_follows_the_applied_routing_and_pages_when_a_decision_is_not_applied(
    stack: Stack,
) -> None:
    grants = [*GRANTS, {"principals": ["actuator"], "actions": ["route"]}]
    write_access_file(
        stack.access_file, stack.keys.pairs.values(), [{"services": ["*"], **g} for g in grants]
    )
    stack.start_worker()
    offset = time.time() + 3600 - T0

    def later(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**event, "ts": event["ts"] + offset} for event in events]

    stream = Stream(3)
    started = later([stream.started(policy=POLICY)])
    at_10 = later(stream.requests(0, 45, rate=90, canary_rate=10))
    at_50 = later(stream.requests(45, 130, rate=50, canary_rate=50))  # 90 % is never routed
    backend = ProtocolOnly()
    actuator = Actuator(
        backend,
        verifier=Verifier(ed25519_keys=[stack.keys.public_pem("worker")]),
        scope=EVERY_SERVICE,
        metrics=ActuationMetrics(CollectorRegistry()),
    )
    service = ActuatorService(
        actuator,
        stack.connection,
        name="routing",
        poll_seconds=0.2,
        start_from="earliest",
        report_signer=stack.keys.signer("actuator"),
        principal="actuator",
    )
    with running(service):
        stack.produce(started)
        stack.wait_for(lambda: _accepted_shifts(stack) == 1, 60, "the first shift judged")
        stack.produce(at_10, signed_by=None)
        stack.wait_for(lambda: _accepted_shifts(stack) == 2, 60, "the second shift judged")
    stack.produce(at_50, signed_by=None)
    stack.wait_for(lambda: any(d.page for d in stack.decisions()), 60, "a page")

    decisions = stack.decisions()
    assert [(d.seq, d.action, d.traffic_percent, d.ts - started[0]["ts"]) for d in decisions] == [
        (0, Action.ADVANCE, 10.0, 0.0),
        (1, Action.ADVANCE, 50.0, 30.0),
        (2, Action.ADVANCE, 90.0, 60.0),
        (3, Action.HOLD, 90.0, 90.0),
    ]
    hold = decisions[3]
    assert hold.page and hold.summary.startswith(
        f"decision not applied: {decisions[2].decision_id} set the canary's share to 90%, "
        "routing observed at 50%"
    )
    # The guard expected what was routed, not what was decided.
    ratio = next(r for r in hold.reasons if r.check == "sample_ratio")
    assert ratio.message.endswith("vs routed 50%"), ratio.message
    shifts = _shifts(stack)
    assert [(e["traffic_percent"], e["decision_id"], who) for e, who in shifts] == [
        (10.0, decisions[0].decision_id, "actuator"),
        (50.0, decisions[1].decision_id, "actuator"),
    ]
    assert [e["ts"] for e, _ in shifts] == [decisions[0].ts, decisions[1].ts]
    assert stack.dead_letters() == []
    # A replay of what the worker read decides the same.
    assert list(map(key, replayed(stack.recorded_events()))) == list(map(key, decisions))
