"""Reasons read as a person reads them: no raw e-values, epoch seconds or
long decimals.

The numbers stay in the reasons' fields; the messages use :mod:`canarystream.readable`.
"""

from __future__ import annotations

import re

import pytest

from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset

T0 = 1_790_000_000.0
RAW = {
    "an e-value as e=": re.compile(r"\be="),
    "epoch seconds": re.compile(r"\bt=\d|\d{10}"),
    "more than three significant digits": re.compile(r"\d\.0*[1-9]\d{3,}"),
    "a Python None": re.compile(r"\bNone\b"),
}
ISO = re.compile(r"\b20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ\b")


class _Recording:
    """The engine, remembering every decision the closed loop got from it."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.decisions: list[Decision] = []

    def process(self, event: dict[str, object]) -> list[Decision]:
        out = self.engine.process(event)
        self.decisions.extend(out)
        return out


def _run(preset: str) -> list[Decision]:
    recording = _Recording()
    scenario = build_preset(preset, duration=1800, start_ts=T0)
    for _ in simulate([scenario], seed=3, engine=recording):
        pass
    return recording.decisions


@pytest.mark.parametrize(
    "preset", ["errors-x3", "latency-x1.25", "gauge-only", "global-incident", "silent-canary"]
)
def test_no_reason_carries_raw_numbers(preset: str) -> None:
    decisions = _run(preset)
    assert decisions
    texts = [d.summary for d in decisions] + [r.message for d in decisions for r in d.reasons]
    for what, pattern in RAW.items():
        found = [text for text in texts if pattern.search(text)]
        assert not found, f"{what} in: {found[:3]}"


def test_a_shared_degradation_names_its_times_in_iso_8601() -> None:
    drift = [
        r.message
        for d in _run("global-incident")
        for r in d.reasons
        if r.check == "baseline_drift" and r.verdict == "fail"
    ]
    assert drift, "the incident should trip the baseline drift guard"
    assert all(len(ISO.findall(message)) == 2 for message in drift), drift[:2]


def test_the_fields_keep_the_raw_numbers() -> None:
    failing = [r for d in _run("errors-x3") for r in d.reasons if r.verdict == "fail"]
    reason = next(r for r in failing if r.kind == "error_rate")
    assert reason.e_value is not None and reason.threshold is not None
    assert reason.e_value >= reason.threshold  # the raw e-value, not its wording
    assert "e-value" in reason.message and f"{reason.estimate:.2f}" in reason.message
