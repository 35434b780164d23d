"""The targets table: reads ``results/detection.json`` and ``results/speed.json``.

Run with ``python -m benchmarks.report``; prints Markdown for the README.
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


def main() -> None:
    """Print the targets table."""
    detection = json.loads((RESULTS / "detection.json").read_text())
    speed_path = RESULTS / "speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.exists() else None
    print("\n".join(targets(detection, speed)))


if __name__ == "__main__":
    main()
