"""Exact small event streams for engine tests: one service, baseline ``v1``, canary ``v2``.

Not a second telemetry generator: the simulator (:mod:`canarystream.simulate`) draws Poisson
arrivals for scenarios; these streams have exactly ``rate`` requests per second per cohort over
chosen seconds, so tests can pin counts, tick boundaries and the decision at a given second.
Requests are drawn from a seeded numpy generator: a fixed number per second per cohort at
uniform times, errors with a per-cohort probability, lognormal latencies per cohort. Policies
are short inline mappings so that a rollout takes minutes of event time and well under a
second of wall time.

>>> stream = Stream(seed=1)
>>> events = stream.requests(0, 2, rate=3)
>>> len(events), sorted({e["version"] for e in events})
(12, ['v1', 'v2'])
>>> events == Stream(seed=1).requests(0, 2, rate=3)
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.streaming.processor import ServiceSnapshot

__all__ = [
    "BASELINE",
    "CANARY",
    "DEPLOYMENT",
    "SERVICE",
    "T0",
    "Cohort",
    "Stream",
    "fast_policy",
    "merge",
    "refuse",
    "request_at",
    "restarted",
    "run",
    "seconds",
]

T0 = 1_790_000_000.0  # event time of every test's deployment_started
SERVICE = "checkout"
DEPLOYMENT = "checkout-42"
BASELINE = "v1"
CANARY = "v2"


@dataclass(frozen=True)
class Cohort:
    """How one version behaves: error probability and lognormal latency (median, sigma)."""

    error_rate: float = 0.01
    median_ms: float = 40.0
    sigma: float = 0.5


HEALTHY = Cohort()


def request_at(
    ts: float, version: str, status: int = 200, latency_ms: float = 40.0, **extra: Any
) -> dict[str, Any]:
    """One request of :data:`SERVICE` stamped ``ts`` (absolute event time)."""
    return {
        "type": "request",
        "ts": ts,
        "service": SERVICE,
        "version": version,
        "latency_ms": latency_ms,
        "status": status,
        **extra,
    }


def refuse(index: int, error: Exception) -> None:
    """An ``on_error`` for ``Engine.process_batch`` where no event may be refused."""
    raise AssertionError(f"event {index} refused: {error}")


def fast_policy(**overrides: Any) -> dict[str, Any]:
    """An inline policy for tests: two 60 s stages, 5 s ticks, equal-size cohorts.

    ``paired`` keeps the canary's expected share of cohort requests at 50 % in every stage,
    so streams with the same rate for both cohorts match the routing whatever the stage. The
    error check's blast-radius margin lets a 1 % error rate show no harm within one stage at
    40 requests per second, so a healthy canary advances as soon as a stage is ready. Promotion
    asks the same confidence as advancing, so the timing of the last step is that of the others.
    """
    policy: dict[str, Any] = {
        "name": "fast",
        "tick": 5,
        "promote_confidence": 0.9,
        "baseline_mode": "paired",
        "stages": [
            {"traffic_percent": 10, "min_duration": 60, "min_samples": 50},
            {"traffic_percent": 50, "min_duration": 60, "min_samples": 50},
        ],
        "checks": [
            {"kind": "error_rate", "advance_abs_margin": 0.01},
            {"kind": "latency", "quantile": 0.9, "tolerance": 0.1, "advance_tolerance": 0.3},
        ],
    }
    policy.update(overrides)
    return policy


class Stream:
    """Builder of the events of one rollout of :data:`SERVICE` (times are seconds after T0)."""

    def __init__(
        self,
        seed: int = 0,
        *,
        deployment: str = DEPLOYMENT,
        baseline: Cohort = HEALTHY,
        canary: Cohort = HEALTHY,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.deployment = deployment
        self.baseline = baseline
        self.canary = canary

    def started(
        self, at: float = 0.0, *, policy: Any = None, deployment: str | None = None
    ) -> dict[str, Any]:
        """A ``deployment_started`` event (``policy``: a name, an inline mapping or None)."""
        event: dict[str, Any] = {
            "type": "deployment_started",
            "ts": T0 + at,
            "deployment": deployment or self.deployment,
            "service": SERVICE,
            "baseline_version": BASELINE,
            "canary_version": CANARY,
        }
        if policy is not None:
            event["policy"] = policy
        return event

    def control(
        self, kind: str, at: float, *, actor: str = "alice", deployment: str | None = None
    ) -> dict[str, Any]:
        """A control event: ``kind`` is ``aborted``, ``paused``, ``resumed`` or ``approved``."""
        return {
            "type": f"deployment_{kind}",
            "ts": T0 + at,
            "deployment": deployment or self.deployment,
            "actor": actor,
        }

    def requests(
        self,
        start: float,
        end: float,
        *,
        rate: float = 40.0,
        canary_rate: float | None = None,
        baseline: Cohort | None = None,
        canary: Cohort | None = None,
        endpoints: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        """Requests of both cohorts in ``[start, end)``, ordered by event time.

        ``rate`` is requests per second per cohort; ``canary_rate`` overrides it for the
        canary (0 silences it). Cohorts default to the stream's. With ``endpoints``, each
        request names one of them, drawn uniformly.
        """
        cohorts = (
            (BASELINE, rate, baseline or self.baseline),
            (CANARY, rate if canary_rate is None else canary_rate, canary or self.canary),
        )
        span = end - start
        columns = []
        for version, per_second, cohort in cohorts:
            n = round(per_second * span)
            ts = T0 + start + np.sort(self.rng.uniform(0.0, span, n))
            errors = self.rng.random(n) < cohort.error_rate
            latency = self.rng.lognormal(np.log(cohort.median_ms), cohort.sigma, n)
            columns.append((version, ts, errors, latency))
        events = [
            {
                "type": "request",
                "ts": float(t),
                "service": SERVICE,
                "version": version,
                "latency_ms": round(float(ms), 3),
                "status": 503 if bad else 200,
            }
            for version, ts, errors, latency in columns
            for t, bad, ms in zip(ts.tolist(), errors.tolist(), latency.tolist(), strict=True)
        ]
        if endpoints:
            for event, pick in zip(
                events, self.rng.integers(0, len(endpoints), len(events)).tolist(), strict=True
            ):
                event["endpoint"] = endpoints[pick]
        events.sort(key=lambda e: e["ts"])  # stable: equal times keep baseline first
        return events

    def gauges(
        self, start: float, end: float, name: str, *, baseline: float, canary: float
    ) -> list[dict[str, Any]]:
        """One sample of gauge ``name`` per second per cohort, normal around the given means."""
        return [
            {
                "type": "metric",
                "ts": T0 + t + offset,
                "service": SERVICE,
                "version": version,
                "name": name,
                "value": round(float(self.rng.normal(mean, 0.02)), 4),
            }
            for t in range(int(start), int(end))
            for version, mean, offset in ((BASELINE, baseline, 0.25), (CANARY, canary, 0.75))
        ]

    def probes(
        self, start: float, end: float, probe: str, *, baseline_fail: float, canary_fail: float
    ) -> list[dict[str, Any]]:
        """One synthetic probe per second per cohort, failing with the given probabilities."""
        return [
            {
                "type": "probe",
                "ts": T0 + t + offset,
                "service": SERVICE,
                "version": version,
                "probe": probe,
                "ok": bool(self.rng.random() >= fail),
            }
            for t in range(int(start), int(end))
            for version, fail, offset in (
                (BASELINE, baseline_fail, 0.4),
                (CANARY, canary_fail, 0.6),
            )
        ]


def merge(*streams: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """All events of ``streams`` in event-time order (ties keep the order of the arguments)."""
    return sorted((event for stream in streams for event in stream), key=lambda e: e["ts"])


def seconds(decision: Decision) -> float:
    """A decision's event time as seconds after :data:`T0`."""
    return decision.ts - T0


def run(events: Iterable[dict[str, Any]], engine: Engine | None = None) -> list[Decision]:
    """Feed every event to ``engine`` (a fresh one by default); return all decisions."""
    engine = engine if engine is not None else Engine()
    decisions: list[Decision] = []
    for event in events:
        decisions.extend(engine.process(event))
    return decisions


def restarted(engine: Engine) -> Engine:
    """A new engine holding ``engine``'s rollouts as a restarted worker would: each service's
    state written with ``ServiceSnapshot.dumps`` and read back with ``loads``."""
    fresh = Engine(engine.policies)
    for service in sorted(engine.deployments_of):
        blob = ServiceSnapshot(service, 0, rollouts=engine.rollouts_of(service)).dumps()
        fresh.adopt(ServiceSnapshot.loads(blob).rollouts)
    return fresh
