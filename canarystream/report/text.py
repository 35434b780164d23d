"""Numbers as a person reads them in the report: durations and times, worded as in the
decisions' reasons (:mod:`canarystream.readable`); a check's values:
:func:`canarystream.summary.plain_value`."""

from __future__ import annotations

from canarystream.readable import duration
from canarystream.readable import instant as iso_time

__all__ = ["RATIO_KINDS", "duration", "iso_time"]

RATIO_KINDS = frozenset({"error_rate", "probe"})
"""Checks that compare canary over baseline as a ratio of rates (1 = the same)."""
