"""Paired cohorts a minute at a time, vectorised: the simulator's API for the benchmarks.

:class:`~canarystream.simulate.fleet.Fleet` follows a :class:`Scenario` (routes, status mixes,
effect windows, closed-loop shares); this generator draws a fixed 50/50 pair of cohorts per
:class:`Cell` of a benchmark matrix, with the aggregates that peer judges read, as fast as
numpy allows. Its draws are fixed by seed (the detection benchmark's figures depend on them).

Each cohort receives ``rate`` requests per second (times the shared load shape); a request
lands on one of a few instances, its latency is lognormal (median 80 ms, sigma 0.5) times
the instance's factor, and it fails with probability 1 % (times any multiplier). Every cohort
instance also reports a ``cpu_utilization`` gauge every 10 s. Time is generated one
``CHUNK`` at a time so a rollout that ends early costs little; each chunk also yields the
per-minute aggregates that the peer judges read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from canarystream.contracts.events import MAX_LATENCY_MS

__all__ = ["CHUNK", "T0", "Cell", "ChunkStats", "PairedRollout"]

T0 = 1_790_000_000.0  # event-time origin of every generated rollout
CHUNK = 60  # seconds generated at a time (one peer measurement interval)
MEDIAN_MS = 80.0
SIGMA = 0.5
BASE_ERROR = 0.01
INSTANCES = 3
GAUGE_EVERY = 10
TAIL_Z = 1.6448536269514722  # the slowest 5 % of a lognormal lie above this z-score


@dataclass(frozen=True)
class Cell:
    """One scenario of the matrix: load shape, shared incidents and the canary's effect."""

    name: str
    rate: float = 20.0
    load: str = "flat"  # flat | ramp | diurnal
    incident: bool = False
    error_mult: float = 1.0
    latency_mult: float = 1.0
    tail_mult: float = 1.0
    slow_instance: float = 1.0  # factor on one canary instance
    onset: float = 0.0  # seconds after the start when the canary's effects begin
    latency_drift: float = 0.0  # canary latency grows by this fraction per 10 min from onset
    null: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChunkStats:
    """Per-minute aggregates of one chunk for the peer judges (index 0 baseline, 1 canary)."""

    requests: np.ndarray  # (2,)
    errors: np.ndarray  # (2,)
    p99: np.ndarray  # (2,), NaN if no requests
    inst_error_rate: list[np.ndarray]  # per cohort, per instance (NaN-free: empty skipped)
    inst_mean_latency: list[np.ndarray]


class PairedRollout:
    """The telemetry of one rollout of ``cell`` drawn with ``seed``."""

    def __init__(self, cell: Cell, seed: int, service: str = "svc") -> None:
        self.cell = cell
        self.rng = np.random.default_rng(seed)
        self.service = service
        self.versions = ("v1", "v2")
        self.instances = [[f"{v}-{i}" for i in range(INSTANCES)] for v in self.versions]
        factors = self.rng.uniform(0.97, 1.03, size=(2, INSTANCES))
        factors[1, 0] *= cell.slow_instance
        self.instance_factor = factors
        self.diurnal_phase = self.rng.uniform(0, 2 * math.pi)
        self.incident_at = float(self.rng.uniform(120, 1440)) if cell.incident else math.inf

    def deployment_event(self) -> dict[str, Any]:
        """The ``deployment_started`` event that opens the rollout."""
        return {
            "type": "deployment_started",
            "ts": T0,
            "deployment": f"{self.service}-rollout",
            "service": self.service,
            "baseline_version": self.versions[0],
            "canary_version": self.versions[1],
            "policy": {"baseline_mode": "paired"},
        }

    def _load(self, t: np.ndarray) -> np.ndarray:
        load: np.ndarray
        if self.cell.load == "ramp":  # x3 over the 30-minute rollout, then flat
            load = 1.0 + 2.0 * np.minimum(t, 1800.0) / 1800.0
        elif self.cell.load == "diurnal":  # a day's swing compressed into two hours
            load = 1.0 + 0.5 * np.sin(2 * math.pi * t / 7200.0 + self.diurnal_phase)
        else:
            load = np.ones_like(t)
        return load

    def chunk(self, start: float, build: bool) -> tuple[list[dict[str, Any]], ChunkStats]:
        """Events (sorted by ts, if ``build``) and peer aggregates for ``[start, start+CHUNK)``."""
        rng, cell = self.rng, self.cell
        secs = start + np.arange(CHUNK, dtype=float)
        load = self._load(secs + 0.5)
        in_incident = (secs >= self.incident_at) & (secs < self.incident_at + 180.0)
        ts_parts, lat_parts, err_parts, coh_parts, inst_parts = [], [], [], [], []
        requests, errors, p99 = np.zeros(2), np.zeros(2), np.full(2, np.nan)
        inst_err: list[np.ndarray] = []
        inst_lat: list[np.ndarray] = []
        for cohort in (0, 1):
            counts = rng.poisson(cell.rate * load)
            n = int(counts.sum())
            sec_of = np.repeat(np.arange(CHUNK), counts)
            offs = np.sort(rng.random(n)) * 0.999  # sorted within a second after the repeat
            ts = secs[sec_of] + offs
            inst = rng.integers(0, INSTANCES, n)
            z = rng.standard_normal(n)
            # Latency grows mildly with load (shared by both cohorts).
            lat = MEDIAN_MS * np.exp(SIGMA * z) * self.instance_factor[cohort, inst]
            lat *= 1.0 + 0.1 * (load[sec_of] - 1.0)
            p_err = np.full(n, BASE_ERROR)
            shared = in_incident[sec_of]
            if shared.any():
                lat[shared] *= 1.5
                p_err[shared] *= 5.0
            if cohort == 1:
                self._canary_effects(secs[sec_of], z, lat, p_err)
            err = rng.random(n) < p_err
            requests[cohort], errors[cohort] = n, err.sum()
            if n:
                p99[cohort] = np.quantile(lat, 0.99)
            per_n = np.bincount(inst, minlength=INSTANCES)
            ok = per_n > 0
            inst_err.append(
                (np.bincount(inst, weights=err, minlength=INSTANCES) / per_n.clip(1))[ok]
            )
            inst_lat.append(
                (np.bincount(inst, weights=lat, minlength=INSTANCES) / per_n.clip(1))[ok]
            )
            if build:
                ts_parts.append(ts)
                lat_parts.append(lat)
                err_parts.append(err)
                coh_parts.append(np.full(n, cohort, dtype=np.int8))
                inst_parts.append(inst)
        stats = ChunkStats(requests, errors, p99, inst_err, inst_lat)
        if not build:
            return [], stats
        parts = (ts_parts, lat_parts, err_parts, coh_parts, inst_parts)
        return self._events(start, load, parts), stats

    def _canary_effects(
        self, t: np.ndarray, z: np.ndarray, lat: np.ndarray, p_err: np.ndarray
    ) -> None:
        """Apply the cell's effects in place to canary requests at ``t`` s from the start."""
        cell = self.cell
        if cell.onset <= 0.0 and cell.latency_drift == 0.0:  # from the start: one product
            lat *= cell.latency_mult
            if cell.tail_mult != 1.0:
                lat[z > TAIL_Z] *= cell.tail_mult
            p_err *= cell.error_mult
            return
        on = t >= cell.onset
        since = np.maximum(t - cell.onset, 0.0)
        lat *= np.where(on, cell.latency_mult * (1.0 + cell.latency_drift * since / 600.0), 1.0)
        if cell.tail_mult != 1.0:
            lat[on & (z > TAIL_Z)] *= cell.tail_mult
        p_err[on] *= cell.error_mult

    def _events(
        self,
        start: float,
        load: np.ndarray,
        parts: tuple[list[np.ndarray], ...],
    ) -> list[dict[str, Any]]:
        """The chunk's events; ``parts``: times, latencies, errors, cohorts, instances."""
        ts_parts, lat_parts, err_parts, coh_parts, inst_parts = parts
        ts = np.floor((T0 + np.concatenate(ts_parts)) * 1000.0) / 1000.0
        lat = np.round(np.minimum(np.concatenate(lat_parts), MAX_LATENCY_MS), 2)
        status = np.where(np.concatenate(err_parts), 500, 200)
        cohort = np.concatenate(coh_parts)
        inst = np.concatenate(inst_parts)
        order = np.argsort(ts, kind="stable")
        service, versions, names = self.service, self.versions, self.instances
        events: list[dict[str, Any]] = [
            {
                "type": "request",
                "ts": t,
                "service": service,
                "version": versions[c],
                "instance": names[c][i],
                "latency_ms": la,
                "status": s,
            }
            for t, c, i, la, s in zip(
                ts[order].tolist(),
                cohort[order].tolist(),
                inst[order].tolist(),
                lat[order].tolist(),
                status[order].tolist(),
                strict=True,
            )
        ]
        gauges: list[dict[str, Any]] = []
        for offset in range(0, CHUNK, GAUGE_EVERY):
            base = 0.4 * float(load[offset])
            noise = self.rng.normal(0.0, 0.03, size=(2, INSTANCES))
            for c in (0, 1):
                for i in range(INSTANCES):
                    gauges.append(
                        {
                            "type": "metric",
                            "ts": T0 + start + offset + 0.001 * (3 * c + i + 1),
                            "service": service,
                            "version": versions[c],
                            "instance": names[c][i],
                            "name": "cpu_utilization",
                            "value": round(min(max(base + float(noise[c, i]), 0.0), 1.0), 4),
                        }
                    )
        if gauges:
            events.extend(gauges)
            events.sort(key=_ts)
        return events


def _ts(event: dict[str, Any]) -> float:
    ts: float = event["ts"]
    return ts
