"""The rollout report: series captured from the engine's evidence, rendered as one HTML page."""

from canarystream.report.render import render_report
from canarystream.report.replayed import record_files
from canarystream.report.series import (
    CheckPoint,
    CheckSeries,
    RolloutSeries,
    SeriesRecorder,
    TickPoint,
)

__all__ = [
    "CheckPoint",
    "CheckSeries",
    "RolloutSeries",
    "SeriesRecorder",
    "TickPoint",
    "record_files",
    "render_report",
]
