"""The report in a real browser (headless Chromium): no console errors, charts on screen."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from canarystream.engine import Engine
from canarystream.report import record_files, render_report
from tests.support.browser import load, screenshot

ESTIMATE = (0x1F, 0x6F, 0xEB)  # the estimate line and the routed share (CSS --canary)
TOLERANCE = (0xC6, 0x28, 0x28)  # the tolerance line (CSS --tol)


@pytest.fixture(scope="module")
def report(recorded: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, recorder = record_files([recorded], Engine())
    path = tmp_path_factory.mktemp("page") / "report.html"
    path.write_text(render_report(recorder.rollouts(), title="Report"), encoding="utf-8")
    return path


def test_a_console_message_is_caught(tmp_path: Path) -> None:
    """The check below can fail: a page that errs is seen erring."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><p>x</p><script>console.error('boom'); nope();</script>")
    console = load(bad.as_uri()).console
    assert any("boom" in m for m in console)
    assert any("ReferenceError" in m for m in console)


def test_the_report_loads_without_a_console_message(report: Path) -> None:
    loaded = load(report.as_uri())
    assert loaded.console == []
    # The browser parsed the inline SVG into elements: every chart and its parts are there.
    dom = loaded.dom
    assert dom.count("<svg ") == report.read_text().count("<svg ") >= 10
    assert len(re.findall(r'<polyline class="est"', dom)) >= 8
    assert len(re.findall(r'<polygon class="ci"', dom)) >= 4


def _clusters(rows: np.ndarray, gap: int = 40) -> int:
    """Groups of rows (charts) separated by more than ``gap`` rows."""
    found = np.flatnonzero(rows)
    return 0 if found.size == 0 else 1 + int(np.count_nonzero(np.diff(found) > gap))


def _near(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 30) -> np.ndarray:
    return np.all(np.abs(pixels.astype(int) - np.array(colour)) <= tolerance, axis=-1)


def test_a_screenshot_shows_the_charts(report: Path, tmp_path: Path) -> None:
    png = screenshot(report.as_uri(), tmp_path / "report.png", width=1200, height=3600)
    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape == (3600, 1200, 3)
    blue = _near(pixels, ESTIMATE)
    red = _near(pixels, TOLERANCE)
    # Lines drawn in several charts down the page, not one stray patch.
    assert _clusters(blue.sum(axis=1) >= 20) >= 4
    assert _clusters(red.sum(axis=1) >= 20) >= 3
    assert blue.sum() > 5_000 and red.sum() > 1_500
    # The confidence band: a light tint of the estimate's colour over a wide area.
    tint = _near(pixels, (0xDC, 0xE6, 0xFA), tolerance=14)
    assert tint.sum() > 20_000
    # The page is not a blank or an error page: a fair share is ink, most is background.
    ink = np.any(pixels < 200, axis=-1).mean()
    assert 0.02 < ink < 0.5
