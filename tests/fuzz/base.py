"""The valid stream every fuzzed input is inserted into, cut into Kafka-like messages.

Four short rollouts of ``checkout`` are announced and aborted (so that a finished deployment
id can be announced again), then the project's own simulator runs two rollouts side by side
for a little over two minutes under a fast inline policy: a healthy ``checkout`` (paused and
resumed by a person, then promoted) and a ``payments`` canary failing twelve times as often as
its baseline (rolled back, then verified). Requests, gauges and probes come from
:func:`canarystream.simulate.simulate`, in closed loop with the engine.

The events are grouped into messages as producers send them: telemetry in arrays of a few to
a few dozen events of one service (some alone, as a bare object), announcements and control
events one per message on the deployments topic, every message keyed by its service. Offsets
go up by two per topic, so a fuzzed message always has a free offset right after the message
it follows.

>>> stream = build_stream()
>>> stream.messages[0].topic == DEPLOYMENTS_TOPIC, stream.messages[0].events[0]["type"]
(True, 'deployment_started')
>>> len(stream.sites) == len(stream.messages) + 1
True
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson

from canarystream.contracts.decision import Decision
from canarystream.contracts.topics import DEPLOYMENTS_TOPIC, TELEMETRY_TOPIC
from canarystream.engine import Engine
from canarystream.simulate import scenario_from_mapping, simulate

__all__ = [
    "DEPLOYMENTS_TOPIC",
    "GRACE",
    "MAX_SKEW",
    "PARTITIONS",
    "SERVICES",
    "T0",
    "TELEMETRY_TOPIC",
    "TICK",
    "BaseStream",
    "Message",
    "Site",
    "build_stream",
    "decision_key",
    "fuzz_policy",
]

T0 = 1_790_000_000.0  # the two main rollouts start here
TICK = 10.0
SERVICES = ("checkout", "payments")
PARTITIONS = {"checkout": 3, "payments": 7}
FIRST_OFFSET = 10
_TELEMETRY = frozenset({"request", "metric", "probe"})


def _admission_defaults() -> tuple[float, float]:
    """(grace, max_skew) of the policy model's event-time admission, if it has one."""
    try:
        from canarystream.policy.model import Admission  # noqa: PLC0415
    except ImportError:
        return 60.0, 120.0
    admission = Admission()
    return float(admission.grace), float(admission.max_skew)


GRACE, MAX_SKEW = _admission_defaults()


def fuzz_policy() -> dict[str, Any]:
    """The inline policy of the base stream: 10 s ticks, two 30 s stages, paired cohorts."""
    return {
        "name": "fuzz",
        "tick": TICK,
        "baseline_mode": "paired",
        "promote_confidence": 0.9,
        "stages": [
            {"traffic_percent": 10, "min_duration": 20, "min_samples": 20},
            {"traffic_percent": 50, "min_duration": 20, "min_samples": 20},
        ],
        "checks": [
            {
                "kind": "error_rate",
                "advance_abs_margin": 0.05,
                "advance_tolerance": 5.0,
                "promote_tolerance": 5.0,
            },
            {
                "kind": "latency",
                "quantile": 0.9,
                "tolerance": 0.1,
                "advance_tolerance": 1.0,
                "promote_tolerance": 0.5,
                "advance_abs_margin": 0.05,
            },
            {
                "kind": "gauge",
                "metric": "cpu_utilization",
                "window": TICK,
                "min_windows": 3,
                "tolerance": 0.1,
                "advance_tolerance": 0.3,
            },
        ],
        "rollback_verification": {"window": 40, "min_requests": 20},
    }


def decision_key(decision: Decision) -> tuple[Any, ...]:
    """What two runs must agree on for a decision to count as the same."""
    return (
        decision.deployment,
        decision.seq,
        decision.action.value,
        decision.ts,
        decision.stage,
        decision.traffic_percent,
        decision.phase.value,
    )


@dataclass(frozen=True)
class Message:
    """One message of the base stream; ``events`` are its decoded contents."""

    topic: str
    key: bytes
    partition: int
    offset: int
    value: bytes
    events: tuple[dict[str, Any], ...]

    @property
    def service(self) -> str:
        return self.key.decode()

    @property
    def line(self) -> bytes:
        """The message as a JSON Lines line (what replay reads)."""
        return self.value + b"\n"


@dataclass
class Site:
    """What is known of the base stream just before a position: the mutators' context."""

    position: int
    now: float  # time of the last event before the position
    last_ts: dict[str, float] = field(default_factory=dict)  # per service
    announced: dict[str, dict[str, Any]] = field(default_factory=dict)  # deployment -> event
    current: dict[str, dict[str, Any]] = field(default_factory=dict)  # service -> announcement
    templates: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    controls: list[dict[str, Any]] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> last offset before
    applied: dict[tuple[str, str], int] = field(default_factory=dict)  # (service, topic) ->
    # offset of the service's last message on the topic once the service had a deployment
    messages: dict[tuple[str, str], int] = field(default_factory=dict)  # -> index of it


@dataclass(frozen=True)
class BaseStream:
    """The base messages, and the mutators' context before each position (0..len)."""

    messages: tuple[Message, ...]
    sites: tuple[Site, ...]
    events: tuple[dict[str, Any], ...]  # in message order

    @property
    def end_ts(self) -> float:
        """Time of the last base event."""
        return max(event["ts"] for event in self.events)

    def deployments(self) -> list[dict[str, Any]]:
        """Every announcement of the base stream, in order."""
        return [e for e in self.events if e["type"] == "deployment_started"]


class _Scripted:
    """The closed loop's engine, applying scripted control events at their time, recording all."""

    def __init__(self, engine: Engine, controls: list[dict[str, Any]]) -> None:
        self.engine = engine
        self.controls = deque(sorted(controls, key=lambda e: e["ts"]))
        self.events: list[dict[str, Any]] = []

    def process(self, event: dict[str, Any]) -> list[Decision]:
        out: list[Decision] = []
        while self.controls and self.controls[0]["ts"] <= event["ts"]:
            control = self.controls.popleft()
            self.events.append(control)
            out += self.engine.process(control)
        self.events.append(event)
        out += self.engine.process(event)
        return out


def _announcement(deployment: str, service: str, ts: float) -> dict[str, Any]:
    return {
        "type": "deployment_started",
        "ts": ts,
        "deployment": deployment,
        "service": service,
        "baseline_version": "v1",
        "canary_version": "v2",
        "policy": fuzz_policy(),
    }


def _control(kind: str, deployment: str, ts: float, service: str | None) -> dict[str, Any]:
    event = {"type": f"deployment_{kind}", "ts": ts, "deployment": deployment, "actor": "alice"}
    if service is not None:
        event["service"] = service
    return event


def _events(seed: int) -> list[dict[str, Any]]:
    prelude: list[dict[str, Any]] = []
    for index in range(4):
        start = T0 - 400.0 + 90.0 * index
        deployment = f"checkout-r{index + 1}"
        prelude.append(_announcement(deployment, "checkout", start))
        prelude.append(_control("aborted", deployment, start + 30.0, "checkout" if index else None))
    common = {
        "policy": fuzz_policy(),
        "start_ts": T0,
        "duration": 100.0,
        "probes": [{"name": "health", "interval": 10.0}],
    }
    scenarios = [
        scenario_from_mapping(
            {
                **common,
                "deployment": "checkout-7",
                "service": "checkout",
                "traffic": {"baseline_mode": "paired", "cohort_rps": 6, "total_rps": 18},
            }
        ),
        scenario_from_mapping(
            {
                **common,
                "deployment": "payments-3",
                "service": "payments",
                "traffic": {"baseline_mode": "paired", "cohort_rps": 6, "total_rps": 18},
                "regression": {"kind": "errors_mult", "factor": 12.0},
            }
        ),
    ]
    engine = Engine()
    for event in prelude:
        engine.process(event)
    scripted = _Scripted(
        engine,
        [
            _control("paused", "checkout-7", T0 + 15.0, "checkout"),
            _control("resumed", "checkout-7", T0 + 22.0, None),
        ],
    )
    for _ in simulate(scenarios, seed=seed, engine=scripted):
        pass
    return prelude + scripted.events


def _service_of(event: dict[str, Any], deployments: dict[str, str]) -> str:
    return event.get("service") or deployments[event["deployment"]]


def _messages(events: list[dict[str, Any]], seed: int) -> list[Message]:
    rng = random.Random(seed)
    offsets = {TELEMETRY_TOPIC: FIRST_OFFSET, DEPLOYMENTS_TOPIC: FIRST_OFFSET}
    out: list[Message] = []
    buffers: dict[str, list[dict[str, Any]]] = {service: [] for service in SERVICES}
    sizes = {service: rng.randint(1, 30) for service in SERVICES}
    deployments: dict[str, str] = {}

    def emit(topic: str, service: str, batch: list[dict[str, Any]]) -> None:
        value = orjson.dumps(batch[0] if len(batch) == 1 else batch)
        out.append(
            Message(
                topic,
                service.encode(),
                PARTITIONS[service],
                offsets[topic],
                value,
                tuple(batch),
            )
        )
        offsets[topic] += 2

    def flush(service: str) -> None:
        if buffers[service]:
            emit(TELEMETRY_TOPIC, service, buffers[service])
            buffers[service] = []
            sizes[service] = rng.choice((1, rng.randint(2, 12), rng.randint(10, 40)))

    for event in events:
        if event["type"] == "deployment_started":
            deployments[event["deployment"]] = event["service"]
        service = _service_of(event, deployments)
        if event["type"] in _TELEMETRY:
            buffer = buffers[service]
            if buffer and (len(buffer) >= sizes[service] or event["ts"] - buffer[0]["ts"] >= 2.0):
                flush(service)
            buffers[service].append(event)
        else:
            flush(service)
            emit(DEPLOYMENTS_TOPIC, service, [event])
    for service in SERVICES:
        flush(service)
    return out


def _sites(messages: list[Message]) -> Iterator[Site]:
    site = Site(position=0, now=T0 - 500.0)
    for position, message in enumerate(messages):
        yield site
        site = Site(
            position=position + 1,
            now=site.now,
            last_ts=dict(site.last_ts),
            announced=dict(site.announced),
            current=dict(site.current),
            templates=dict(site.templates),
            controls=list(site.controls),
            offsets=dict(site.offsets),
            applied=dict(site.applied),
            messages=dict(site.messages),
        )
        service = message.service
        for event in message.events:
            site.now = max(site.now, event["ts"])
            site.last_ts[service] = event["ts"]
            kind = event["type"]
            if kind == "deployment_started":
                site.announced[event["deployment"]] = event
                site.current[service] = event
            elif kind.startswith("deployment_"):
                site.controls.append(event)
            else:
                site.templates[(service, kind)] = event
        site.offsets[message.topic] = message.offset
        if any(d["service"] == service for d in site.announced.values()):
            site.applied[(service, message.topic)] = message.offset
            site.messages[(service, message.topic)] = position
    yield site


@cache
def build_stream(seed: int = 1) -> BaseStream:
    """The base stream of ``seed`` (cached: it is the same for every input of a run)."""
    events = _events(seed)
    messages = _messages(events, seed)
    return BaseStream(
        messages=tuple(messages),
        sites=tuple(_sites(messages)),
        events=tuple(event for message in messages for event in message.events),
    )
