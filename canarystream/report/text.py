"""Numbers as a person reads them in the report: durations and times (a check's values:
:func:`canarystream.summary.plain_value`)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["RATIO_KINDS", "duration", "iso_time"]

RATIO_KINDS = frozenset({"error_rate", "probe"})
"""Checks that compare canary over baseline as a ratio of rates (1 = the same)."""


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
