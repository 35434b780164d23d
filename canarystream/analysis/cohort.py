"""Per-tick accumulation of one cohort's telemetry (the hot path's only work).

Telemetry is appended to plain lists and dicts as it arrives; all arithmetic happens once per
tick, vectorised, when the engine folds the bucket into the checks. Memory is bounded by the
traffic of one tick, never by the length of the rollout.
"""

from __future__ import annotations

import numpy as np

from canarystream.analysis.state import Reader, State, reader

__all__ = ["CohortBucket", "Slice", "count_in"]


class Slice:
    """Requests of one cohort within one tick: latencies and a status histogram."""

    __slots__ = ("_array", "latencies", "statuses")

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self._array: np.ndarray | None = None

    @property
    def requests(self) -> int:
        """Number of requests."""
        return len(self.latencies)

    def add(self, latency_ms: float, status: int) -> None:
        """Record one request."""
        self.latencies.append(latency_ms)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def latency_array(self) -> np.ndarray:
        """Latencies as a numpy array (converted once per tick)."""
        if self._array is None:
            self._array = np.asarray(self.latencies, dtype=np.float64)
        return self._array

    def to_state(self) -> State:
        """The slice as plain data (the array is a cache, rebuilt on use)."""
        return {
            "latencies": list(self.latencies),
            "statuses": [[status, n] for status, n in self.statuses.items()],
        }

    @classmethod
    def from_state(cls, state: State | Reader) -> Slice:
        """The slice :meth:`to_state` described."""
        r = reader(state, "Slice")
        found = cls()
        found.latencies = r.reals("latencies")
        found.statuses = r.counts("statuses")
        return found


def count_in(statuses: dict[int, int], ranges: tuple[tuple[int, int], ...]) -> int:
    """How many requests have a status within any of the inclusive ``ranges``.

    >>> count_in({200: 7, 503: 2, 429: 1}, ((500, 599),))
    2
    """
    return sum(n for status, n in statuses.items() if any(lo <= status <= hi for lo, hi in ranges))


class CohortBucket:
    """All telemetry of one cohort (canary or baseline) within one tick."""

    __slots__ = ("events", "metrics", "probes", "requests", "slices")

    def __init__(self) -> None:
        self.requests = Slice()
        self.slices: dict[tuple[str, str], Slice] = {}  # (field, value) breakdowns
        self.metrics: dict[str, list[float]] = {}  # name -> [sum, count]
        self.probes: dict[str, list[int]] = {}  # probe -> [ok, failed]
        self.events = 0  # metric and probe events (requests are counted by their slice)

    def slice_for(self, field: str, value: str) -> Slice:
        """The breakdown slice for ``field == value``, created on first use."""
        key = (field, value)
        found = self.slices.get(key)
        if found is None:
            found = self.slices[key] = Slice()
        return found

    def add_metric(self, name: str, value: float) -> None:
        """Record one gauge sample."""
        acc = self.metrics.get(name)
        if acc is None:
            self.metrics[name] = [value, 1.0]
        else:
            acc[0] += value
            acc[1] += 1.0

    def add_probe(self, probe: str, ok: bool) -> None:
        """Record one probe result."""
        acc = self.probes.get(probe)
        if acc is None:
            acc = self.probes[probe] = [0, 0]
        acc[0 if ok else 1] += 1

    def to_state(self) -> State:
        """The bucket as plain data."""
        return {
            "requests": self.requests.to_state(),
            "slices": [
                {"key": list(key), "slice": found.to_state()} for key, found in self.slices.items()
            ],
            "metrics": {name: list(acc) for name, acc in self.metrics.items()},
            "probes": {name: list(acc) for name, acc in self.probes.items()},
            "events": self.events,
        }

    @classmethod
    def from_state(cls, state: State | Reader) -> CohortBucket:
        """The bucket :meth:`to_state` described."""
        r = reader(state, "CohortBucket")
        bucket = cls()
        bucket.requests = Slice.from_state(r.child("requests"))
        for item in r.children("slices"):
            key = item.key("key")
            if not isinstance(key, tuple) or len(key) != 2:
                raise item.fail("key", "expected [field, value]")
            bucket.slices[key] = Slice.from_state(item.child("slice"))
        metrics, probes = r.child("metrics"), r.child("probes")
        bucket.metrics = {name: metrics.reals(name, 2) for name in metrics.fields()}
        bucket.probes = {name: probes.integers(name, 2) for name in probes.fields()}
        bucket.events = r.integer("events")
        return bucket
