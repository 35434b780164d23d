"""Streaming benchmarks on the real broker: worker throughput, decision latency, memory.

Run with ``make bench-stream`` (starts the local broker unless one runs). Writes
``benchmarks/results/stream.json``.

- Throughput: a backlog of telemetry for 20 rollouts is read (a) by a bare aiokafka consumer
  (raw, and decoding every message with orjson) and (b) by one worker process, from the same
  topic in the same run; the worker's rate is taken from its own event counter between its
  last reading below 10 % of the backlog and its first at or above 90 %, so start-up and
  recovery are excluded. Batched (50 events per
  message) and single-event messages.
- Decision latency: 50k events/s of background telemetry plus 20 live rollouts (100 events/s
  each, event time = wall time, 1 s ticks, 5 s stages); latency = when the decision was read
  from the decisions topic minus its event time (the tipping event is produced at or after
  that time, so this over-estimates by at most the events' spacing).
- Memory: worker RSS with 1,000 concurrent rollouts after 60 s of their telemetry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.error import URLError

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.speed import write_jsonl
from canarystream.contracts.codec import decode_decision
from canarystream.contracts.topics import DECISIONS_TOPIC, TELEMETRY_TOPIC
from canarystream.kafka.admin import broker_ready
from canarystream.kafka.connection import LOCAL_BOOTSTRAP
from canarystream.kafka.publisher import EventPublisher
from tests.support.broker import Stack

RESULTS = Path(__file__).parent / "results"


def _rate_between_marks(worker: Any, total: int, messages: int) -> float:
    """Events per second the worker applied between its last reading below 10 % of the
    backlog (or its first reading) and its first at or above 90 % (readings every 0.25 s;
    messages are equal-sized).

    The two readings always differ, even when the worker's counter jumps across both marks
    between two readings (its reader of undelivered offsets counts a whole range at once).
    """
    below: tuple[float, float] | None = None  # (time, events): the start of the interval
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        done = worker.telemetry_consumed() * total / messages
        now = time.perf_counter()
        if done >= 0.9 * total:
            if below is None:
                raise SystemExit("the worker passed 90 % of the backlog before a first reading")
            return (done - below[1]) / (now - below[0])
        if below is None or done < 0.1 * total:  # the first reading, if none is below 10 %
            below = (now, done)
        time.sleep(0.25)  # each scrape of /metrics costs the worker CPU
    consumed = worker.telemetry_consumed()
    raise SystemExit(f"the worker consumed {consumed:.0f} of {messages} messages")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def bare_read(
    stack: Stack,
    topic: str,
    partitions: int,
    count: Callable[[bytes], int] | None = None,
    **consumer_options: Any,
) -> tuple[float, int]:
    """Seconds for a bare consumer to read ``topic``'s backlog, and what it read: messages,
    or the sum of ``count`` over their values (what decoding them yields)."""
    consumer = AIOKafkaConsumer(
        **stack.connection.client_kwargs(),
        group_id=None,
        auto_offset_reset="earliest",
        **consumer_options,
    )
    await consumer.start()
    try:
        consumer._client.add_topic(topic)
        await consumer._client.force_metadata_update()
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        total = sum((await consumer.end_offsets(assigned)).values())
        seen = counted = 0
        started = time.perf_counter()
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in batches.values():
                seen += len(messages)
                if count is not None:
                    for message in messages:
                        counted += count(message.value)
        return time.perf_counter() - started, seen if count is None else counted
    finally:
        await consumer.stop()


def _events_in(value: bytes) -> int:
    """Events in one telemetry message: a JSON array of them, or one."""
    decoded = orjson.loads(value)
    return len(decoded) if type(decoded) is list else 1


async def _bare(stack: Stack, decode: bool) -> tuple[float, int]:
    """Seconds for a bare consumer to read the telemetry backlog; events (or messages) read."""
    topic = stack.topic(TELEMETRY_TOPIC)
    return await bare_read(stack, topic, 12, _events_in if decode else None)


def throughput(bootstrap: str, workdir: Path, *, batch: int, minutes: int) -> dict[str, Any]:
    path = workdir / f"backlog-{batch}.jsonl"
    write_jsonl(path, rollouts=20, rate_total=100.0, minutes=minutes)
    events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    starts = [e for e in events if e["type"] == "deployment_started"]
    telemetry = [e for e in events if e["type"] != "deployment_started"]
    stack = Stack(bootstrap, workdir / f"tp-{batch}")
    stack.workdir.mkdir(parents=True, exist_ok=True)
    try:
        worker = stack.start_worker("announce")
        stack.produce(starts)
        stack.wait_for(lambda: len(worker.get_json("/rollouts/")["rollouts"]) == len(starts))
        worker.kill(signal.SIGTERM)
        messages = stack.produce(telemetry, batch=batch)
        bare_raw_s, read = asyncio.run(_bare(stack, decode=False))
        bare_decode_s, decoded = asyncio.run(_bare(stack, decode=True))
        assert read == messages and decoded == len(telemetry), (read, messages, decoded)

        worker = stack.start_worker("measure")
        total = len(telemetry)
        worker_rate = _rate_between_marks(worker, total, messages)
        rss = _rss_mb(worker.process.pid)
        # Every message must be applied, including any Faust skipped (read again).
        stack.wait_for(lambda: worker.telemetry_consumed() >= messages, 120, "every message")
        gaps = worker.metric("canarystream_offset_gap_messages_total")
    finally:
        stack.stop()
    return {
        "events_per_message": batch,
        "events": total,
        "messages": messages,
        "bare_raw_events_per_s": round(total / bare_raw_s),
        "bare_decode_events_per_s": round(total / bare_decode_s),
        "worker_events_per_s": round(worker_rate),
        "ratio_worker_to_bare_raw": round(worker_rate * bare_raw_s / total, 3),
        "ratio_worker_to_bare_decode": round(worker_rate * bare_decode_s / total, 3),
        "worker_rss_mb": round(rss),
        "messages_read_again_for_offset_gaps": round(gaps),
    }


_LATENCY_POLICY = """
name: bench-fast
tick: 1
baseline_mode: paired
promote_confidence: 0.9
stages:
  - {traffic_percent: 10, min_duration: 5, min_samples: 50}
  - {traffic_percent: 30, min_duration: 5, min_samples: 50}
  - {traffic_percent: 60, min_duration: 5, min_samples: 50}
checks:
  - {kind: error_rate, advance_abs_margin: 0.02}
  - {kind: latency, quantile: 0.9, tolerance: 0.1, advance_tolerance: 0.5}
"""


async def _latency_run(
    stack: Stack, *, seconds: float, background_rate: int, rollouts: int, rollout_rate: int
) -> dict[str, Any]:
    rng = random.Random(5)
    now = time.time()
    background = [
        orjson.dumps(
            [
                {
                    "type": "request",
                    "ts": now,
                    "service": f"bg-{k}",
                    "version": "v1",
                    "latency_ms": 20.0 + i,
                    "status": 200,
                }
                for i in range(50)
            ]
        )
        for k in range(200)
    ]
    latencies: list[float] = []
    produced_background = 0
    signed_as = stack.keys.signed_as("deployer")  # the worker obeys signed announcements only
    async with EventPublisher(stack.connection, linger_ms=2, signed_as=signed_as) as publisher:
        consumer = AIOKafkaConsumer(
            stack.topic(DECISIONS_TOPIC),
            **stack.connection.client_kwargs(),
            group_id=None,
            auto_offset_reset="latest",
        )
        await consumer.start()
        stop = asyncio.Event()

        async def read_decisions() -> None:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                read_at = time.time()
                for messages in batches.values():
                    for message in messages:
                        decision = decode_decision(message.value)
                        latencies.append(read_at - decision.ts)

        reader = asyncio.create_task(read_decisions())
        await asyncio.sleep(1.0)  # the reader is positioned at the end
        started = time.time()
        await publisher.send(
            [
                {
                    "type": "deployment_started",
                    "ts": started,
                    "deployment": f"lat-{i}",
                    "service": f"lat-{i}",
                    "baseline_version": "v1",
                    "canary_version": "v2",
                    "policy": "bench-fast",
                }
                for i in range(rollouts)
            ]
        )
        step = 0.02
        tick = started
        producer = publisher.producer
        telemetry_topic = stack.topic(TELEMETRY_TOPIC)
        while (tick := tick + step) < started + seconds:
            await asyncio.sleep(max(tick - time.time(), 0))
            for k in range(int(background_rate * step / 50)):
                value = background[(produced_background + k) % len(background)]
                await producer.send(telemetry_topic, value, key=f"bg-{k % 200}".encode())
            produced_background += int(background_rate * step / 50)
            ts = time.time()
            events = []
            for i in range(rollouts):
                for j in range(int(rollout_rate * step)):
                    events.append(
                        {
                            "type": "request",
                            "ts": ts,
                            "service": f"lat-{i}",
                            "version": "v2" if j % 2 else "v1",
                            "latency_ms": rng.lognormvariate(3.0, 0.4),
                            "status": 500 if rng.random() < 0.01 else 200,
                        }
                    )
            await publisher.send(events, batch=50)
        elapsed = time.time() - started
        await asyncio.sleep(3.0)
        stop.set()
        await reader
        await consumer.stop()
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(int(q * len(latencies)), len(latencies) - 1)], 3)

    return {
        "seconds": round(elapsed, 1),
        "background_events_per_s_target": background_rate,
        "background_events_per_s_achieved": round(produced_background * 50 / elapsed),
        "rollouts": rollouts,
        "rollout_events_per_s_each": rollout_rate,
        "decisions": len(latencies),
        "latency_p50_s": pct(0.5),
        "latency_p90_s": pct(0.9),
        "latency_p99_s": pct(0.99),
        "latency_max_s": round(latencies[-1], 3),
    }


def latency(bootstrap: str, workdir: Path, seconds: float) -> dict[str, Any]:
    policy = workdir / "bench-fast.yaml"
    policy.write_text(_LATENCY_POLICY)
    stack = Stack(bootstrap, workdir / "latency")
    stack.workdir.mkdir(parents=True, exist_ok=True)
    try:
        stack.start_worker("w", "--policy", str(policy))
        return asyncio.run(
            _latency_run(
                stack, seconds=seconds, background_rate=50_000, rollouts=20, rollout_rate=100
            )
        )
    finally:
        stack.stop()


def memory(bootstrap: str, workdir: Path, rollouts: int) -> dict[str, Any]:
    stack = Stack(bootstrap, workdir / "memory")
    stack.workdir.mkdir(parents=True, exist_ok=True)
    try:
        worker = stack.start_worker("w")
        idle = _rss_mb(worker.process.pid)
        path = workdir / "memory.jsonl"
        write_jsonl(path, rollouts=rollouts, rate_total=4.0, minutes=1)
        events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        starts = [e for e in events if e["type"] == "deployment_started"]
        stack.produce(starts)
        stack.wait_for(
            lambda: len(worker.get_json("/rollouts/")["rollouts"]) == rollouts, timeout=300
        )
        telemetry = [e for e in events if e["type"] != "deployment_started"]
        messages = stack.produce(telemetry, batch=20)
        stalls = [0]  # scrapes of /metrics that timed out (5 s) while the worker was busy

        def consumed() -> float:
            try:
                return worker.telemetry_consumed()
            except (TimeoutError, URLError):
                stalls[0] += 1
                return -1.0

        stack.wait_for(lambda: consumed() >= messages, timeout=300)
        time.sleep(2)
        return {
            "rollouts": rollouts,
            "events": len(events),
            "metrics_scrapes_timed_out": stalls[0],
            "worker_rss_idle_mb": round(idle),
            "worker_rss_mb": round(_rss_mb(worker.process.pid)),
        }
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=20, help="Backlog length (event time).")
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--rollouts", type=int, default=1000, help="Memory: concurrent rollouts.")
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", LOCAL_BOOTSTRAP)
    if not broker_ready(bootstrap):
        raise SystemExit(f"no broker at {bootstrap}: run `canarystream kafka up` first")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        result = {
            "machine": {
                "cpu": _cpu(),
                "cores": os.cpu_count(),
                "python": platform.python_version(),
            },
            "throughput": [
                throughput(bootstrap, workdir, batch=50, minutes=args.minutes),
                throughput(bootstrap, workdir, batch=1, minutes=max(args.minutes // 4, 1)),
            ],
            "latency": latency(bootstrap, workdir, args.latency_seconds),
            "memory": memory(bootstrap, workdir, args.rollouts),
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stream.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
