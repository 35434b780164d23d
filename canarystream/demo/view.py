"""The live terminal view of the demo: one panel per rollout, refreshed a few times a second.

:class:`LiveView` is the demo's picture of the world — what the worker's status endpoint says
(phase, stage, traffic, event time), the decisions read from the decisions topic, and what the
fleet has sent — and renders itself with rich (``Live(view)``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, ConsoleOptions, Group, JustifyMethod, RenderResult
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from canarystream.contracts.decision import Decision, Phase, Verdict
from canarystream.demo.timeline import ACTION_STYLE
from canarystream.policy.model import Policy
from canarystream.simulate.scenario import Scenario

__all__ = ["LiveView", "RolloutState", "clock_text"]

_PHASE_STYLE = {
    "announced": "dim",
    "running": "cyan",
    "held": "yellow",
    "rolled_back": "bold white on red",
    "promoted": "bold white on green",
    "aborted": "bold white on red",
}
_VERDICT_STYLE = {
    Verdict.PASS: "green",
    Verdict.FAIL: "bold red",
    Verdict.INCONCLUSIVE: "yellow",
    Verdict.NO_DATA: "dim",
}
RECENT = 4  # decisions listed per rollout


def clock_text(seconds: float) -> str:
    """``m:ss`` of a non-negative number of seconds.

    >>> clock_text(754.9), clock_text(5)
    ('12:34', '0:05')
    """
    minutes, rest = divmod(int(max(seconds, 0.0)), 60)
    return f"{minutes}:{rest:02d}"


def _number(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.4g}"


@dataclass
class RolloutState:
    """What the demo knows of one rollout."""

    scenario: Scenario
    phase: str = "announced"
    stage: int | None = None
    traffic_percent: float = 0.0
    event_time: float | None = None  # the worker's clock for this rollout (epoch s)
    status_seq: int = -1  # the last decision's seq when the worker showed that clock
    last: Decision | None = None
    recent: deque[Decision] = field(default_factory=lambda: deque(maxlen=RECENT))
    history: list[Decision] = field(default_factory=list)
    received: dict[int, float] = field(default_factory=dict)  # seq -> wall time of arrival

    @property
    def terminal(self) -> bool:
        return self.phase in {p.value for p in Phase if p.is_terminal}


class LiveView:
    """State of the live demo and its rendering."""

    def __init__(self, scenarios: list[Scenario], *, speed: float, header: str) -> None:
        self.rollouts = {s.deployment: RolloutState(s) for s in scenarios}
        self.origin = min(s.start_ts for s in scenarios)
        self.plan = max(s.end_ts for s in scenarios) - self.origin
        self.stages = {s.deployment: _stage_count(s) for s in scenarios}
        self.speed = speed
        self.header = header
        self.note = "starting"
        self.sent_events = 0
        self.sent_messages = 0
        self.produced_until: float | None = None  # event time the fleet has sent up to
        self.consumed: float | None = None  # events the worker counted (its /metrics)
        self.started = time.monotonic()
        self.run_started: float | None = None
        self.window_sent: dict[int, float] = {}  # window index -> wall time it was sent

    # ------------------------------------------------------------------ inputs
    def on_decision(self, decision: Decision) -> None:
        state = self.rollouts.get(decision.deployment)
        if state is None:
            return
        if state.last is None or decision.seq > state.last.seq:
            state.last = decision
            state.phase = decision.phase.value
            state.stage = decision.stage
            state.traffic_percent = decision.traffic_percent
        state.recent.append(decision)
        state.history.append(decision)
        state.received.setdefault(decision.seq, time.monotonic())

    def on_status(self, rollouts: list[dict[str, Any]]) -> None:
        """Apply the worker's ``/rollouts/`` view."""
        for status in rollouts:
            state = self.rollouts.get(status.get("deployment", ""))
            if state is None:
                continue
            state.event_time = status.get("event_time")
            state.status_seq = status.get("seq", -1)
            # Decisions read from the topic may be ahead of or behind the status; keep the
            # newer of the two.
            if state.last is None or status.get("seq", -1) >= state.last.seq:
                state.phase = status["phase"]
                state.stage = status["stage"]
                state.traffic_percent = status["traffic_percent"]

    # ------------------------------------------------------------------ queries
    def known(self) -> set[str]:
        """Rollouts the worker has listed."""
        return {d for d, s in self.rollouts.items() if s.event_time is not None}

    def all_terminal(self) -> bool:
        return all(state.terminal for state in self.rollouts.values())

    def worker_clock(self) -> float:
        """The least event time reached by the worker over rollouts still live."""
        clocks = [
            state.event_time if state.event_time is not None else self.origin
            for state in self.rollouts.values()
            if not state.terminal
        ]
        return min(clocks) if clocks else math.inf

    # ------------------------------------------------------------------ rendering
    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._header()
        panels = [self._panel(state) for state in self.rollouts.values()]
        if options.max_width >= 150:
            grid = Table.grid(expand=True, padding=(0, 1))
            for _ in panels:
                grid.add_column(ratio=1)
            grid.add_row(*panels)
            yield grid
        else:
            yield from panels
        yield Text(f" {self.note}", style="dim italic")

    def _header(self) -> Text:
        text = Text.from_markup(f"[bold]canarystream live demo[/] · {self.header}\n")
        produced = 0.0 if self.produced_until is None else self.produced_until - self.origin
        wall = time.monotonic() - (self.run_started or self.started)
        text.append(
            f" fleet at event time {clock_text(produced)} of {clock_text(self.plan)}"
            f" · speed {self.speed:g}× · wall {clock_text(wall)}"
            f" · sent {self.sent_events:,} events in {self.sent_messages:,} messages"
        )
        if self.consumed is not None:
            text.append(f" · worker consumed {self.consumed:,.0f}")
        return text

    def _panel(self, state: RolloutState) -> Panel:
        s = state.scenario
        title = (
            f"[bold]{escape(s.service)}[/] {escape(s.baseline_version)} → "
            f"{escape(s.canary_version)} [dim]({escape(s.deployment)})[/]"
        )
        stages = self.stages[s.deployment]
        stage = "—" if state.stage is None else f"{state.stage} of 0–{stages - 1}"
        elapsed = "—" if state.event_time is None else clock_text(state.event_time - self.origin)
        status = Table.grid(padding=(0, 1))
        for _ in range(4):
            status.add_column()
        status.add_row(
            Text(f" {state.phase} ", style=_PHASE_STYLE.get(state.phase, "")),
            Text(f"stage {stage} · canary traffic {state.traffic_percent:g}%"),
            ProgressBar(total=100, completed=state.traffic_percent, width=20),
            Text(f"event time {elapsed}"),
        )

        checks = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold dim")
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("check", "left"),
            ("verdict", "left"),
            ("estimate", "right"),
            ("upper", "right"),
            ("tolerance", "right"),
        )
        for column, justify in columns:
            checks.add_column(column, justify=justify, no_wrap=True)
        last = state.last
        reasons = [] if last is None else [r for r in last.reasons if r.kind != "guard"]
        guards = [] if last is None else [r for r in last.reasons if r.kind == "guard"]
        for reason in reasons + [g for g in guards if g.verdict is not Verdict.PASS]:
            checks.add_row(
                escape(reason.check),
                Text(reason.verdict.value, style=_VERDICT_STYLE[reason.verdict]),
                _number(reason.estimate),
                _number(reason.upper),
                _number(reason.tolerance),
            )
        if not reasons:
            checks.add_row("[dim]no check statistics yet[/]", "", "", "", "")
        when = (
            "" if last is None else f" ({last.action.value} at {clock_text(last.ts - self.origin)})"
        )
        caption = Text(f"checks at the last decision{when}", style="dim")

        decisions = Table.grid(padding=(0, 1))
        decisions.add_column(no_wrap=True, justify="right")
        decisions.add_column(no_wrap=True)
        decisions.add_column(no_wrap=True)
        decisions.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        for decision in list(state.recent):
            decisions.add_row(
                clock_text(decision.ts - self.origin).rjust(5),
                Text(decision.action.value, style=ACTION_STYLE.get(decision.action, "magenta")),
                f"{decision.traffic_percent:g}%",
                Text(decision.summary, overflow="ellipsis", no_wrap=True),
            )
        border = {"rolled_back": "red", "promoted": "green", "held": "yellow"}
        return Panel(
            Group(
                status,
                caption,
                checks,
                Text("decisions", style="dim"),
                decisions if state.recent else Text("none yet", style="dim"),
            ),
            title=title,
            title_align="left",
            border_style=border.get(state.phase, "blue"),
        )


def _stage_count(scenario: Scenario) -> int:
    policy = scenario.policy
    if isinstance(policy, dict) and isinstance(policy.get("stages"), list):
        return len(policy["stages"])
    return len(Policy().stages)  # the default policy's
