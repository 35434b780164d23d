"""A log-bucketed histogram for latency quantiles with bounded memory.

Bins grow geometrically (the DDSketch idea: every value in a bin is within ``accuracy`` of
the bin's centre, relative), so quantile estimates have bounded relative error whatever the
scale. Batches are added with one ``numpy.bincount``, which is what makes per-tick folding of
thousands of requests cheap; counts can be decayed so the sketch follows a moving baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from canarystream.analysis.state import Reader, State, reader
from canarystream.errors import AnalysisError

__all__ = ["LogHistogram"]


class LogHistogram:
    """Quantiles of positive values with relative accuracy ``accuracy``.

    Parameters
    ----------
    accuracy
        Relative accuracy of quantile estimates (0.01 = 1 %).
    low, high
        Range of values tracked; values outside are clamped into the edge bins.

    Examples
    --------
    >>> import numpy as np
    >>> values = np.random.default_rng(1).lognormal(4.0, 0.5, 50_000)
    >>> sketch = LogHistogram().add(values)
    >>> bool(abs(sketch.quantile(0.99) / np.quantile(values, 0.99) - 1) < 0.02)
    True
    """

    def __init__(self, accuracy: float = 0.01, low: float = 0.01, high: float = 3.6e6) -> None:
        if not 0 < accuracy < 0.5 or not 0 < low < high:
            raise AnalysisError("need 0 < accuracy < 0.5 and 0 < low < high")
        self.accuracy = accuracy
        self.low = low
        self.high = high
        self._gamma = (1 + accuracy) / (1 - accuracy)
        self._log_gamma = math.log(self._gamma)
        self._offset = math.log(low) / self._log_gamma
        size = math.ceil(math.log(high / low) / self._log_gamma) + 1
        self.counts = np.zeros(size, dtype=np.float64)
        self.total = 0.0
        self._cumulative: np.ndarray | None = None  # cached between changes

    def _index(self, values: np.ndarray) -> np.ndarray:
        clipped = np.clip(values, self.low, self.high)
        index = np.floor(np.log(clipped) / self._log_gamma - self._offset).astype(np.intp)
        bounded: np.ndarray = np.minimum(index, self.counts.size - 1)
        return bounded

    def add(self, values: Sequence[float] | np.ndarray) -> LogHistogram:
        """Add a batch of values."""
        array = np.asarray(values, dtype=np.float64)
        if array.size:
            self.counts += np.bincount(self._index(array), minlength=self.counts.size)
            self.total += array.size
            self._cumulative = None
        return self

    def decay(self, factor: float) -> LogHistogram:
        """Multiply all counts by ``factor`` (0 < factor <= 1) to forget old data gradually."""
        if factor < 1.0:
            self.counts *= factor
            self.total *= factor
            self._cumulative = None
        return self

    def quantile(self, q: float) -> float | None:
        """Estimate of the ``q`` quantile (None when empty)."""
        if self.total <= 0:
            return None
        if self._cumulative is None:
            self._cumulative = np.cumsum(self.counts)
        cumulative = self._cumulative
        if cumulative[-1] <= 0:
            return None
        # Rank against the counts' own sum rather than ``total``: after a decay by a factor
        # that is not a power of two the two differ by rounding, and q = 1 would run past the
        # last non-empty bin to the top of the range. q = 0 is the smallest value, so it is
        # the first non-empty bin (side="right"), not bin 0.
        rank = q * cumulative[-1]
        side: Literal["left", "right"] = "left" if rank > 0 else "right"
        index = int(np.searchsorted(cumulative, rank, side=side))
        index = min(index, self.counts.size - 1)
        # Centre of bin i, relative error <= accuracy for any value in it.
        return float(2.0 * self._gamma ** (index + self._offset + 1) / (self._gamma + 1.0))

    def to_state(self) -> State:
        """The sketch as plain data: its range and the span of bins that hold any count."""
        filled = np.flatnonzero(self.counts)
        first, end = (int(filled[0]), int(filled[-1]) + 1) if filled.size else (0, 0)
        return {
            "accuracy": self.accuracy,
            "low": self.low,
            "high": self.high,
            "total": self.total,
            "first": first,
            "counts": self.counts[first:end].tolist(),
        }

    @classmethod
    def from_state(cls, state: State | Reader) -> LogHistogram:
        """The sketch :meth:`to_state` described."""
        r = reader(state, "LogHistogram")
        sketch = cls(r.real("accuracy"), r.real("low"), r.real("high"))
        first, counts = r.integer("first"), r.array("counts")
        if first < 0 or first + counts.size > sketch.counts.size:
            raise r.fail("counts", f"bins {first}..{first + counts.size} outside the sketch")
        sketch.counts[first : first + counts.size] = counts
        sketch.total = r.real("total")
        return sketch
