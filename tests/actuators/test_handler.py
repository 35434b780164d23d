"""One actuate path: refusal, fencing, metering and the report, alike for a traffic backend and
for compensation hooks; and a backend that follows the protocol and nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from canarystream.actuators import (
    ActuationMetrics,
    Actuator,
    Handler,
    HookActuator,
    HookRunner,
    MemoryRouter,
    TrafficBackend,
    TrafficTarget,
)
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.codec import encode_decision
from canarystream.contracts.decision import Action, Decision, Phase
from canarystream.contracts.signing import Signer
from tests.support.actuators import DEPLOYMENT, EVERY_SERVICE, ProtocolOnly, make_decision

SIGNER = Signer.hmac(b"handler test key")
FORGER = Signer.hmac(b"not the key")


def _traffic(metrics: ActuationMetrics, dry_run: bool) -> Handler:
    return Actuator(
        MemoryRouter(),
        verifier=SIGNER.verifier(),
        scope=EVERY_SERVICE,
        metrics=metrics,
        dry_run=dry_run,
        clock=lambda: 1.7e9,
    )


def _hooks(metrics: ActuationMetrics, dry_run: bool) -> Handler:
    return HookActuator(
        HookRunner(),
        verifier=SIGNER.verifier(),
        scope=EVERY_SERVICE,
        metrics=metrics,
        dry_run=dry_run,
        clock=lambda: 1.7e9,
    )


FACTORIES: dict[str, Callable[[ActuationMetrics, bool], Handler]] = {
    "traffic": _traffic,
    "hooks": _hooks,
}


def _script() -> list[tuple[Decision, Signer | None]]:
    """Decisions in delivery order, each with who signs it (None: unsigned)."""
    first = make_decision(0, traffic_percent=10.0)
    return [
        (first, SIGNER),  # applied
        (first, SIGNER),  # redelivered: duplicate
        (make_decision(1, traffic_percent=25.0), None),  # unsigned
        (make_decision(1, traffic_percent=25.0), FORGER),  # bad signature
        (make_decision(2, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK), SIGNER),  # applied
        (make_decision(1, traffic_percent=25.0), SIGNER),  # older than seq 2: stale
    ]


def _run(handler: Handler) -> list[ActuationReport]:
    async def scenario() -> list[ActuationReport]:
        reports = []
        for decision, signer in _script():
            payload = encode_decision(decision)
            signature = None if signer is None else signer.sign(payload)
            reports.append(await handler.actuate(decision, signature, payload))
        return reports

    return asyncio.run(scenario())


def _samples(registry: CollectorRegistry, kind: str) -> dict[str, float | None]:
    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    samples: dict[str, float | None] = {
        f"rejected {reason}": value("canarystream_actuation_rejected_total", reason=reason)
        for reason in ("unsigned", "bad_signature", "duplicate", "stale")
    }
    for status in ("applied", "failed", "rejected"):
        samples[status] = value("canarystream_actuations_total", backend=kind, status=status)
    samples["timed"] = value("canarystream_actuation_duration_seconds_count", backend=kind)
    return samples


_SHARED = (
    "decision_id",
    "deployment",
    "service",
    "seq",
    "action",
    "status",
    "ts",
    "traffic_percent_requested",
    "attempts",
    "dry_run",
)


@pytest.mark.parametrize("dry_run", [False, True])
def test_refusal_metering_and_report_are_the_same_for_traffic_and_hooks(dry_run: bool) -> None:
    runs: dict[str, tuple[list[ActuationReport], dict[str, float | None]]] = {}
    for name, factory in FACTORIES.items():
        registry = CollectorRegistry()
        handler = factory(ActuationMetrics(registry), dry_run)
        reports = _run(handler)
        assert {report.backend for report in reports} == {handler.kind}
        runs[name] = reports, _samples(registry, handler.kind)

    (traffic, traffic_metrics), (hooks, hooks_metrics) = runs["traffic"], runs["hooks"]
    assert [r.status.value for r in traffic] == [
        "applied",
        "rejected",
        "rejected",
        "rejected",
        "applied",
        "rejected",
    ]
    for ours, theirs in zip(traffic, hooks, strict=True):
        assert {k: getattr(ours, k) for k in _SHARED} == {k: getattr(theirs, k) for k in _SHARED}
        assert ours.dry_run is dry_run
        if ours.status is ActuationStatus.REJECTED:
            # The same refusal, worded for what each remembers: a share applied, hooks handled.
            assert ours.detail == theirs.detail.replace("handled", "applied")
    assert [r.detail for r in traffic if r.status is ActuationStatus.REJECTED] == [
        f"refused: decision {traffic[0].decision_id} was applied already",
        "refused: it is not signed",
        "refused: its signature is not valid",
        "refused: seq 1 is not newer than seq 2 already applied",
    ]
    assert traffic_metrics == hooks_metrics
    assert traffic_metrics == {
        "rejected unsigned": 1,
        "rejected bad_signature": 1,
        "rejected duplicate": 1,
        "rejected stale": 1,
        "applied": 2,
        "failed": None,
        "rejected": 4,
        "timed": 6,
    }


def test_a_backend_that_only_follows_the_protocol_is_driven_like_any() -> None:
    backend = ProtocolOnly()
    assert isinstance(backend, TrafficBackend)
    actuator = Actuator(backend, verifier=None, scope=EVERY_SERVICE, rollback_steps=2)
    assert actuator.kind == "protocol_only" and actuator.describe() == "canary shares in a dict"

    async def scenario() -> list[ActuationReport]:
        decisions = [
            make_decision(0, traffic_percent=40.0),
            make_decision(1, Action.HOLD, 40.0, Phase.HELD),
            make_decision(2, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK),
        ]
        reports = [await actuator.actuate(decision, None) for decision in decisions]
        await actuator.close()
        return reports

    advance, hold, rollback = asyncio.run(scenario())
    assert (advance.status, advance.traffic_percent_observed) == (ActuationStatus.APPLIED, 40.0)
    assert hold.detail == "hold: canary traffic left as it is (40%)"
    assert rollback.detail.endswith("stepped 40% -> 20% -> 0%")
    assert backend.shares == {DEPLOYMENT: 0.0} and backend.closed


def test_an_object_missing_part_of_the_protocol_is_refused_by_name() -> None:
    class NoReadBack:
        kind = "half"

        async def set_share(self, target: TrafficTarget) -> None: ...

        def describe(self) -> str:
            return "half a backend"

        async def close(self) -> None: ...

    with pytest.raises(TypeError, match="not a TrafficBackend: it has no get_share"):
        Actuator(NoReadBack(), verifier=None, scope=EVERY_SERVICE)  # type: ignore[arg-type]


def test_handlers_follow_the_handler_protocol() -> None:
    metrics = ActuationMetrics(CollectorRegistry())
    for factory in FACTORIES.values():
        handler: Any = factory(metrics, False)
        assert isinstance(handler, Handler)
        assert handler.longest_seconds > 0 and handler.describe()
