"""The figures of ``benchmarks/README.md``, from ``results/*.json`` and ``results/*.md``.

``python -m benchmarks.report`` prints the targets table; ``--write`` replaces everything from
the README's "## Targets" heading to its end with freshly generated sections, so the figures in
the README are always the ones in ``results/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["main", "targets"]

RESULTS = Path(__file__).parent / "results"


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def targets(detection: dict[str, Any], speed: dict[str, Any] | None) -> list[str]:
    """One Markdown row per target: the target, the measured figure, met or missed."""
    summary = detection["summary"]
    rows = ["| target | measured | status |", "|---|---|---|"]
    null = {name: e for name, e in summary.items() if e["null"]}
    worst = max(null.items(), key=lambda kv: kv[1]["engine"]["rollback"])
    bad = [n for n, e in null.items() if e["engine"]["rollback"] > 0.02]
    rows.append(
        f"| false rollbacks <= 2 % in every null cell | worst {worst[0]}: "
        f"{100 * worst[1]['engine']['rollback']:.1f} % "
        f"(95 % upper {100 * worst[1]['engine']['rollback_upper95']:.1f} %) | "
        f"{_mark(not bad)} |"
    )
    regressed = {name: e for name, e in summary.items() if not e["null"]}
    promoted = {n: e["engine"]["promoted"] for n, e in regressed.items() if e["engine"]["promoted"]}
    listed = ", ".join(f"{n} {100 * p:.1f} %" for n, p in promoted.items()) or "none"
    rows.append(f"| no regressed canary promoted | promoted in: {listed} | {_mark(not promoted)} |")
    for name in ("reg-errors-x1.5-20rps", "reg-latency-x1.1-20rps"):
        if name in summary:
            power = summary[name]["engine"]["rollback"]
            rows.append(
                f"| power >= 95 % for {name} | {100 * power:.1f} % "
                f"(n={summary[name]['n']}) | {_mark(power >= 0.95)} |"
            )
    for effect in ("errors-x3", "latency-x1.25"):
        for rate in ("8", "20", "200"):
            name = f"reg-{effect}-{rate}rps"
            if name in summary:
                ttd = summary[name]["engine"]["ttd_median_s"]
                ok = ttd is not None and ttd <= 60
                shown = "no rollbacks" if ttd is None else f"{ttd:.0f} s"
                rows.append(f"| median TTD <= 60 s, {name} | {shown} | {_mark(ok)} |")
    if speed:
        for entry in speed["throughput"]:
            ratio = entry["ratio_replay_to_bare"]
            rows.append(
                f"| replay / bare orjson <= 3 ({entry['file']}) | {ratio:.2f} | "
                f"{_mark(ratio <= 3)} |"
            )
    return rows


def speed_section(speed: dict[str, Any]) -> list[str]:
    """Throughput, memory and profile tables."""
    rows = [
        "## Speed (one core)",
        "",
        "| file | events | bare `orjson.loads` ev/s | orjson + `Engine.process` ev/s | "
        "`replay_files` ev/s | replay / bare |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for entry in speed["throughput"]:
        rows.append(
            f"| {entry['file']} | {entry['events']:,} | {entry['bare_orjson_events_per_s']:,} | "
            f"{entry['decode_process_events_per_s']:,} | {entry['replay_events_per_s']:,} | "
            f"**{entry['ratio_replay_to_bare']:.2f}** |"
        )
    rss, traced = speed["memory_rss"], speed["memory_tracemalloc"]
    rows += [
        "",
        "Best of 3 runs each, in one process; the ratio compares the two columns of the same run.",
        "",
        f"**Memory**, {traced['rollouts']:,} concurrent rollouts fed {traced['minutes']} minutes "
        f"at {traced['req_per_s_per_cohort']:g} req/s per cohort ({traced['events']:,} events): "
        f"tracemalloc **{traced['tracemalloc_current_mb']:.1f} MB live, "
        f"{traced['tracemalloc_mb_per_rollout']:.3f} MB per rollout**; process RSS grew "
        f"{rss['rss_before_mb']:.1f} → {rss['rss_after_mb']:.1f} MB "
        f"({rss['rss_mb_per_rollout']:.2f} MB per rollout, an upper bound that includes memory "
        f"the allocator kept from the generated events).",
        "",
        "**cProfile** of `replay_files` on the first file, top 10 by cumulative time "
        "(full listing: `results/profile.txt`):",
        "",
        "| function | calls | tottime s | cumtime s |",
        "|---|---:|---:|---:|",
    ]
    for item in speed["profile_top10_cumulative"]:
        rows.append(
            f"| `{item['function']}` | {item['calls']:,} | {item['tottime_s']:.3f} | "
            f"{item['cumtime_s']:.3f} |"
        )
    return rows


def write_readme(detection: dict[str, Any], speed: dict[str, Any] | None) -> None:
    """Regenerate the README from its "## Targets" heading to the end."""
    readme = Path(__file__).parent / "README.md"
    head = readme.read_text().split("\n## Targets", 1)[0].rstrip()
    body = [head, "", "## Targets", "", *targets(detection, speed), ""]
    body += ["## Detection results", "", (RESULTS / "detection.md").read_text().rstrip(), ""]
    if speed:
        body += [*speed_section(speed), ""]
    readme.write_text("\n".join(body))


def main(argv: list[str] | None = None) -> None:
    """Print the targets table, or rewrite the README's figures with ``--write``."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite benchmarks/README.md")
    args = parser.parse_args(argv)
    detection = json.loads((RESULTS / "detection.json").read_text())
    speed_path = RESULTS / "speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.exists() else None
    if args.write:
        write_readme(detection, speed)
    else:
        print("\n".join(targets(detection, speed)))


if __name__ == "__main__":
    main()
