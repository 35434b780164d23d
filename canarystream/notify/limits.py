"""Bounded memories of the notifier: decision ids already handled, and each route's rate.

Both are pure: time is an argument (a monotonic clock the caller reads).

>>> window = DedupWindow(2)
>>> window.add("a"), window.add("b"), window.add("a"), window.add("c")
(True, True, False, True)
>>> "a" in window, "b" in window
(True, False)
>>> bucket = TokenBucket(per_second=1.0, burst=2)
>>> [bucket.take(0.0), bucket.take(0.0), bucket.take(0.0), bucket.take(1.0)]
[True, True, False, True]
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["DedupWindow", "TokenBucket"]


class DedupWindow:
    """The last ``size`` keys added; an old key seen again counts as recent."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, not {size}")
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> bool:
        """Remember ``key``; False if it was already remembered."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return True


class TokenBucket:
    """At most ``burst`` at once, refilled at ``per_second``."""

    def __init__(self, per_second: float, burst: int) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("the rate must be positive and the burst at least 1")
        self.per_second = per_second
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now: float) -> bool:
        """Take one token at ``now``; False (nothing taken) when the bucket is empty."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now if self._at is None else max(self._at, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
