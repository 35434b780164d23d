"""The telemetry generator: the two cohorts of one scenario, step by step.

Every draw is vectorised with numpy (Poisson arrival counts per one-second slice, uniform
arrival times, a route and an instance per request, lognormal latencies, Bernoulli errors);
the event dicts are then built in one comprehension. Events follow the public contract
(:mod:`canarystream.contracts.events`) exactly: ``ts`` is rounded down to the millisecond and
latencies to 0.01 ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np
from scipy.special import ndtri

from canarystream.contracts.events import MAX_LATENCY_MS
from canarystream.simulate.scenario import (
    ErrorsAdd,
    ErrorsMult,
    GaugeShift,
    Gradual,
    LatencyMult,
    Scenario,
    TailOnly,
)

__all__ = ["ERROR_STATUSES", "Fleet"]

ERROR_STATUSES = (500, 502, 503)
"""Statuses of failed requests; every one is >= 500, so counted as an error by default."""

_ERROR_CODES = np.array(ERROR_STATUSES)
_ERROR_STATUS_CDF = np.array([0.5, 0.7])  # 500: 50 %, 502: 20 %, 503: 30 %
_CLIENT_STATUSES = np.array([400, 404])  # answered, not failed: never counted as errors
_SLICE = 1.0  # seconds: arrival rates are piecewise constant over slices this long
_BY_TS = itemgetter("ts")
_BASELINE, _CANARY = 0, 1
_NO_SERIES = np.empty(0, dtype=np.int64)
_NO_TS = np.empty(0)


# An epoch time carries ~0.2 us of rounding error, so t0 + dt and the next step's t0 may
# differ in their last bits; snapping within 1 us keeps successive windows contiguous.
def _ceil_ms(ts: float) -> float:
    return math.ceil(ts * 1000.0 - 1e-3) / 1000.0


def _floor_ms(ts: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Times rounded down to the millisecond, kept within the window [lo, hi)."""
    last = (round(hi * 1000.0) - 1) / 1000.0
    return np.clip(np.floor(ts * 1000.0 + 1e-3) / 1000.0, lo, last)


class _Effects:
    """Per-event multipliers and additions for one cohort's events (None: no effect)."""

    __slots__ = ("err_add", "err_mult", "lat_mult")

    def __init__(self, size: int) -> None:
        self.lat_mult = np.ones(size)
        self.err_mult: np.ndarray | None = None
        self.err_add: np.ndarray | None = None

    def add_error(self, values: np.ndarray) -> None:
        self.err_add = values if self.err_add is None else self.err_add + values

    def mult_error(self, values: np.ndarray) -> None:
        self.err_mult = values if self.err_mult is None else self.err_mult * values


class Fleet:
    """Generates the telemetry of one scenario's baseline and canary instances.

    Parameters
    ----------
    scenario
        What to simulate.
    seed
        Seed of the random draws; the same seed and the same sequence of ``step`` calls give
        the same events. The scenario's ``seed_offset`` and ``stream`` are mixed in.
    stream
        Distinguishes fleets that share a seed (the closed loop gives each scenario its own).

    Examples
    --------
    >>> from canarystream.simulate.scenario import Scenario
    >>> fleet = Fleet(Scenario(deployment="d1", service="shop"), seed=7)
    >>> fleet.deployment_event()["type"]
    'deployment_started'
    >>> events = fleet.step(fleet.scenario.start_ts, 10.0, canary_share=0.5)
    >>> sorted({e["type"] for e in events})
    ['metric', 'probe', 'request']
    >>> events == Fleet(Scenario(deployment="d1", service="shop"), seed=7).step(
    ...     fleet.scenario.start_ts, 10.0, canary_share=0.5)
    True
    """

    def __init__(self, scenario: Scenario, seed: int = 0, *, stream: int = 0) -> None:
        if seed < 0 or stream < 0:
            raise ValueError("seed and stream must be non-negative")
        self.scenario = scenario
        entropy = np.random.SeedSequence(seed, spawn_key=(stream, scenario.seed_offset))
        self._rng = np.random.default_rng(entropy)
        self._versions = (scenario.baseline_version, scenario.canary_version)
        self._build_routes()
        self._build_instances()
        self._build_ticks()
        self._series = {
            "gauges": (self._g_phase, self._g_interval),
            "probes": (self._p_phase, self._p_interval),
        }
        self._quiet: dict[str, tuple[float, float]] = {}

    # -- set-up -------------------------------------------------------------------------

    def _build_routes(self) -> None:
        """Flatten endpoints x dependencies into routes with probabilities and multipliers."""
        scenario = self.scenario
        dependencies = {d.name: d for d in scenario.dependencies}
        total = sum(e.weight for e in scenario.endpoints)
        endpoints: list[str] = []
        deps: list[str | None] = []
        prob: list[float] = []
        lat: list[float] = []
        err: list[float] = []
        for endpoint in scenario.endpoints:
            names: Sequence[str | None] = endpoint.dependencies or [None]
            for name in names:
                dep = dependencies[name] if name is not None else None
                endpoints.append(endpoint.name)
                deps.append(name)
                prob.append(endpoint.weight / total / len(names))
                lat.append(endpoint.latency_mult * (dep.latency_mult if dep else 1.0))
                err.append(endpoint.error_mult * (dep.error_mult if dep else 1.0))
        self._route_endpoint = endpoints
        self._route_dependency = deps
        self._route_cdf = np.cumsum(prob)
        self._route_cdf[-1] = 1.0
        self._route_lat = np.array(lat)
        self._route_err = np.array(err)
        self._some_without_dependency = any(d is None for d in deps)
        regression = scenario.regression
        scoped = np.ones(len(endpoints), dtype=bool)
        self._scoped = False
        if regression is not None and not isinstance(regression, GaugeShift):
            if regression.endpoint is not None:
                scoped &= np.array([e == regression.endpoint for e in endpoints])
                self._scoped = True
            if regression.dependency is not None:
                scoped &= np.array([d == regression.dependency for d in deps])
                self._scoped = True
        self._route_in_scope = scoped
        self._tail_z = (
            float(ndtri(1.0 - regression.fraction))
            if isinstance(regression, TailOnly)
            else math.inf
        )

    def _build_instances(self) -> None:
        scenario = self.scenario
        n = scenario.instances
        self._instance_names = [
            f"{scenario.service}-{version}-{i}" for version in self._versions for i in range(n)
        ]
        self._instance_version = [version for version in self._versions for _ in range(n)]
        spread = scenario.instance_spread
        draws = self._rng.standard_normal(2 * n) * spread if spread > 0 else np.zeros(2 * n)
        self.instance_latency_mult = np.exp(draws)
        """Fixed latency multiplier of each instance: baseline ones first, then canary ones."""

    def _build_ticks(self) -> None:
        """Periodic series: one per (gauge, instance) and one per (probe, cohort)."""
        scenario = self.scenario
        n = scenario.instances
        gauge, instance, phase, interval = [], [], [], []
        for g, spec in enumerate(scenario.gauges):
            for i in range(2 * n):
                gauge.append(g)
                instance.append(i)
                # Spread the instances' sampling instants over the period.
                phase.append(round(spec.interval * ((i % n) + 0.5) / n, 3))
                interval.append(spec.interval)
        self._g_gauge = np.array(gauge, dtype=np.int64)
        self._g_instance = np.array(instance, dtype=np.int64)
        self._g_cohort = self._g_instance // n
        self._g_phase = np.array(phase, dtype=float)
        self._g_interval = np.array(interval, dtype=float)
        specs = scenario.gauges
        self._gauge_names = [spec.name for spec in specs]
        self._gauge_mean = np.array([spec.mean for spec in specs])
        self._gauge_noise = np.array([spec.noise for spec in specs])
        self._gauge_load = np.array([spec.load_sensitivity for spec in specs])
        self._gauge_low = np.array([-np.inf if s.low is None else s.low for s in specs])
        self._gauge_high = np.array([np.inf if s.high is None else s.high for s in specs])
        probe, cohort, p_phase, p_interval = [], [], [], []
        for j, probe_spec in enumerate(scenario.probes):
            every = probe_spec.interval
            for c in (_BASELINE, _CANARY):
                probe.append(j)
                cohort.append(c)
                p_phase.append(round(every * (j + 1) / (len(scenario.probes) + 1), 3))
                p_interval.append(every)
        self._p_probe = np.array(probe, dtype=np.int64)
        self._p_cohort = np.array(cohort, dtype=np.int64)
        self._p_phase = np.array(p_phase, dtype=float)
        self._p_interval = np.array(p_interval, dtype=float)
        self._probe_names = [spec.name for spec in scenario.probes]
        self._probe_fail = np.array([spec.failure_rate for spec in scenario.probes])

    # -- public -------------------------------------------------------------------------

    def deployment_event(self) -> dict[str, Any]:
        """The ``deployment_started`` event announcing this scenario's rollout."""
        scenario = self.scenario
        event: dict[str, Any] = {
            "type": "deployment_started",
            "ts": scenario.start_ts,
            "deployment": scenario.deployment,
            "service": scenario.service,
            "baseline_version": scenario.baseline_version,
            "canary_version": scenario.canary_version,
        }
        if scenario.policy is not None:
            event["policy"] = scenario.policy
        return event

    def rates(self, canary_share: float) -> tuple[float, float]:
        """Requests per second (at load 1) of the baseline and the canary for a share.

        Stable mode splits ``total_rps`` by the share. Paired mode gives each cohort
        ``cohort_rps`` while ``0 < share < 1``; at 0 the canary gets nothing (not started,
        rolled back) and at 1 (promoted) the canary gets ``total_rps`` and the baseline nothing.
        """
        traffic = self.scenario.traffic
        share = min(max(canary_share, 0.0), 1.0)
        if traffic.baseline_mode == "stable":
            return traffic.total_rps * (1.0 - share), traffic.total_rps * share
        if share <= 0.0:
            return traffic.cohort_rps, 0.0
        if share >= 1.0:
            return 0.0, traffic.total_rps
        return traffic.cohort_rps, traffic.cohort_rps

    def cohort_percent(self, percent: float) -> float:
        """The canary's share (%) of the cohorts' requests when the router gives it ``percent``.

        What a ``traffic_shifted`` event states: the routed share itself in stable mode; in
        paired mode each cohort gets ``cohort_rps`` while the rollout runs, so 50 %.

        >>> from canarystream.simulate.scenario import Scenario
        >>> Fleet(Scenario(deployment="d", service="s")).cohort_percent(16.5)
        16.5
        """
        percent = min(max(percent, 0.0), 100.0)
        if self.scenario.traffic.baseline_mode == "stable" or percent in (0.0, 100.0):
            return percent
        return 50.0

    def step(self, t0: float, dt: float, canary_share: float) -> list[dict[str, Any]]:
        """Telemetry events with ``t0 <= ts < t0 + dt`` (epoch s), sorted by ``ts``.

        ``canary_share`` (0..1) is the share of traffic the router gives the canary during the
        whole step. A cohort whose share is nil runs no instance: it sends no gauge or probe.
        Nothing is emitted outside ``[start_ts, start_ts + duration)``.
        """
        scenario = self.scenario
        lo = _ceil_ms(max(t0, scenario.start_ts))
        hi = _ceil_ms(min(t0 + dt, scenario.end_ts))
        if hi <= lo:
            return []
        share = min(max(canary_share, 0.0), 1.0)
        serving = (share < 1.0, share > 0.0)
        events = self._requests(lo, hi, self.rates(share))
        ticks = self._gauges(lo, hi, serving) + self._probes(lo, hi, serving)
        if ticks:
            ticks.sort(key=_BY_TS)
            events += ticks
            events.sort(key=_BY_TS)  # two sorted runs: timsort merges them in linear time
        return events

    # -- requests -----------------------------------------------------------------------

    def _requests(self, lo: float, hi: float, rates: tuple[float, float]) -> list[dict[str, Any]]:
        scenario = self.scenario
        rng = self._rng
        start = scenario.start_ts
        arrivals = self._arrivals(lo - start, hi - start, rates)
        if arrivals is None:
            return []
        cohort, rel = arrivals
        n = len(rel)
        ts = _floor_ms(start + rel, lo, hi)
        silent = scenario.canary_silent_from
        if silent is not None:
            keep = (cohort == _BASELINE) | (ts - start < silent)
            if not keep.all():
                ts, cohort = ts[keep], cohort[keep]
                n = len(ts)
                if n == 0:
                    return []
        rel = ts - start

        instance = rng.integers(0, scenario.instances, n) + cohort * scenario.instances
        route = np.searchsorted(self._route_cdf, rng.random(n), side="right")
        z = rng.standard_normal(n)
        # Every draw is made for every request, whatever fails, so that a regression changes
        # no draw: a scenario stays coupled to its healthy twin request by request.
        u = rng.random(n)  # failure, or a 4xx answer
        v = rng.random(n)  # which status

        lat_mult = self._route_lat[route] * self.instance_latency_mult[instance]
        lat_mult *= self._load_latency(rel)
        err_p = scenario.error_rate * self._route_err[route]
        incident_add = self._incidents(rel, lat_mult)
        canary = np.flatnonzero(cohort == _CANARY)
        if len(canary):
            effects = self._canary_effects(rel[canary], z[canary], route[canary])
            lat_mult[canary] *= effects.lat_mult
            if effects.err_mult is not None:
                err_p[canary] *= effects.err_mult
            if effects.err_add is not None:
                err_p[canary] += effects.err_add
        if incident_add is not None:
            err_p += incident_add
        np.clip(err_p, 0.0, 1.0, out=err_p)

        latency = np.round(
            np.minimum(
                scenario.latency.median_ms * lat_mult * np.exp(scenario.latency.sigma * z),
                MAX_LATENCY_MS,
            ),
            2,
        )
        failed = u < err_p
        client = ~failed & (u < err_p + scenario.client_error_rate * (1.0 - err_p))
        status = np.full(n, 200, dtype=np.int64)
        status[client] = _CLIENT_STATUSES[(v[client] * len(_CLIENT_STATUSES)).astype(np.int64)]
        status[failed] = _ERROR_CODES[np.searchsorted(_ERROR_STATUS_CDF, v[failed], side="right")]

        return self._request_events(ts, instance, latency, status, route)

    def _arrivals(
        self, rel_lo: float, rel_hi: float, rates: tuple[float, float]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Cohort and time from the start of each request in [rel_lo, rel_hi); None: none."""
        scenario = self.scenario
        rng = self._rng
        slices = max(1, math.ceil((rel_hi - rel_lo) / _SLICE - 1e-9))
        load = scenario.traffic.load
        if slices == 1:  # the usual one-second step: no per-slice bookkeeping
            expected = float(load.multiplier((rel_lo + rel_hi) / 2, scenario.duration))
            expected *= rel_hi - rel_lo
            n_base, n_canary = rng.poisson((expected * rates[0], expected * rates[1])).tolist()
            n = n_base + n_canary
            if n == 0:
                return None
            cohort = np.repeat(np.array([_BASELINE, _CANARY]), (n_base, n_canary))
            return cohort, rel_lo + rng.random(n) * (rel_hi - rel_lo)
        edges = np.linspace(rel_lo, rel_hi, slices + 1)
        widths = np.diff(edges)
        per_slice = load.multiplier(edges[:-1] + widths / 2, scenario.duration) * widths
        counts = rng.poisson(np.concatenate([per_slice * rates[0], per_slice * rates[1]]))
        n = int(counts.sum())
        if n == 0:
            return None
        cohort = np.repeat(
            np.array([_BASELINE, _CANARY]), [counts[:slices].sum(), counts[slices:].sum()]
        )
        rel = np.repeat(np.tile(edges[:-1], 2), counts) + rng.random(n) * np.repeat(
            np.tile(widths, 2), counts
        )
        return cohort, rel

    def _request_events(
        self,
        ts: np.ndarray,
        instance: np.ndarray,
        latency: np.ndarray,
        status: np.ndarray,
        route: np.ndarray,
    ) -> list[dict[str, Any]]:
        """One request event per element, in ``ts`` order."""
        order = np.argsort(ts, kind="stable")
        service = self.scenario.service
        versions = self._instance_version
        names = self._instance_names
        endpoints = self._route_endpoint
        deps = self._route_dependency
        events = [
            {
                "type": "request",
                "ts": t,
                "service": service,
                "version": versions[i],
                "latency_ms": lat,
                "status": s,
                "endpoint": endpoints[r],
                "dependency": deps[r],
                "instance": names[i],
            }
            for t, i, lat, s, r in zip(
                ts[order].tolist(),
                instance[order].tolist(),
                latency[order].tolist(),
                status[order].tolist(),
                route[order].tolist(),
                strict=True,
            )
        ]
        if self._some_without_dependency:
            for event in events:
                if event["dependency"] is None:
                    del event["dependency"]
        return events

    def _load_latency(self, rel: np.ndarray) -> np.ndarray | float:
        sensitivity = self.scenario.latency.load_sensitivity
        if sensitivity == 0.0:
            return 1.0
        load = self.scenario.traffic.load.multiplier(rel, self.scenario.duration)
        return np.maximum(0.1, 1.0 + sensitivity * (load - 1.0))

    def _incidents(self, rel: np.ndarray, lat_mult: np.ndarray) -> np.ndarray | None:
        """Apply global incidents' latency to ``lat_mult`` in place; return the error add."""
        added: np.ndarray | None = None
        for incident in self.scenario.incidents:
            during = (rel >= incident.start) & (rel < incident.start + incident.duration)
            if not during.any():
                continue
            if incident.latency_mult != 1.0:
                lat_mult[during] *= incident.latency_mult
            if incident.error_add:
                if added is None:
                    added = np.zeros(len(rel))
                added[during] += incident.error_add
        return added

    def _canary_effects(self, rel: np.ndarray, z: np.ndarray, route: np.ndarray | None) -> _Effects:  # noqa: C901 -- one case per kind of regression
        """The canary's own effects on events at ``rel``; ``route`` None means probes."""
        scenario = self.scenario
        effects = _Effects(len(rel))
        if scenario.canary_latency_factor != 1.0:
            effects.lat_mult *= scenario.canary_latency_factor
        regression = scenario.regression
        if regression is None or isinstance(regression, GaugeShift):
            return effects
        hit = rel >= regression.onset
        if self._scoped:
            if route is None:  # probes belong to no endpoint or dependency
                return effects
            hit &= self._route_in_scope[route]
        match regression:
            case ErrorsMult(factor=factor):
                effects.mult_error(np.where(hit, factor, 1.0))
            case ErrorsAdd(add=add):
                effects.add_error(np.where(hit, add, 0.0))
            case LatencyMult(factor=factor):
                effects.lat_mult *= np.where(hit, factor, 1.0)
            case TailOnly(factor=factor):
                effects.lat_mult *= np.where(hit & (z > self._tail_z), factor, 1.0)
            case Gradual(factor=factor, ramp=ramp, onset=onset, target=target):
                drift = np.where(hit, 1.0 + (factor - 1.0) * (rel - onset) / ramp, 1.0)
                drift = np.maximum(drift, 0.0)
                if target == "latency":
                    effects.lat_mult *= drift
                else:
                    effects.mult_error(drift)
        return effects

    # -- gauges and probes --------------------------------------------------------------

    def _ticks(
        self, kind: str, active: np.ndarray, lo: float, hi: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Series index and epoch time of every tick ``phase + k * interval`` in [lo, hi).

        Most one-second steps hold no tick: a step that lies wholly between the end of the
        previous one and the next known tick returns at once.
        """
        quiet_from, next_tick = self._quiet.get(kind, (math.inf, -math.inf))
        if quiet_from <= lo and hi <= next_tick:
            return _NO_SERIES, _NO_TS
        phase, interval = self._series[kind]
        start = self.scenario.start_ts
        # Half a millisecond of slack either side: the exact test is on the rounded times below.
        first = np.ceil((lo - start - phase - 5e-4) / interval).astype(np.int64)
        stop = np.ceil((hi - start - phase + 5e-4) / interval).astype(np.int64)
        after = np.ceil((hi - start - phase - 5e-4) / interval)
        self._quiet[kind] = (hi, round(float((start + phase + after * interval).min()), 3))
        counts = np.where(active, np.maximum(stop - first, 0), 0)
        total = int(counts.sum())
        if total == 0:
            return _NO_SERIES, _NO_TS
        series = np.repeat(np.arange(len(phase)), counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        k = first[series] + offsets
        ts = np.round(start + phase[series] + k * interval[series], 3)
        keep = (ts >= lo) & (ts < hi)
        return series[keep], ts[keep]

    def _drop_silent(
        self, series: np.ndarray, ts: np.ndarray, cohort: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        silent = self.scenario.canary_silent_from
        if silent is None or len(ts) == 0:
            return series, ts
        keep = (cohort[series] == _BASELINE) | (ts - self.scenario.start_ts < silent)
        return series[keep], ts[keep]

    def _gauges(self, lo: float, hi: float, serving: tuple[bool, bool]) -> list[dict[str, Any]]:
        if len(self._g_phase) == 0:
            return []
        active = np.array(serving)[self._g_cohort]
        series, ts = self._ticks("gauges", active, lo, hi)
        series, ts = self._drop_silent(series, ts, self._g_cohort)
        if len(ts) == 0:
            return []
        scenario = self.scenario
        rel = ts - scenario.start_ts
        gauge = self._g_gauge[series]
        load = scenario.traffic.load.multiplier(rel, scenario.duration)
        value = self._gauge_mean[gauge] * (1.0 + self._gauge_load[gauge] * (load - 1.0))
        value = value + self._gauge_noise[gauge] * self._rng.standard_normal(len(ts))
        shift = scenario.regression
        if isinstance(shift, GaugeShift):
            target = self._gauge_names.index(shift.gauge)
            hit = (gauge == target) & (self._g_cohort[series] == _CANARY) & (rel >= shift.onset)
            value = value + np.where(hit, shift.add, 0.0)
        value = np.round(np.clip(value, self._gauge_low[gauge], self._gauge_high[gauge]), 4)
        service = scenario.service
        versions = self._instance_version
        names = self._instance_names
        gauge_names = self._gauge_names
        return [
            {
                "type": "metric",
                "ts": t,
                "service": service,
                "version": versions[i],
                "name": gauge_names[g],
                "value": v,
                "instance": names[i],
            }
            for t, i, g, v in zip(
                ts.tolist(),
                self._g_instance[series].tolist(),
                gauge.tolist(),
                value.tolist(),
                strict=True,
            )
        ]

    def _probes(self, lo: float, hi: float, serving: tuple[bool, bool]) -> list[dict[str, Any]]:
        if len(self._p_phase) == 0:
            return []
        active = np.array(serving)[self._p_cohort]
        series, ts = self._ticks("probes", active, lo, hi)
        series, ts = self._drop_silent(series, ts, self._p_cohort)
        n = len(ts)
        if n == 0:
            return []
        scenario = self.scenario
        rng = self._rng
        rel = ts - scenario.start_ts
        cohort = self._p_cohort[series]
        probe = self._p_probe[series]
        z = rng.standard_normal(n)
        u = rng.random(n)
        lat_mult = np.ones(n) * self._load_latency(rel)
        fail_p = self._probe_fail[probe].astype(float)
        incident_add = self._incidents(rel, lat_mult)
        canary = np.flatnonzero(cohort == _CANARY)
        if len(canary):
            effects = self._canary_effects(rel[canary], z[canary], None)
            lat_mult[canary] *= effects.lat_mult
            if effects.err_mult is not None:
                fail_p[canary] *= effects.err_mult
            if effects.err_add is not None:
                fail_p[canary] += effects.err_add
        if incident_add is not None:
            fail_p += incident_add
        latency = np.round(
            np.minimum(
                scenario.latency.median_ms * lat_mult * np.exp(scenario.latency.sigma * z),
                MAX_LATENCY_MS,
            ),
            2,
        )
        ok = u >= np.clip(fail_p, 0.0, 1.0)
        service = scenario.service
        versions = self._versions
        probe_names = self._probe_names
        return [
            {
                "type": "probe",
                "ts": t,
                "service": service,
                "version": versions[c],
                "probe": probe_names[p],
                "ok": k,
                "latency_ms": lat,
            }
            for t, c, p, k, lat in zip(
                ts.tolist(),
                cohort.tolist(),
                probe.tolist(),
                ok.tolist(),
                latency.tolist(),
                strict=True,
            )
        ]
