"""The report page: self-contained, one section per rollout, charts and readable decisions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from canarystream.contracts.decision import Action, Decision, Phase
from canarystream.engine import Engine
from canarystream.report import RolloutSeries, SeriesRecorder, record_files, render_report


@pytest.fixture(scope="module")
def recorder(recorded: Path) -> SeriesRecorder:
    return record_files([recorded], Engine())[1]


@pytest.fixture(scope="module")
def page(recorder: SeriesRecorder) -> str:
    return render_report(recorder.rollouts(), title="Rollouts of the week")


def test_the_page_needs_no_network(page: str) -> None:
    assert "<script" not in page and "<link" not in page and "@import" not in page
    addresses = set(re.findall(r"(?:https?:)?//[\w.-]+[^\s\"'<>)]*", page))
    assert addresses == {"http://www.w3.org/2000/svg"}  # a namespace name, never fetched
    assert set(re.findall(r"url\(([^)]*)\)", page)) <= {
        f"#{ident}" for ident in re.findall(r'<clipPath id="([^"]+)"', page)
    }
    assert "src=" not in page and 'href="http' not in page


def test_a_summary_then_one_section_per_rollout(page: str, recorder: SeriesRecorder) -> None:
    rollouts = recorder.rollouts()
    summary = page.index('<section class="summary">')
    sections = [m.start() for m in re.finditer(r'<section class="rollout" id="', page)]
    assert len(sections) == len(rollouts) == 2 and summary < sections[0]
    head = page[summary : sections[0]]
    assert "2 rollouts: 1 rolled back, 1 running" in head
    for series in rollouts:
        assert f">{series.deployment}</a>" in head
    assert head.count("<tr><td>") == 2


def test_each_check_has_a_chart_of_estimate_bounds_and_tolerance(
    page: str, recorder: SeriesRecorder
) -> None:
    for index, series in enumerate(recorder.rollouts()):
        start = page.index(f'<section class="rollout" id="r{index}-')
        end = page.find('<section class="rollout"', start + 1)
        section = page[start : end if end > 0 else len(page)]
        charts = section.count("<svg ")
        assert charts == 1 + len(series.checks)  # the traffic, then one per check unit
        assert section.count('class="routed"') == 1
        assert section.count('<polyline class="est"') == len(series.checks)
        assert section.count('class="tol"') == len(series.checks)
        bounded = [c for c in series.checks.values() if any(p.upper for p in c.points)]
        assert section.count('<polygon class="ci"') >= len(bounded) > 0
        # A marker per decision on each chart, each telling its reason on hover.
        assert section.count('<g class="mark d-') == charts * len(series.decisions)


def test_decisions_read_with_times_and_effect_sizes(page: str, recorder: SeriesRecorder) -> None:
    series = next(s for s in recorder.rollouts() if "errors" in s.deployment)
    rollback = next(d for d in series.decisions if d.action is Action.ROLLBACK)
    start = page.index(f'id="r0-{series.deployment}"')
    section = page[start:]
    assert "2026-09-21T" in section  # ISO 8601 event time, UTC
    after = rollback.ts - series.started_at
    assert f"+{after // 60:.0f}m " in section  # readable.duration: "+14m 35s"
    reason = next(r for r in rollback.reasons if r.check == "error_rate")
    assert reason.estimate is not None and reason.tolerance is not None
    assert f"×{reason.estimate:.3g}" in section and f"tolerance ×{reason.tolerance:.3g}" in section
    assert "critical regression: error_rate" in section
    # A latency quantile's upper bound is a ratio of exceedances, never shown as a change.
    latency = next(r for r in rollback.reasons if r.kind == "latency" and r.upper is not None)
    assert f"exceedance upper bound ×{latency.upper:.3g} (no harm at ×1 or less)" in section


def test_the_same_series_render_the_same_bytes(recorder: SeriesRecorder, page: str) -> None:
    assert render_report(recorder.rollouts(), title="Rollouts of the week") == page


def test_names_are_escaped() -> None:
    evil = "<script>alert(1)</script>"
    series = RolloutSeries(evil, evil, "v1", 'v2"><b>', "default", 1_790_000_000.0)
    series.decisions.append(
        Decision(
            decision_id="x",
            deployment=evil,
            service=evil,
            seq=0,
            action=Action.ADVANCE,
            ts=1_790_000_000.0,
            stage=0,
            traffic_percent=1.0,
            phase=Phase.RUNNING,
            baseline_version="v1",
            canary_version='v2"><b>',
            policy="default",
            summary=evil,
        )
    )
    html = render_report([series], title=evil)
    assert "<script" not in html and '"><b>' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_rollout_without_evaluations_still_renders() -> None:
    html = render_report([RolloutSeries("d", "s", "v1", "v2", "default", 1_790_000_000.0)])
    assert "No evaluation recorded yet." in html and "No decision recorded." in html
    assert "No rollout was started" in render_report([])
