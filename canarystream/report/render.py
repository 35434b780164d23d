"""One self-contained HTML page of rollouts: a summary, charts over event time, decisions.

Everything is inline (CSS and SVG, no script, no font or image fetched): the file reads the
same offline, attached to a ticket, years later. Built from :class:`RolloutSeries` only, so
the command line's replay and the live worker render the same page from the same series.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from html import escape
from itertools import pairwise

from canarystream.contracts.decision import CheckReason
from canarystream.report.series import CheckPoint, CheckSeries, RolloutSeries
from canarystream.report.svg import (
    Frame,
    band,
    polyline,
    rect,
    thin,
    vline,
    x_axis,
    y_axis,
)
from canarystream.report.text import RATIO_KINDS, duration, iso_time
from canarystream.summary import plain_value, summarize

__all__ = ["render_report"]

CHART_WIDTH = 960.0
CHECK_HEIGHT = 230.0
TRAFFIC_HEIGHT = 210.0
MAX_DRAWN = 600  # points drawn per line; the verdict strip uses them all
_VERDICT_WORDS = {
    "pass": "no harm shown",
    "fail": "regression",
    "inconclusive": "inconclusive",
    "no_data": "no canary data",
    None: "not applicable",
}
_OUTCOME_WORDS = {
    "running": "running",
    "held": "held",
    "frozen": "frozen: a person must decide",
    "rolled_back": "rolled back",
    "promoted": "promoted",
    "aborted": "aborted",
}

_CSS = """
:root{--fg:#1d2430;--muted:#5f6b7a;--line:#d8dee6;--bg:#fff;--panel:#f6f8fa;
--pass:#2e7d32;--fail:#c62828;--inc:#8d99a6;--nodata:#cfd6de;--canary:#1f6feb;--tol:#c62828;
--bound:#e08a00}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0}h3{font-size:15px;margin:0}
.sub{color:var(--muted);margin:0 0 18px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
section.rollout{margin:32px 0;padding-top:8px;border-top:3px solid var(--line)}
.head{display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin:12px 0 6px}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:8px;
margin:10px 0 16px;padding:0}
.facts div{background:var(--panel);border-radius:6px;padding:8px 10px}
.facts dt{color:var(--muted);font-size:12px}.facts dd{margin:0;font-weight:600}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;
color:#fff;background:var(--inc);white-space:nowrap}
.b-promoted,.b-pass,.b-promote,.b-rollback_verified{background:var(--pass)}
.b-rolled_back,.b-fail,.b-rollback,.b-rollback_not_recovering,.b-page{background:var(--fail)}
.b-aborted{background:#6d4c41}.b-held,.b-hold{background:#b26a00}
.b-frozen,.b-freeze{background:#6a1b9a}.b-running,.b-advance{background:#1565c0}
.b-no_data,.b-none{background:var(--nodata);color:var(--fg)}
.chart{margin:6px 0 2px}.chart svg{width:100%;height:auto;display:block}
.check{margin:18px 0 10px}.check .head{margin:0 0 2px}
.reading{color:var(--muted);margin:2px 0 0}
.legend{color:var(--muted);font-size:12px;margin:0 0 4px}
.legend i{display:inline-block;width:18px;height:0;border-top:2px solid;vertical-align:middle;
margin:0 4px 0 10px}
.legend i.fill{height:10px;border:0;opacity:.5}
svg text{font:11px system-ui,sans-serif;fill:var(--muted)}
svg .axis{font-weight:600}
svg .grid{stroke:#edf0f3;stroke-width:1}
svg .frame{fill:none;stroke:var(--line)}
svg .stage-0{fill:#fbfcfd}svg .stage-1{fill:#f1f4f7}
svg .stage-label{fill:#8592a0;font-size:10px}
svg .est{fill:none;stroke:var(--canary);stroke-width:2}
svg circle.est{fill:var(--canary);stroke:none}
svg .ci{fill:var(--canary);opacity:.16}svg .ci-line{stroke:var(--canary);opacity:.4;stroke-width:3}
svg .tol{fill:none;stroke:var(--tol);stroke-width:1.5;stroke-dasharray:6 4}
svg .bound{fill:none;stroke:var(--bound);stroke-width:1.5;stroke-dasharray:2 3}
svg .ref{fill:none;stroke:#9aa5b1;stroke-width:1}
svg .routed{fill:none;stroke:var(--canary);stroke-width:2.5}
svg .observed{fill:none;stroke:#00897b;stroke-width:1.2;opacity:.8}
svg circle.observed{fill:#00897b}
svg .v-pass{fill:var(--pass)}svg .v-fail{fill:var(--fail)}svg .v-inconclusive{fill:var(--inc)}
svg .v-no_data,svg .v-none{fill:var(--nodata)}
svg g.mark line{stroke-width:1.5;stroke-dasharray:3 2}svg g.mark line.hit{stroke-width:9;opacity:0}
svg .d-advance line{stroke:#1565c0}svg .d-hold line{stroke:#b26a00}
svg .d-promote line{stroke:var(--pass)}svg .d-rollback line{stroke:var(--fail)}
svg .d-freeze line{stroke:#6a1b9a}svg .d-rollback_verified line{stroke:#00897b}
svg .d-rollback_not_recovering line{stroke:#7f0000}
details{margin:2px 0}summary{cursor:pointer;color:var(--muted)}
ul.reasons{margin:4px 0 6px;padding-left:18px}ul.reasons li{margin:2px 0}
.detail{color:var(--muted);font-size:12px}
.empty{color:var(--muted);font-style:italic}
footer{color:var(--muted);font-size:12px;margin-top:40px}
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _anchor(index: int, deployment: str) -> str:
    return f"r{index}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", deployment)[:60]


def _badge(key: str | None, text: str) -> str:
    return f'<span class="badge b-{_e(key or "none")}">{_e(text)}</span>'


def _outcome(series: RolloutSeries) -> str:
    last = series.last_decision
    return last.phase.value if last is not None else "running"


def _span(series: RolloutSeries) -> tuple[float, float]:
    start, end = series.first_ts, series.last_ts
    return (start, end) if end > start else (start, start + 60.0)


# --- summary ---------------------------------------------------------------------------------


def _stage_text(series: RolloutSeries) -> str:
    """The furthest stage reached and the most traffic the canary got."""
    moved = [d for d in series.decisions if d.action.value in ("advance", "promote")]
    if not moved:
        return "n/a"
    furthest = max(d.stage for d in moved)
    most = max(d.traffic_percent for d in moved)
    total = len(series.stages)
    reached = f"{furthest + 1} of {total}" if total else str(furthest)
    return f"{reached}, up to {most:g}%"


def _summary_row(index: int, series: RolloutSeries) -> str:
    """One rollout in the summary, from the fold of its decisions (as ``status`` shows it)."""
    folded = summarize(series.decisions)
    anchor = f'<a href="#{_anchor(index, series.deployment)}">{_e(series.deployment)}</a>'
    who = (
        f'<div class="detail">{_e(series.service)}: {_e(series.baseline_version)} → '
        f"{_e(series.canary_version)}</div>"
    )
    if not folded:
        return f"<tr><td>{anchor}{who}</td><td colspan=4></td><td>no decision yet</td></tr>"
    (summary,) = folded
    outcome = summary.phase.value
    ended = summary.ended_at if summary.ended_at is not None else series.last_ts
    holding = "".join(
        f'<div class="detail">{_e(check.check)} {_e(check.verdict.value)}: {_e(check.plain)}</div>'
        for check in summary.attention
        if not summary.phase.is_terminal
    )
    return (
        f"<tr><td>{anchor}{who}</td>"
        f"<td>{_badge(outcome, _OUTCOME_WORDS.get(outcome, outcome))}"
        + (f" {_badge('page', 'paged')}" if summary.paged else "")
        + "</td>"
        f'<td class="num">{_e(_stage_text(series))}</td>'
        f'<td class="num">{_e(duration(ended - summary.started_at))}</td>'
        f'<td class="num">{summary.decisions}</td>'
        f"<td>{_e(summary.last.summary)}{holding}</td></tr>"
    )


def _summary(rollouts: Sequence[RolloutSeries]) -> str:
    counts = Counter(_OUTCOME_WORDS.get(_outcome(s), _outcome(s)) for s in rollouts)
    told = ", ".join(f"{n} {word}" for word, n in sorted(counts.items()))
    plural = "s" if len(rollouts) != 1 else ""
    return (
        f'<section class="summary"><h2>Summary</h2><p class="sub">{len(rollouts)} '
        f"rollout{plural}{': ' + _e(told) if told else ''}</p>"
        "<table><thead><tr><th>rollout</th><th>outcome</th><th>stage reached</th>"
        "<th>duration</th><th>decisions</th><th>last decision</th></tr></thead><tbody>"
        + "".join(_summary_row(i, series) for i, series in enumerate(rollouts))
        + "</tbody></table></section>"
    )


# --- charts ----------------------------------------------------------------------------------


Span = tuple[float, float, int, float]  # start, end, stage, traffic %


def _stage_spans(series: RolloutSeries) -> list[Span]:
    """When each stage held, from the decisions (the routed share they set)."""
    _, end = _span(series)
    spans: list[Span] = []
    for decision in series.decisions:
        if spans and spans[-1][2:] == (decision.stage, decision.traffic_percent):
            continue
        if spans:
            spans[-1] = (spans[-1][0], decision.ts, spans[-1][2], spans[-1][3])
        spans.append((decision.ts, end, decision.stage, decision.traffic_percent))
    if not spans and series.ticks:
        first = series.ticks[0]
        spans.append((series.first_ts, end, first.stage, first.traffic_percent))
    return spans


def _backdrop(frame: Frame, series: RolloutSeries, *, labels: bool) -> str:
    parts: list[str] = []
    for k, (start, end, stage, share) in enumerate(_stage_spans(series)):
        x0, x1 = frame.x(start), frame.x(end)
        title = f"stage {stage} at {share:g}% from {iso_time(start)} for {duration(end - start)}"
        parts.append(
            rect((x0, frame.top, x1 - x0, frame.plot_bottom - frame.top), f"stage-{k % 2}", title)
        )
        if labels and x1 - x0 > 60:
            parts.append(
                f'<text class="stage-label" x="{x0 + 4:.1f}" y="{frame.top + 12:.1f}">'
                f"stage {stage} · {share:g}%</text>"
            )
    return "".join(parts)


def _marks(frame: Frame, series: RolloutSeries) -> str:
    start = series.started_at
    return "".join(
        vline(
            frame,
            d.ts,
            f"mark d-{d.action.value}",
            f"{d.action.value} at +{duration(d.ts - start)} ({iso_time(d.ts)}): {d.summary}",
        )
        for d in series.decisions
    )


def _svg(frame: Frame, ident: str, label: str, body: Iterable[str]) -> str:
    return (
        f'<div class="chart"><svg viewBox="0 0 {frame.width:g} {frame.height:g}" '
        f'role="img" aria-label="{_e(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<defs>{frame.clip(ident)}</defs>" + "".join(body) + "</svg></div>"
    )


def _traffic_chart(series: RolloutSeries, ident: str) -> str:
    start, end = _span(series)
    routed = [(decision.ts, decision.traffic_percent) for decision in series.decisions]
    if routed:
        routed.append((end, routed[-1][1]))
    observed = [
        (tick.ts, 100.0 * tick.canary_requests / (tick.canary_requests + tick.baseline_requests))
        for tick in series.ticks
        if tick.canary_requests + tick.baseline_requests
    ]
    # Early stages route a few percent: the axis spans what was seen, not always 0-100 %.
    top = max([share for _, share in routed + observed] + [4.0]) * 1.12
    top = next((v for v in (5, 10, 15, 20, 30, 40, 50, 60, 80) if v >= top), 100.0)
    frame = Frame(CHART_WIDTH, TRAFFIC_HEIGHT, start, end, 0.0, float(top))
    clip = f'clip-path="url(#{ident})"'
    body = [
        _backdrop(frame, series, labels=True),
        x_axis(frame, series.started_at),
        y_axis(frame, lambda v: f"{v:g}%", "canary share of traffic"),
        f"<g {clip}>",
        polyline(frame, thin(observed, MAX_DRAWN), "observed"),
        polyline(frame, routed, "routed", step=True),
        "</g>",
        _marks(frame, series),
        f'<rect class="frame" x="{frame.left}" y="{frame.top}" '
        f'width="{frame.plot_right - frame.left}" height="{frame.plot_bottom - frame.top}"/>',
    ]
    paired = " (paired: the compared baseline gets as many requests)" if series.paired else ""
    legend = (
        '<p class="legend"><i style="border-color:#1f6feb"></i>routed to the canary '
        f'<i style="border-color:#00897b"></i>canary share of the requests seen{paired}'
        " · dashed verticals: decisions (hover for the reason)</p>"
    )
    return _svg(frame, ident, f"traffic share of {series.deployment}", body) + legend


def _y_range(kind: str, points: Sequence[CheckPoint]) -> tuple[float, float]:
    """Values to show: the estimates and limits in full, the bounds as far as they inform."""
    core = [
        v
        for p in points
        for v in (p.estimate, p.tolerance, p.bound)
        if v is not None and math.isfinite(v)
    ]
    lows = [p.lower for p in points if p.lower is not None]
    highs = [p.upper for p in points if p.upper is not None]
    reference = 1.0 if kind in RATIO_KINDS else 0.0
    low = min([*core, *lows, reference])
    high = max([*core, reference])
    span = high - low or abs(high) or 1.0
    high = max(high, min(max(highs, default=high), high + 0.75 * span))
    pad = (high - low) * 0.06 or 0.5
    low = low - pad if low < reference else low
    return low, high + pad


def _limit_line(points: Sequence[CheckPoint], field: str) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for p in points:
        value = getattr(p, field)
        if value is not None:
            out.append((p.ts, value))
    return out


def _verdict_strip(frame: Frame, points: Sequence[CheckPoint]) -> str:
    """One band above the plot, coloured by the verdict of each evaluation until the next
    (the last one for a typical step)."""
    if not points:
        return ""
    parts = [
        f'<text class="tick" x="{frame.left - 6:.1f}" y="{frame.top - 9:.1f}" '
        'text-anchor="end" dominant-baseline="middle">verdict</text>'
    ]
    steps = sorted(b.ts - a.ts for a, b in pairwise(points))
    last_step = steps[len(steps) // 2] if steps else 0.0
    runs: list[tuple[float, float, str | None]] = []
    for index, p in enumerate(points):
        until = points[index + 1].ts if index + 1 < len(points) else p.ts + last_step
        if runs and runs[-1][2] == p.verdict:
            runs[-1] = (runs[-1][0], until, p.verdict)
        else:
            runs.append((p.ts, until, p.verdict))
    for start, until, verdict in runs:
        x0 = frame.x(start)
        box = (x0, frame.top - 14, max(frame.x(until) - x0, 1.5), 9.0)
        words = _VERDICT_WORDS.get(verdict, str(verdict))
        title = f"{words} from {iso_time(start)} for {duration(until - start)}"
        parts.append(rect(box, f"v-{verdict or 'none'}", title))
    return "".join(parts)


def _check_chart(series: RolloutSeries, check: CheckSeries, ident: str) -> str:
    start, end = _span(series)
    points = check.points
    low, high = _y_range(check.kind, points)
    frame = Frame(CHART_WIDTH, CHECK_HEIGHT, start, end, low, high, top=30.0)
    drawn = thin(points, MAX_DRAWN)
    interval = [
        (p.ts, p.lower, p.upper) for p in drawn if p.lower is not None and p.upper is not None
    ]
    estimate = [(p.ts, p.estimate) for p in drawn if p.estimate is not None]
    reference = 1.0 if check.kind in RATIO_KINDS else 0.0
    clip = f'clip-path="url(#{ident})"'
    body = [
        _backdrop(frame, series, labels=False),
        x_axis(frame, series.started_at),
        y_axis(frame, lambda v: plain_value(check.kind, v), _axis_title(check.kind)),
        _verdict_strip(frame, points),
        f"<g {clip}>",
        polyline(frame, [(start, reference), (end, reference)], "ref"),
        band(
            frame,
            [(t, lo, hi) for t, lo, hi in interval if lo is not None and hi is not None],
            "ci",
        ),
        polyline(frame, _limit_line(drawn, "bound"), "bound", step=True),
        polyline(frame, _limit_line(drawn, "tolerance"), "tol", step=True),
        polyline(frame, estimate, "est"),
        "</g>",
        _marks(frame, series),
        f'<rect class="frame" x="{frame.left}" y="{frame.top}" '
        f'width="{frame.plot_right - frame.left}" height="{frame.plot_bottom - frame.top}"/>',
    ]
    return _svg(frame, ident, f"{check.name}: canary against baseline", body)


def _axis_title(kind: str) -> str:
    if kind in RATIO_KINDS:
        return "canary ÷ baseline rate"
    if kind in ("latency", "latency_shift"):
        return "canary vs baseline latency"
    if kind.startswith("slo_"):
        return "canary rate against its budget"
    return "canary − baseline"


def _legend(check: CheckSeries) -> str:
    band_text = (
        '<i class="fill" style="background:#1f6feb"></i>confidence bounds (anytime-valid)'
        if any(p.upper is not None for p in check.points)
        else ""
    )
    return (
        '<p class="legend"><i style="border-color:#1f6feb"></i>estimate'
        f"{band_text}"
        '<i style="border-color:#c62828;border-top-style:dashed"></i>tolerance (fails beyond)'
        '<i style="border-color:#e08a00;border-top-style:dotted"></i>'
        "bound the upper limit must be under to move on</p>"
    )


def _reading(check: CheckSeries) -> str:
    """The check's last reading in words."""
    if not check.points:
        return "no evaluation recorded"
    p = check.points[-1]
    kind = check.kind
    parts = [f"estimate {plain_value(kind, p.estimate)}"]
    if p.lower is not None or p.upper is not None:
        parts[0] += f" [{plain_value(kind, p.lower)}, {plain_value(kind, p.upper)}]"
    if p.tolerance is not None:
        parts.append(f"tolerance {plain_value(kind, p.tolerance, of='tolerance')}")
    if p.bound is not None:
        bound = plain_value(kind, p.bound, of="tolerance")
        parts.append(f"to move on the upper bound must be ≤ {bound}")
    if p.e_value is not None and p.threshold is not None:
        parts.append(f"evidence of regression {p.e_value:.3g} of {p.threshold:.3g} needed to fail")
    parts.append(f"samples canary {p.canary_samples:,}, baseline {p.baseline_samples:,}")
    return "; ".join(parts)


def _checks(series: RolloutSeries, index: int) -> str:
    if not series.checks:
        return '<p class="empty">No evaluation recorded yet.</p>'
    out: list[str] = []
    for k, check in enumerate(series.checks.values()):
        last = check.points[-1].verdict if check.points else None
        out.append(
            '<div class="check"><div class="head">'
            f"<h3>{_e(check.name)}</h3>{_badge(last, _VERDICT_WORDS.get(last, str(last)))}"
            f'<span class="detail">{_e(check.kind)} · '
            f"{'critical' if check.critical else 'non-critical'}</span></div>"
            f'<p class="reading">{_e(_reading(check))}</p>'
            + _check_chart(series, check, f"{_anchor(index, series.deployment)}-c{k}")
            + _legend(check)
            + "</div>"
        )
    return "".join(out)


# --- decisions -------------------------------------------------------------------------------


def _reason_text(reason: CheckReason) -> str:
    """One reason of a decision: verdict, numbers in the check's units, then its message."""
    kind = reason.kind
    numbers: list[str] = []
    if reason.estimate is not None:
        numbers.append(f"estimate {plain_value(kind, reason.estimate)}")
    if reason.lower is not None:
        numbers.append(f"lower bound {plain_value(kind, reason.lower)}")
    if reason.upper is not None and kind == "latency":  # a ratio of exceedances, not a change
        shown = plain_value(kind, reason.upper, of="bound")
        numbers.append(f"exceedance upper bound {shown} (no harm at ×1 or less)")
    elif reason.upper is not None:
        numbers.append(f"upper bound {plain_value(kind, reason.upper)}")
    if reason.tolerance is not None:
        numbers.append(f"tolerance {plain_value(kind, reason.tolerance, of='tolerance')}")
    if reason.e_value is not None and reason.threshold is not None:
        numbers.append(f"evidence of regression {reason.e_value:.3g} of {reason.threshold:.3g}")
    if reason.canary_samples or reason.baseline_samples:
        numbers.append(f"{reason.canary_samples:,} canary / {reason.baseline_samples:,} baseline")
    said = "; ".join(numbers)
    return (
        f"<li>{_badge(reason.verdict.value, _VERDICT_WORDS.get(reason.verdict.value, ''))} "
        f"<b>{_e(reason.check)}</b>{': ' + _e(said) if said else ''}"
        + (f' <span class="detail">({_e(reason.message)})</span>' if reason.message else "")
        + "</li>"
    )


def _decisions(series: RolloutSeries) -> str:
    if not series.decisions:
        return '<p class="empty">No decision recorded.</p>'
    rows: list[str] = []
    for d in series.decisions:
        reasons = "".join(_reason_text(r) for r in d.reasons)
        details = (
            f"<details><summary>{len(d.reasons)} reasons</summary>"
            f'<ul class="reasons">{reasons}</ul></details>'
            if d.reasons
            else ""
        )
        page = f" {_badge('page', 'page')}" if d.page else ""
        rows.append(
            "<tr>"
            f'<td class="num">+{_e(duration(d.ts - series.started_at))}'
            f'<div class="detail">{_e(iso_time(d.ts))}</div></td>'
            f"<td>{_badge(d.action.value, d.action.value.replace('_', ' '))}{page}</td>"
            f'<td class="num">{d.stage} · {d.traffic_percent:g}%</td>'
            f"<td>{_e(d.summary)}{details}</td>"
            "</tr>"
        )
    return (
        "<table><thead><tr><th>when</th><th>decision</th><th>stage · traffic</th>"
        "<th>why</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


# --- the page --------------------------------------------------------------------------------


def _facts(series: RolloutSeries) -> str:
    start, end = _span(series)
    facts = [
        ("service", series.service),
        ("baseline → canary", f"{series.baseline_version} → {series.canary_version}"),
        ("policy", series.policy),
        ("started", iso_time(series.started_at)),
        ("span shown", duration(end - start)),
        ("stage reached", _stage_text(series)),
        ("stages", " → ".join(f"{s:g}%" for s in series.stages) or "n/a"),
        ("decisions", str(len(series.decisions))),
    ]
    if series.thinned:
        facts.append(("points", f"every {2**series.thinned}th tick kept"))
    return (
        '<dl class="facts">'
        + "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
        + "</dl>"
    )


def _rollout(series: RolloutSeries, index: int) -> str:
    outcome = _outcome(series)
    anchor = _anchor(index, series.deployment)
    pages = any(d.page for d in series.decisions)
    return (
        f'<section class="rollout" id="{anchor}"><div class="head">'
        f"<h2>{_e(series.deployment)}</h2>"
        f"{_badge(outcome, _OUTCOME_WORDS.get(outcome, outcome))}"
        + (f" {_badge('page', 'a person was paged')}" if pages else "")
        + "</div>"
        + _facts(series)
        + "<h3>Traffic and stages</h3>"
        + _traffic_chart(series, f"{anchor}-t")
        + "<h3 style='margin-top:22px'>Checks: canary against baseline</h3>"
        + _checks(series, index)
        + "<h3 style='margin-top:22px'>Decisions</h3>"
        + _decisions(series)
        + "</section>"
    )


def render_report(
    rollouts: Sequence[RolloutSeries],
    *,
    title: str = "Rollout report",
    note: str = "",
) -> str:
    """The HTML page of ``rollouts`` (summary first, then one section each)."""
    body = (
        "".join(_rollout(series, i) for i, series in enumerate(rollouts))
        if rollouts
        else '<p class="empty">No rollout was started by these events.</p>'
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{_e(title)}</h1>"
        + (f'<p class="sub">{_e(note)}</p>' if note else "")
        + (_summary(rollouts) if rollouts else "")
        + body
        + "<footer>Times are event time (UTC). Estimates and bounds are the ones the engine "
        "decided with, tick by tick; hover a decision line or a verdict band for its "
        "detail.</footer></main></body></html>\n"
    )
