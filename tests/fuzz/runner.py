"""``make fuzz``: many inputs over worker processes, a report, reproducers of every failure.

The base stream and both drivers' baselines are built once, before the workers are forked.
Inputs are handed out in chunks; each worker runs its chunk in position order and sends back
a :class:`~tests.fuzz.fuzzer.Tally`. Every worker sets an address-space limit, so an input
that allocates without bound fails as a ``MemoryError`` (a crash) instead of starving the
machine, and the parent watches each worker's current input: one that dies, or outlives the
per-input limit by far (stuck where the alarm cannot interrupt it), is recorded as a crash or
hang of that input and its chunk runs again without it.

Each failure signature is printed when first seen and written, with its smallest input, to
``<out>/<n>.json``; ``python -m tests.fuzz --seed S --only INDEX`` runs one input again and
``--input FILE`` runs a saved one (even after the mutators change).
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import platform
import queue
import re
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.fuzz.fuzzer import CHANGE, CRASH, HANG, Example, Fuzzer, Outcome, Tally
from tests.fuzz.mutators import MUTATORS, Fuzzed

__all__ = ["load_input", "main", "run", "save_failure"]

CHUNK = 400
MEMORY_LIMIT = 6 << 30  # bytes of address space per worker
_SHARED: dict[str, Fuzzer] = {}  # built in the parent, inherited by forked workers


def _describe(fuzzed: Fuzzed, outcome: Outcome) -> str:
    return (
        f"FAILURE {outcome.signature}\n  {fuzzed.describe()}\n  expected: "
        f"{fuzzed.expect[outcome.driver]}; {outcome.detail.strip()[-600:]}"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]


def save_failure(out: Path, example: Example) -> Path:
    """Write a failure's input and symptom as JSON; return the file."""
    fuzzed, outcome = example.fuzzed, example.outcome
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{_slug(outcome.signature)}.json"
    record = {
        "signature": outcome.signature,
        "count": example.count,
        "driver": outcome.driver,
        "failure": outcome.failure,
        "detail": outcome.detail,
        "reproduce": f"python -m tests.fuzz --seed {fuzzed.seed} --only {fuzzed.index}",
        "input": {
            "seed": fuzzed.seed,
            "index": fuzzed.index,
            "mutator": fuzzed.mutator,
            "note": fuzzed.note,
            "position": fuzzed.position,
            "topic": fuzzed.topic,
            "partition": fuzzed.partition,
            "offset": fuzzed.offset,
            "key": None if fuzzed.key is None else base64.b64encode(fuzzed.key).decode(),
            "merge": fuzzed.merge,
            "expect": fuzzed.expect,
            "payload": base64.b64encode(fuzzed.payload).decode(),
            "payload_start": fuzzed.payload[:2000].decode("utf-8", "replace"),
        },
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_input(path: Path) -> Fuzzed:
    """An input saved by :func:`save_failure`."""
    data = json.loads(path.read_text())["input"]
    return Fuzzed(
        seed=data["seed"],
        index=data["index"],
        mutator=data["mutator"],
        position=data["position"],
        payload=base64.b64decode(data["payload"]),
        key=None if data["key"] is None else base64.b64decode(data["key"]),
        topic=data["topic"],
        partition=data["partition"],
        offset=data["offset"],
        expect=data["expect"],
        merge=data["merge"],
        note=data["note"],
    )


# -------------------------------------------------------------------- workers


def _work(slot: int, tasks: Any, results: Any, current: Any) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    fuzzer = _SHARED["fuzzer"]
    while True:
        task = tasks.get()
        if task is None:
            return
        chunk, indices = task

        def starting(fuzzed: Fuzzed) -> None:
            current[2 * slot + 1] = time.monotonic()
            current[2 * slot] = fuzzed.index

        tally = fuzzer.run(indices, before=starting)
        current[2 * slot] = -1
        results.put((slot, chunk, tally))


def _lost(fuzzer: Fuzzer, index: int, status: str, detail: str) -> Tally:
    """A tally holding one input that took its worker down (or had to be killed)."""
    fuzzed = fuzzer.generate(index)
    tally = Tally()
    signature = f"worker: {status} ({detail.split(':', maxsplit=1)[0]}), by {fuzzed.mutator}"
    tally.add(
        fuzzed, [Outcome("worker", status, failure=status, signature=signature, detail=detail)]
    )
    return tally


def run(
    fuzzer: Fuzzer,
    indices: Sequence[int],
    *,
    jobs: int,
    out: Path,
    echo: Any = print,
) -> Tally:
    """Run ``indices`` over ``jobs`` forked workers; print and save failures as they come."""
    total = Tally()
    saved: dict[str, int] = {}  # signature -> size of the payload saved
    started = time.monotonic()
    shown = [started]

    def absorb(tally: Tally) -> None:
        for example in total.merge(tally):
            echo(_describe(example.fuzzed, example.outcome))
        for signature, example in total.failures.items():
            if saved.get(signature) != len(example.fuzzed.payload):
                save_failure(out, example)
                saved[signature] = len(example.fuzzed.payload)
        if time.monotonic() - shown[0] > 15 or total.inputs == len(indices):
            shown[0] = time.monotonic()
            _progress(total, len(indices), started)

    cpu = _cpu()
    if jobs <= 1:
        for offset in range(0, len(indices), CHUNK):
            absorb(fuzzer.run(indices[offset : offset + CHUNK]))
        total.elapsed = time.monotonic() - started
        total.cpu = _cpu() - cpu
        return total

    _SHARED["fuzzer"] = fuzzer
    context = multiprocessing.get_context("fork")
    tasks, results = context.Queue(), context.Queue()
    current = context.Array("d", [-1.0, 0.0] * jobs, lock=False)
    pending: dict[int, list[int]] = {}
    for chunk, offset in enumerate(range(0, len(indices), CHUNK)):
        pending[chunk] = list(indices[offset : offset + CHUNK])
        tasks.put((chunk, pending[chunk]))
    workers: dict[int, Any] = {}

    def spawn(slot: int) -> None:
        process = context.Process(target=_work, args=(slot, tasks, results, current))
        process.daemon = True
        process.start()
        workers[slot] = process

    for slot in range(jobs):
        spawn(slot)
    stuck_after = 2 * fuzzer.limit + 30.0
    next_chunk = len(pending)
    try:
        while pending:
            try:
                slot, chunk, tally = results.get(timeout=1.0)
            except queue.Empty:
                pass
            else:
                pending.pop(chunk, None)
                absorb(tally)
                continue
            for slot, process in list(workers.items()):
                index = int(current[2 * slot])
                since = current[2 * slot + 1]
                dead = not process.is_alive()
                stuck = index >= 0 and time.monotonic() - since > stuck_after
                if not (dead or stuck):
                    continue
                if stuck:
                    process.kill()
                process.join()
                if index >= 0:
                    status = HANG if stuck else CRASH
                    detail = (
                        f"stuck over {stuck_after:g} s: killed"
                        if stuck
                        else f"worker died: exit code {process.exitcode}"
                    )
                    absorb(_lost(fuzzer, index, status, detail))
                    # Its chunk (unknown) runs again without the input that took it down.
                    for chunk, members in list(pending.items()):
                        if index in members:
                            rest = [i for i in members if i != index]
                            del pending[chunk]
                            if rest:
                                pending[next_chunk] = rest
                                tasks.put((next_chunk, rest))
                                next_chunk += 1
                current[2 * slot] = -1
                spawn(slot)
    finally:
        for _ in workers:
            tasks.put(None)
        for process in workers.values():
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
        _SHARED.clear()
    total.elapsed = time.monotonic() - started
    total.cpu = _cpu() - cpu
    return total


def _cpu() -> float:
    """Processor seconds of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _progress(tally: Tally, total: int, started: float) -> None:
    elapsed = time.monotonic() - started
    print(
        f"  {tally.inputs:,}/{total:,} inputs, {elapsed:,.0f} s, "
        f"{tally.inputs / max(elapsed, 1e-9):,.0f}/s, "
        f"failures: {tally.count('crashes')} crashes, {tally.count('hangs')} hangs, "
        f"{tally.count('silent changes')} silent changes",
        file=sys.stderr,
    )


# -------------------------------------------------------------------- report

_COLUMNS = (
    "inputs",
    "crashes",
    "hangs",
    "silent changes",
    "accepted and changed",
    "rejected",
    "dead letters",
    "state moved",
    "applied though invalid (no change)",
    "valid but not applied",
)


def machine() -> str:
    """CPU model, cores and Python: where the figures were measured."""
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def report(tally: Tally, fuzzer: Fuzzer, *, jobs: int, out: Path) -> str:
    """The end-of-run summary."""
    base = fuzzer.base
    lines = [
        f"fuzz: seed {fuzzer.seed}, {tally.inputs:,} inputs through the worker's processor and "
        f"replay; time limit {fuzzer.limit:g} CPU s per input and driver",
        f"base stream: {len(base.messages)} messages, {len(base.events):,} events, "
        + ", ".join(f"{c.driver.name} {len(c.baseline.decisions)}" for c in fuzzer.cursors)
        + " decisions",
        "",
        "driver     " + "  ".join(f"{name:>{max(len(name), 7)}}" for name in _COLUMNS[:8]),
    ]
    for driver, counts in sorted(tally.by_driver.items()):
        lines.append(
            f"{driver:<10} "
            + "  ".join(f"{counts[name]:>{max(len(name), 7)},}" for name in _COLUMNS[:8])
        )
    lines.append("")
    lines.append(
        "informational: "
        + "; ".join(
            f"{name}: {tally.count(name):,}"
            for name in ("applied though invalid (no change)", "valid but not applied")
        )
    )
    lines.append("")
    lines.append(
        f"{'mutator':<20} {'inputs':>7} {'rej.proc':>8} {'rej.repl':>8} {'changed':>7} "
        f"{'crash':>5} {'hang':>5} {'silent':>6}"
    )
    for name in MUTATORS:
        c = tally.by_mutator.get(name)
        if not c:
            continue
        lines.append(
            f"{name:<20} {c['inputs']:>7,} {c['rejected by processor']:>8,} "
            f"{c['rejected by replay']:>8,} {c['accepted and changed']:>7,} {c[CRASH]:>5,} "
            f"{c[HANG]:>5,} {c[CHANGE]:>6,}"
        )
    if tally.failures:
        lines.append("")
        lines.append(f"{len(tally.failures)} failure signature(s), smallest input of each:")
        for signature, example in sorted(tally.failures.items(), key=lambda kv: -kv[1].count):
            lines.append(f"- {signature}  [{example.count:,} inputs]")
            lines.append(f"    {example.fuzzed.describe(160)}")
            lines.append(f"    {example.outcome.detail.strip().splitlines()[-1][:300]}")
        lines.append(f"reproducers: {out}/")
    lines.append("")
    lines.append(
        f"elapsed {tally.elapsed:,.1f} s, {tally.inputs / max(tally.elapsed, 1e-9):,.0f} "
        f"inputs/s with {jobs} worker(s), on {machine()}"
    )
    lines.append(
        f"processor time {tally.cpu:,.0f} s ({1000 * tally.cpu / max(tally.inputs, 1):.1f} ms "
        f"per input): {tally.cpu / jobs:,.0f} s of elapsed time on {jobs} idle core(s); "
        f"more when the machine is shared"
    )
    lines.append(
        "result: " + ("FAILED" if tally.failed else "0 crashes, 0 hangs, 0 silent decision changes")
    )
    return "\n".join(lines)


def _single(fuzzer: Fuzzer, fuzzed: Fuzzed) -> int:
    print(fuzzed.describe(2000))
    print(f"expect: {fuzzed.expect}")
    failed = False
    for outcome in fuzzer.run_one(fuzzed):
        print(
            f"\n{outcome.driver}: {outcome.status}; rejected entirely: {outcome.rejected_entirely}"
            f" ({', '.join(outcome.reasons) or '-'}); decisions changed: {outcome.changed}"
        )
        if outcome.failure:
            failed = True
            print(f"  {outcome.signature}\n{outcome.detail}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``python -m tests.fuzz --inputs 100000 --seed 1``."""
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 2))
    parser.add_argument("--limit", type=float, default=2.0, help="CPU seconds per input and driver")
    parser.add_argument(
        "--audit",
        type=float,
        default=0.02,
        help="share of inputs that left the state unchanged whose rest of stream runs anyway",
    )
    parser.add_argument("--out", type=Path, default=Path("out/fuzz"))
    parser.add_argument("--only", type=int, action="append", help="run one input (repeatable)")
    parser.add_argument("--input", type=Path, help="run an input saved in a failure file")
    args = parser.parse_args(argv)
    build_started = time.monotonic()
    fuzzer = Fuzzer(args.seed, limit=args.limit, audit=args.audit)
    print(
        f"base stream and baselines built in {time.monotonic() - build_started:.1f} s",
        file=sys.stderr,
    )
    if args.input is not None:
        return _single(fuzzer, load_input(args.input))
    if args.only:
        return max(_single(fuzzer, fuzzer.generate(index)) for index in args.only)
    tally = run(fuzzer, range(args.inputs), jobs=args.jobs, out=args.out)
    print(report(tally, fuzzer, jobs=args.jobs, out=args.out))
    return 1 if tally.failed else 0
