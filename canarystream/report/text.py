"""Numbers as a person reads them in the report: durations, times, effect sizes."""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["RATIO_KINDS", "RELATIVE_KINDS", "SHARE_KINDS", "duration", "effect", "iso_time"]

RATIO_KINDS = frozenset({"error_rate", "probe"})
"""Checks that compare canary over baseline as a ratio of rates (1 = the same)."""
RELATIVE_KINDS = frozenset({"latency", "latency_shift"})
"""Checks that compare a relative change (0.05 = 5 % slower)."""
SHARE_KINDS = frozenset({"slo_error_rate", "slo_latency"})
"""Checks that compare the canary's own rate with an absolute budget."""


def duration(seconds: float) -> str:
    """A duration in the two largest units that matter.

    >>> duration(42), duration(270), duration(7500), duration(200_000)
    ('42 s', '4 min 30 s', '2 h 05 min', '2 d 7 h')
    """
    if not math.isfinite(seconds):
        return "n/a"
    sign = "-" if seconds < 0 else ""
    s = round(abs(seconds))
    if s < 60:
        return f"{sign}{s} s"
    if s < 3600:
        minutes, rest = divmod(s, 60)
        return f"{sign}{minutes} min" + (f" {rest} s" if rest else "")
    if s < 86_400:
        hours, rest = divmod(s, 3600)
        return f"{sign}{hours} h {rest // 60:02d} min"
    days, rest = divmod(s, 86_400)
    return f"{sign}{days} d {rest // 3600} h"


def iso_time(ts: float) -> str:
    """Event time (epoch seconds) as ISO 8601 in UTC, to the second.

    >>> iso_time(1790000605.4)
    '2026-09-21T14:23:25Z'
    """
    if not math.isfinite(ts):
        return "n/a"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def effect(kind: str, value: float | None) -> str:
    """A check's value (estimate, bound or tolerance) in the terms of its kind.

    >>> effect("error_rate", 1.234), effect("latency", 0.041), effect("slo_error_rate", 0.0012)
    ('×1.23', '+4.1%', '0.12%')
    >>> effect("gauge", 12.5), effect("gauge", -0.0007252), effect("latency", None)
    ('+12.5', '-0.000725', 'n/a')
    """
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if kind in RATIO_KINDS:
        return f"×{value:.3g}" if value < 100 else f"×{value:.0f}"
    if kind in RELATIVE_KINDS:
        return f"{value:+.1%}"
    if kind in SHARE_KINDS:
        return f"{value:.2%}" if value >= 0.0001 else f"{value:.2g}"
    return f"{value:+.3g}"
