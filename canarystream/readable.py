"""Numbers as a person reads them in a decision's reasons: durations, times, shares, effects.

Every reason message is built with these helpers, so the same quantity reads the same way
everywhere (``1m 30s``, ``2026-09-21T14:23:25Z``, ``2.67%``, ``×6.50``, ``+8.3%``) while
the decision's fields keep the raw numbers. They are pure functions of their arguments (no
clock, no locale), so a replay writes the same words as the live worker.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["change", "duration", "evidence_text", "instant", "number", "percent", "times"]

_NA = "n/a"


def number(value: float | None) -> str:
    """A plain number: three significant digits, ``n/a`` or ``inf``.

    >>> number(0.004152), number(18.1749), number(201.4), number(None), number(math.inf)
    ('0.00415', '18.2', '201', 'n/a', 'inf')
    """
    if value is None or math.isnan(value):
        return _NA
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}"


def duration(seconds: float | None) -> str:
    """A span of time at a glance, to the second (tenths under ten seconds).

    >>> duration(30), duration(2.5), duration(90), duration(754), duration(7500)
    ('30s', '2.5s', '1m 30s', '12m 34s', '2h 05m')
    >>> duration(200_000), duration(None), duration(-3)
    ('2d 07h', 'n/a', '0s')
    """
    if seconds is None or not math.isfinite(seconds):
        return _NA
    seconds = max(seconds, 0.0)
    if seconds < 10 and round(seconds, 1) != round(seconds):
        return f"{seconds:.1f}s"
    total = round(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def instant(ts: float | None) -> str:
    """An event time (seconds since the epoch) as ISO 8601 in UTC, to the second.

    >>> instant(1790000605.4), instant(None)
    ('2026-09-21T14:23:25Z', 'n/a')
    """
    if ts is None or not math.isfinite(ts):
        return _NA
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # beyond the calendar: say the number
        return f"t={ts:.0f}"


def percent(share: float | None) -> str:
    """A share in 0..1 as a percentage with three significant digits.

    >>> percent(0.02672), percent(0.004152), percent(0.5), percent(1.0), percent(3.2e-06)
    ('2.67%', '0.415%', '50%', '100%', '0.00032%')
    >>> percent(None), percent(0.0)
    ('n/a', '0%')
    """
    if share is None or not math.isfinite(share):
        return _NA
    return f"{share * 100:.3g}%"


def times(ratio: float | None) -> str:
    """A ratio of canary to baseline as a multiple: three significant digits.

    >>> times(6.5), times(1.105), times(18.17), times(0.9849), times(math.inf), times(0.0)
    ('×6.50', '×1.10', '×18.2', '×0.985', '×inf', '×0')
    """
    if ratio is None or math.isnan(ratio):
        return _NA
    if math.isinf(ratio):
        return "×inf"
    if ratio == 0:
        return "×0"
    return f"×{ratio:#.3g}".rstrip(".")


def change(ratio: float | None) -> str:
    """A ratio of canary to baseline as a signed relative change.

    >>> change(1.083), change(0.961), change(1.0), change(None)
    ('+8.3%', '-3.9%', '+0.0%', 'n/a')
    """
    if ratio is None or not math.isfinite(ratio):
        return _NA
    return f"{ratio - 1.0:+.1%}"


def evidence_text(e_value: float | None, threshold: float) -> str:
    """A sequential test's e-value against the one that fails the check.

    The e-value measures the evidence of harm gathered so far: the check fails once it
    reaches ``threshold`` (1 / alpha). Values far below 1 only say "no evidence".

    >>> evidence_text(122.3, 120), evidence_text(0.3163, 120), evidence_text(1.947e-18, 120)
    ('e-value 122 (fails at 120)', 'e-value 0.316 (fails at 120)', 'e-value <0.01 (fails at 120)')
    >>> evidence_text(3103.2, 1280), evidence_text(3.4e9, 120)
    ('e-value 3,103 (fails at 1,280)', 'e-value 3.4e+09 (fails at 120)')
    >>> evidence_text(None, 20)
    'e-value n/a (fails at 20)'
    """
    if e_value is None or math.isnan(e_value):
        shown = _NA
    elif e_value < 0.01:
        shown = "<0.01"
    else:
        shown = _amount(e_value)
    return f"e-value {shown} (fails at {_amount(threshold)})"


def _amount(value: float) -> str:
    """A positive amount: three significant digits, whole with separators from 1,000."""
    if math.isinf(value):
        return "inf"
    if value >= 1e6:
        return f"{value:.2g}"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"
