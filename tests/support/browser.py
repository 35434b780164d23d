"""Headless Chromium (Debian's ``chromium``) for pages the product writes: the DOM after load,
what the page wrote to the console, and a screenshot.

Missing Chromium skips, except under CI (``CI=true``), where it fails
(``deploy/services/install.sh`` installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.services import require_service

__all__ = ["Loaded", "chromium", "load", "screenshot"]

_CONSOLE = re.compile(r"CONSOLE(?:\(\d+\)|:\d+)\] (.*)")
_TIMEOUT = 120  # s: a loaded shared machine starts Chromium slowly


def chromium() -> str:
    """The path of Chromium; skip without it (fail under CI)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        require_service("chromium", "deploy/services/install.sh installs Debian's chromium")
    return path


def _run(url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",  # tests run as root in containers
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--disable-extensions",
                f"--user-data-dir={profile}",
                *flags,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )


@dataclass(frozen=True)
class Loaded:
    """A page after load: its DOM, and every message it wrote to the console."""

    dom: str
    console: list[str]


def load(url: str) -> Loaded:
    """Load ``url`` headless; its DOM after load and its console messages (any level)."""
    done = _run(url, "--enable-logging=stderr", "--v=0", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    console = [m.group(1) for m in _CONSOLE.finditer(done.stderr)]
    return Loaded(done.stdout, console)


def screenshot(url: str, out: Path, *, width: int = 1200, height: int = 2400) -> Path:
    """A PNG of the top ``width`` x ``height`` pixels of ``url``."""
    done = _run(url, f"--window-size={width},{height}", f"--screenshot={out}")
    assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
    return out
