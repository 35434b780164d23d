"""What an actuator reports of the routing: a traffic_shifted for each change applied and read
back, with the share its backend reported (never the share asked for), and nothing else."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from canarystream.actuators import Actuator
from canarystream.actuators.base import TrafficTarget
from canarystream.actuators.executor import RetryPolicy
from canarystream.actuators.routing import encode_shift, observed_shift
from canarystream.contracts.actuation import ActuationReport
from canarystream.contracts.decision import Action, Decision, Phase
from canarystream.contracts.events import input_event_adapter
from tests.support.actuators import EVERY_SERVICE, ProtocolOnly, make_decision

NOW = 1_790_000_100.0


class Rounding(ProtocolOnly):
    """A router whose weights are out of 256: it reads back 25.39 % when asked for 25 %."""

    async def set_share(self, target: TrafficTarget) -> None:
        self.shares[target.deployment] = round(target.canary_percent * 2.56) / 2.56


def _actuate(
    decision: Decision, *, dry_run: bool = False, backend: ProtocolOnly | None = None
) -> ActuationReport:
    actuator = Actuator(
        backend or Rounding(),
        verifier=None,
        scope=EVERY_SERVICE,
        dry_run=dry_run,
        retry=RetryPolicy(max_attempts=1),
        rng=random.Random(0),
        clock=lambda: NOW,
    )
    return asyncio.run(actuator.actuate(decision, None))


def test_an_applied_change_is_reported_with_the_share_read_back() -> None:
    decision = make_decision(3, traffic_percent=25.0, ts=NOW - 30)
    report = _actuate(decision)
    shift = observed_shift(decision, report, "memory/edge-1")
    assert shift is not None
    assert (shift.ts, shift.traffic_percent) == (NOW, round(25 * 2.56) / 2.56)
    assert (shift.deployment, shift.service) == (decision.deployment, decision.service)
    assert (shift.backend, shift.decision_id) == ("memory/edge-1", decision.decision_id)
    # What is published is a valid input event of the contract, absent fields left out.
    value = orjson.loads(encode_shift(shift))
    assert input_event_adapter.validate_python(value) == shift
    assert value["type"] == "traffic_shifted"


def test_a_shift_is_never_stamped_before_its_decision() -> None:
    decision = make_decision(1, traffic_percent=5.0, ts=NOW + 600)  # an actuator clock behind
    shift = observed_shift(decision, _actuate(decision), "memory/edge-1")
    assert shift is not None and shift.ts == decision.ts


@pytest.mark.parametrize("case", ["hold", "dry run", "failed", "unreadable"])
def test_nothing_is_reported_without_a_change_applied_and_read_back(case: str) -> None:
    backend: ProtocolOnly = Rounding()
    action = Action.HOLD if case == "hold" else Action.ADVANCE
    decision = make_decision(2, action, traffic_percent=10.0, phase=Phase.HELD, ts=NOW)
    if case == "failed":

        class Broken(ProtocolOnly):
            async def set_share(self, target: TrafficTarget) -> None:
                raise OSError("router unreachable")

        backend = Broken()
    elif case == "unreadable":

        class Blind(ProtocolOnly):
            async def get_share(self, deployment: str) -> float | None:
                return None

        backend = Blind()
    report = _actuate(decision, dry_run=case == "dry run", backend=backend)
    assert observed_shift(decision, report, "memory/edge-1") is None
