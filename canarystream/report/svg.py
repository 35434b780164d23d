"""Inline SVG charts over event time, written as text: no script, no library, no network.

A :class:`Frame` maps event time and a value range onto a plot area; the helpers return SVG
fragments (strings) that :mod:`canarystream.report.render` assembles. Every coordinate is
rounded to a tenth of a pixel, so the same series always give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import TypeVar

__all__ = [
    "Frame",
    "band",
    "nice_ticks",
    "polyline",
    "rect",
    "thin",
    "time_ticks",
    "vline",
    "x_axis",
    "y_axis",
]

_TIME_STEPS = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10_800,
    21_600,
    43_200,
    86_400,
    172_800,
    604_800,
)


def _n(value: float) -> str:
    """A coordinate: a tenth of a pixel, no trailing zeros."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True, slots=True)
class Frame:
    """A plot area of ``width`` x ``height`` pixels showing ``[x0, x1]`` x ``[y0, y1]``."""

    width: float
    height: float
    x0: float
    x1: float
    y0: float
    y1: float
    left: float = 70.0
    right: float = 20.0
    top: float = 22.0
    bottom: float = 30.0

    def x(self, t: float) -> float:
        """Pixel column of event time ``t``."""
        span = self.x1 - self.x0 or 1.0
        return self.left + (t - self.x0) / span * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        """Pixel row of value ``v`` (kept within a plot height of the area: clipped beyond)."""
        span = self.y1 - self.y0 or 1.0
        inner = self.height - self.top - self.bottom
        row = self.top + (1.0 - (v - self.y0) / span) * inner
        return min(max(row, self.top - inner), self.height - self.bottom + inner)

    @property
    def plot_bottom(self) -> float:
        """Pixel row of the plot's bottom edge."""
        return self.height - self.bottom

    @property
    def plot_right(self) -> float:
        """Pixel column of the plot's right edge."""
        return self.width - self.right

    def clip(self, ident: str) -> str:
        """A clip path named ``ident`` around the plot area."""
        return (
            f'<clipPath id="{ident}"><rect x="{_n(self.left)}" y="{_n(self.top)}" '
            f'width="{_n(self.plot_right - self.left)}" '
            f'height="{_n(self.plot_bottom - self.top)}"/></clipPath>'
        )


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values spanning ``[low, high]``.

    >>> nice_ticks(0, 1.5)
    [0.0, 0.5, 1.0, 1.5]
    >>> nice_ticks(-0.02, 0.13)
    [0.0, 0.05, 0.1]
    """
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    out: list[float] = []
    k = first
    while k * step <= high + step * 1e-9:
        out.append(round(k * step, 12) + 0.0)
        k += 1
    return out


def time_ticks(start: float, end: float, count: int = 8) -> list[float]:
    """Offsets from ``start`` (s) on a round step, at most about ``count`` of them.

    >>> time_ticks(0, 600)
    [0, 120, 240, 360, 480, 600]
    """
    span = max(end - start, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= count), _TIME_STEPS[-1])
    return list(range(0, int(span) + 1, step))


def short_offset(seconds: float) -> str:
    """A compact offset label: ``0``, ``45s``, ``5m``, ``1h30m``, ``2d``.

    >>> [short_offset(s) for s in (0, 45, 300, 5400, 172800)]
    ['0', '45s', '5m', '1h30m', '2d']
    """
    s = round(seconds)
    if s == 0:
        return "0"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m}m" + (f"{r}s" if r else "")
    if s < 86_400:
        h, r = divmod(s, 3600)
        return f"{h}h" + (f"{r // 60}m" if r // 60 else "")
    d, r = divmod(s, 86_400)
    return f"{d}d" + (f"{r // 3600}h" if r // 3600 else "")


def x_axis(frame: Frame, start: float) -> str:
    """Grid lines and labels of event time since ``start``, and the axis title."""
    parts: list[str] = []
    for offset in time_ticks(frame.x0 - start if frame.x0 > start else 0.0, frame.x1 - start):
        t = start + offset
        if t < frame.x0 - 1e-9 or t > frame.x1 + 1e-9:
            continue
        x = _n(frame.x(t))
        parts.append(
            f'<line class="grid" x1="{x}" y1="{_n(frame.top)}" x2="{x}" '
            f'y2="{_n(frame.plot_bottom)}"/>'
            f'<text class="tick" x="{x}" y="{_n(frame.plot_bottom + 14)}" '
            f'text-anchor="middle">{short_offset(offset)}</text>'
        )
    parts.append(
        f'<text class="axis" x="{_n(frame.plot_right)}" y="{_n(frame.height - 2)}" '
        'text-anchor="end">event time since start</text>'
    )
    return "".join(parts)


def y_axis(frame: Frame, label: Callable[[float], str], title: str) -> str:
    """Grid lines and labels of the value axis, and its title."""
    parts: list[str] = []
    for value in nice_ticks(frame.y0, frame.y1):
        y = _n(frame.y(value))
        parts.append(
            f'<line class="grid" x1="{_n(frame.left)}" y1="{y}" x2="{_n(frame.plot_right)}" '
            f'y2="{y}"/><text class="tick" x="{_n(frame.left - 6)}" y="{y}" '
            f'text-anchor="end" dominant-baseline="middle">{escape(label(value))}</text>'
        )
    parts.append(f'<text class="axis" x="{_n(frame.left)}" y="12">{escape(title)}</text>')
    return "".join(parts)


Point = tuple[float, float]
_T = TypeVar("_T")


def polyline(frame: Frame, points: Iterable[Point], cls: str, *, step: bool = False) -> str:
    """A line through ``(t, v)`` points (a staircase with ``step``); empty without points."""
    coords: list[str] = []
    previous: float | None = None
    for t, v in points:
        x, y = frame.x(t), frame.y(v)
        if step and previous is not None:
            coords.append(f"{_n(x)},{_n(previous)}")
        coords.append(f"{_n(x)},{_n(y)}")
        previous = y
    if not coords:
        return ""
    if len(coords) == 1:  # one point: a dot rather than an invisible line
        cx, cy = coords[0].split(",")
        return f'<circle class="{cls}" cx="{cx}" cy="{cy}" r="2.5"/>'
    return f'<polyline class="{cls}" points="{" ".join(coords)}"/>'


def band(frame: Frame, points: Sequence[tuple[float, float, float]], cls: str) -> str:
    """A filled area between ``low`` and ``high`` of ``(t, low, high)`` points."""
    if not points:
        return ""
    top = [f"{_n(frame.x(t))},{_n(frame.y(high))}" for t, _, high in points]
    bottom = [f"{_n(frame.x(t))},{_n(frame.y(low))}" for t, low, _ in reversed(points)]
    if len(points) == 1:
        t, low, high = points[0]
        x = frame.x(t)
        return (
            f'<line class="{cls}-line" x1="{_n(x)}" y1="{_n(frame.y(low))}" x2="{_n(x)}" '
            f'y2="{_n(frame.y(high))}"/>'
        )
    return f'<polygon class="{cls}" points="{" ".join(top + bottom)}"/>'


def rect(box: tuple[float, float, float, float], cls: str, title: str | None = None) -> str:
    """A rectangle ``(x, y, width, height)``, with a tooltip when ``title`` is given."""
    x, y, width, height = box
    body = f"<title>{escape(title)}</title>" if title else ""
    return (
        f'<rect class="{cls}" x="{_n(x)}" y="{_n(y)}" width="{_n(max(width, 0.0))}" '
        f'height="{_n(max(height, 0.0))}">{body}</rect>'
    )


def vline(frame: Frame, t: float, cls: str, title: str) -> str:
    """A vertical marker at event time ``t`` across the plot, with a tooltip."""
    x = _n(frame.x(t))
    return (
        f'<g class="{cls}"><title>{escape(title)}</title><line x1="{x}" y1="{_n(frame.top)}" '
        f'x2="{x}" y2="{_n(frame.plot_bottom)}"/><line class="hit" x1="{x}" '
        f'y1="{_n(frame.top)}" x2="{x}" y2="{_n(frame.plot_bottom)}"/></g>'
    )


def thin(items: Sequence[_T], most: int) -> list[_T]:
    """At most about ``most`` of ``items`` at an even stride, the last one always kept.

    >>> thin(list(range(10)), 4)
    [0, 3, 6, 9]
    """
    if len(items) <= most:
        return list(items)
    stride = math.ceil(len(items) / most)
    out = list(items[::stride])
    if out[-1] is not items[-1]:
        out.append(items[-1])
    return out
