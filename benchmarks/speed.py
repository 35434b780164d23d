"""Speed benchmark: replay throughput against bare JSON decoding, memory, and a profile.

Run with ``python -m benchmarks.speed``. It writes JSON Lines files of generated telemetry,
then on one core measures (a) a bare ``orjson.loads`` loop over the lines, (b) replay of the
same file through the engine (``canarystream.replay.replay_files``), and the ratio (b)/(a);
memory with many concurrent rollouts; and a cProfile of the replay. Besides two single files
of paired cohorts, it replays twelve files of the realistic shape: twelve services recorded
by the simulator (endpoints, dependencies, instances, gauges; the presets' behaviours), one
file each, merged by time. Results go to
``benchmarks/results/speed.json`` and ``benchmarks/results/profile.txt``.
"""

from __future__ import annotations

import argparse
import compileall
import cProfile
import gc
import heapq
import io
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import canarystream
from canarystream.engine import Engine
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.paired import CHUNK, Cell, PairedRollout
from canarystream.simulate.presets import build_preset

try:
    from canarystream.replay import replay_files
except ImportError:  # the replay driver is optional for this benchmark
    replay_files = None  # type: ignore[assignment]

__all__ = ["REALISTIC_PRESETS", "main", "write_jsonl", "write_services"]

RESULTS = Path(__file__).parent / "results"
DATA = RESULTS / "data"


def _ts(event: dict[str, Any]) -> float:
    return event["ts"]


def write_jsonl(path: Path, rollouts: int, rate_total: float, minutes: int, seed: int = 7) -> int:
    """Write ``rollouts`` interleaved paired rollouts at ``rate_total`` req/s each; events."""
    gens = [
        PairedRollout(Cell("speed", rate=rate_total / 2), seed + i, service=f"svc-{i}")
        for i in range(rollouts)
    ]
    count = 0
    with path.open("wb") as handle:
        for gen in gens:
            handle.write(orjson.dumps(gen.deployment_event()) + b"\n")
            count += 1
        for k in range(minutes):
            chunks = [gen.chunk(float(k * CHUNK), build=True)[0] for gen in gens]
            for event in heapq.merge(*chunks, key=_ts):
                handle.write(orjson.dumps(event) + b"\n")
                count += 1
    return count


REALISTIC_PRESETS = (
    "healthy",
    "errors-x3",
    "errors-plus-2pp",
    "tail-only",
    "gradual-latency",
    "endpoint-only",
    "dependency-only",
    "gauge-only",
    "global-incident",
    "benign-offset",
    "heterogeneity",
    "shared-ramp",
)
"""One service each, one file each: the twelve files of the realistic multi-file case."""


def write_services(folder: Path, rps: float, minutes: float, seed: int = 11) -> list[Path]:
    """Record :data:`REALISTIC_PRESETS` with the simulator (closed loop, the engine's own
    decisions steering the canary), one service a file; returns the files (events in
    ``.events``)."""
    start = 1_790_000_000.0
    scenarios = [
        build_preset(
            name, service=f"svc-{i:02d}", rps=rps, duration=minutes * 60, start_ts=start + 7.3 * i
        )
        for i, name in enumerate(REALISTIC_PRESETS)
    ]
    paths = {s.service: folder / f"{s.service}.jsonl" for s in scenarios}
    handles = {service: path.open("wb") for service, path in paths.items()}
    try:
        for event in simulate(scenarios, seed=seed):
            handles[event["service"]].write(orjson.dumps(event) + b"\n")
    finally:
        for handle in handles.values():
            handle.close()
    return list(paths.values())


def _lines_in(paths: list[Path]) -> int:
    count = 0
    for path in paths:
        with path.open("rb") as handle:
            count += sum(1 for _ in handle)
    return count


def _bare(paths: list[Path]) -> float:
    loads = orjson.loads
    started = time.perf_counter()
    for path in paths:
        with path.open("rb") as handle:
            for line in handle:
                loads(line)
    return time.perf_counter() - started


def _replay(paths: list[Path]) -> tuple[float, dict[str, int]]:
    engine = Engine()
    started = time.perf_counter()
    if replay_files is not None:
        result = replay_files(paths, engine=engine)
        decisions = dict(result.decisions)
    else:
        decisions = {}
        loads, process = orjson.loads, engine.process
        (path,) = paths
        with path.open("rb") as handle:
            for line in handle:
                for decision in process(loads(line)):
                    decisions[decision.action.value] = decisions.get(decision.action.value, 0) + 1
    return time.perf_counter() - started, decisions


def _decode_process(path: Path) -> float:
    """orjson + Engine.process in a plain loop (the replay driver's own overhead excluded)."""
    engine = Engine()
    loads, process = orjson.loads, engine.process
    started = time.perf_counter()
    with path.open("rb") as handle:
        for line in handle:
            process(loads(line))
    return time.perf_counter() - started


def throughput(paths: list[Path], events: int, repeats: int, name: str = "") -> dict[str, Any]:
    """Best-of-``repeats`` timings of the bare decode loop and of replay (one file: also of
    orjson + ``Engine.process`` in a plain loop)."""
    bare = min(_bare(paths) for _ in range(repeats))
    loop = min(_decode_process(paths[0]) for _ in range(repeats)) if len(paths) == 1 else None
    replays = [_replay(paths) for _ in range(repeats)]
    replay_s = min(seconds for seconds, _ in replays)
    return {
        "file": name or paths[0].name,
        "files": len(paths),
        "events": events,
        "bytes": sum(path.stat().st_size for path in paths),
        "bare_orjson_s": round(bare, 3),
        "bare_orjson_events_per_s": round(events / bare),
        "decode_process_s": None if loop is None else round(loop, 3),
        "decode_process_events_per_s": None if loop is None else round(events / loop),
        "replay_s": round(replay_s, 3),
        "replay_events_per_s": round(events / replay_s),
        "ratio_replay_to_bare": round(replay_s / bare, 2),
        "decisions": replays[0][1],
        "driver": "canarystream.replay.replay_files" if replay_files else "orjson + process",
    }


def startup(path: Path, runs: int = 10) -> dict[str, Any]:
    """``canarystream replay --quiet`` of a small file in a fresh interpreter, ``runs``
    times: the least wall and CPU time (start-up dominates; scipy must not be loaded).

    The package's bytecode is compiled first, as an installed package's is: an editable
    checkout under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile some seventy modules
    at every start (about 0.1 s of CPU here).
    """
    compileall.compile_dir(Path(canarystream.__file__).parent, quiet=1)
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "canarystream", "replay", "--quiet", str(path)],
            stdout=subprocess.DEVNULL,
            check=True,
        )
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(
            after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
        )
    return {
        "file": path.name,
        "runs": runs,
        "wall_min_s": round(min(walls), 3),
        "wall_median_s": round(sorted(walls)[runs // 2], 3),
        "cpu_min_s": round(min(cpus), 3),
        "load_average": round(os.getloadavg()[0], 2),
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def memory(rollouts: int, minutes: int, rate: float, traced: bool) -> dict[str, Any]:
    """Engine memory with ``rollouts`` concurrent rollouts fed ``minutes`` of telemetry."""
    gens = [
        PairedRollout(Cell("memory", rate=rate), 10_000 + i, service=f"mem-{i}")
        for i in range(rollouts)
    ]
    gc.collect()
    rss_before = _rss_mb()
    if traced:
        tracemalloc.start()
    engine = Engine()
    for gen in gens:
        engine.process(gen.deployment_event())
    events = 0
    started = time.perf_counter()
    for k in range(minutes):
        batch = [event for gen in gens for event in gen.chunk(float(k * CHUNK), build=True)[0]]
        batch.sort(key=_ts)
        for event in batch:
            engine.process(event)
        events += len(batch)
        del batch
    elapsed = time.perf_counter() - started
    gc.collect()
    out: dict[str, Any] = {
        "rollouts": rollouts,
        "minutes": minutes,
        "req_per_s_per_cohort": rate,
        "events": events,
        "live_rollouts": len(engine.active_by_service),
        "seconds": round(elapsed, 1),
    }
    if traced:
        current, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["tracemalloc_current_mb"] = round(current / 1e6, 1)
        out["tracemalloc_mb_per_rollout"] = round(current / 1e6 / rollouts, 4)
    else:
        rss_after = _rss_mb()
        out["rss_before_mb"] = round(rss_before, 1)
        out["rss_after_mb"] = round(rss_after, 1)
        out["rss_mb_per_rollout"] = round((rss_after - rss_before) / rollouts, 4)
        out["ru_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 1)
    del engine
    return out


def profile(path: Path, top: int = 10) -> tuple[str, list[dict[str, Any]]]:
    """cProfile of one replay of ``path``; the ``top`` functions by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    _replay([path])
    profiler.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer).sort_stats("cumulative")
    stats.print_stats(30)
    rows = []
    entries = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])  # type: ignore[attr-defined]
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in entries:
        if "benchmarks" in filename or "disable" in name:
            continue  # the benchmark's own wrapper and the profiler itself
        where = filename.split("canarystream/", 1)[-1] if filename != "~" else ""
        rows.append(
            {
                "function": f"{where}:{line}({name})",
                "calls": ncalls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
            }
        )
        if len(rows) == top:
            break
    return buffer.getvalue(), rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every measurement and write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller files, fewer rollouts")
    args = parser.parse_args(argv)
    quick = args.quick
    DATA.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    files = {
        "two-rollouts-200rps-10min": (2, 200.0, 2 if quick else 10),
        "one-rollout-4000rps-5min": (1, 4000.0, 1 if quick else 5),
    }
    results: dict[str, Any] = {"python": platform.python_version(), "throughput": []}
    paths = {}
    for name, (count, rate, minutes) in files.items():
        path = DATA / f"{name}.jsonl"
        events = write_jsonl(path, count, rate, minutes)
        paths[name] = path
        entry = throughput([path], events, repeats=1 if quick else 3)
        entry.update({"rollouts": count, "req_per_s_total": rate, "minutes": minutes})
        results["throughput"].append(entry)
        print(json.dumps(entry))
    services = DATA / "services"
    services.mkdir(exist_ok=True)
    rps, minutes = 80.0, 2 if quick else 10
    service_files = write_services(services, rps, minutes)
    name = f"twelve-services-{rps:g}rps-{minutes}min (12 files)"
    entry = throughput(service_files, _lines_in(service_files), 1 if quick else 3, name)
    entry.update({"rollouts": len(service_files), "req_per_s_total": rps, "minutes": minutes})
    results["throughput"].append(entry)
    print(json.dumps(entry))
    small = DATA / "small.jsonl"
    write_services(services, 5.0, 1)[0].rename(small)  # one service, a minute at 5 req/s
    results["startup"] = startup(small, 3 if quick else 10)
    print(json.dumps(results["startup"]))
    text, top = profile(paths["two-rollouts-200rps-10min"])
    (RESULTS / "profile.txt").write_text(text)
    results["profile_top10_cumulative"] = top
    for row in top:
        print(row)
    n = 50 if quick else 1000
    results["memory_rss"] = memory(n, 1 if quick else 3, 5.0, traced=False)
    print(json.dumps(results["memory_rss"]))
    results["memory_tracemalloc"] = memory(n, 1 if quick else 3, 5.0, traced=True)
    print(json.dumps(results["memory_tracemalloc"]))
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["numpy"] = np.__version__
    (RESULTS / "speed.json").write_text(json.dumps(results, indent=1))
    for path in [*paths.values(), *services.iterdir(), small]:
        path.unlink()
    services.rmdir()
    DATA.rmdir()
    print(f"speed benchmark took {results['seconds']:.0f}s")
    return results


if __name__ == "__main__":
    main()
