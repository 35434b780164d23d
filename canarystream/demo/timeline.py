"""The decisions of each rollout as a readable timeline (after the run)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from canarystream.contracts.decision import Action, Decision, Verdict

__all__ = ["ACTION_STYLE", "render_timeline"]

ACTION_STYLE = {
    Action.ADVANCE: "cyan",
    Action.HOLD: "yellow",
    Action.ROLLBACK: "bold red",
    Action.PROMOTE: "bold green",
}


def render_timeline(decisions: list[Decision], origin: float, console: Console) -> None:
    """Print each rollout's decisions as a readable timeline."""
    by_rollout: dict[str, list[Decision]] = {}
    for decision in decisions:
        by_rollout.setdefault(decision.deployment, []).append(decision)
    for deployment, items in by_rollout.items():
        first = items[0]
        console.rule(
            f"[bold]{escape(deployment)}[/]: {escape(first.service)} "
            f"{escape(first.baseline_version)} → {escape(first.canary_version)} "
            f"(policy {escape(first.policy)})"
        )
        for decision in items:
            minutes, seconds = divmod(int(decision.ts - origin), 60)
            style = ACTION_STYLE.get(decision.action, "magenta")
            console.print(
                f"  {minutes:3d}:{seconds:02d}  [{style}]{decision.action.value:<8}[/] "
                f"stage {decision.stage} · {decision.traffic_percent:g}%  "
                f"{escape(decision.summary)}",
                highlight=False,
            )
            if decision.action in (Action.ROLLBACK, Action.HOLD, Action.PROMOTE):
                for reason in decision.reasons:
                    if reason.kind == "guard" and reason.verdict is Verdict.PASS:
                        continue
                    mark = "✗" if reason.verdict is Verdict.FAIL else "·"
                    console.print(
                        f"            {mark} {escape(reason.check)}: {reason.verdict.value} — "
                        f"{escape(reason.message)}",
                        highlight=False,
                        style="red" if reason.verdict is Verdict.FAIL else "dim",
                    )
