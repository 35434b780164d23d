"""A real OpenTelemetry Collector for tests: built from its Go modules, OTLP in, Kafka out.

``deploy/otelcol/build.sh`` builds the Collector of ``deploy/otelcol`` (the OTLP receiver, the
batch processor and the Kafka exporter, every module at one pinned release) once and caches
it, as the broker's jars are (under ``~/.cache/canarystream/otelcol``). The session fixture
:func:`otelcol_binary` runs it (a no-op once built); without Go, or when the build fails, the
tests that need the Collector are skipped locally and fail under CI (``CI=true``).

:func:`collector` starts one Collector per test with ``deploy/otelcol/collector.yaml``: OTLP
over HTTP on a free loopback port, exported in ``otlp_proto`` to the stack's broker, into
``otlp_spans`` and ``otlp_metrics`` behind the stack's topic prefix (created beforehand, so
that the bridge and the exporter agree on them at once). It is stopped at the end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from tests.support.broker import Stack
from tests.support.services import free_port, require_service, stop, wait_until_listening

__all__ = ["BUILD", "CONFIG", "Collector", "collector", "otelcol_binary", "run_collector"]

OTELCOL = Path(__file__).resolve().parents[2] / "deploy/otelcol"
BUILD = OTELCOL / "build.sh"
CONFIG = OTELCOL / "collector.yaml"
BUILD_TIMEOUT = 1800.0  # a first build on one core, modules downloaded from the proxy


@dataclass(frozen=True)
class Collector:
    """A running Collector: where services send OTLP, and where it writes."""

    endpoint: str  # OTLP/HTTP base URL; spans go to {endpoint}/v1/traces
    traces_topic: str  # full names (the stack's prefix included)
    metrics_topic: str
    log: Path


@pytest.fixture(scope="session")
def otelcol_binary() -> Path:
    """The Collector binary, built once (``deploy/otelcol/build.sh``)."""
    try:
        built = subprocess.run(
            ["bash", str(BUILD)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        require_service("the OpenTelemetry Collector", f"{BUILD} took over {exc.timeout:g} s")
    lines = built.stdout.strip().splitlines()
    if built.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        require_service(
            "the OpenTelemetry Collector",
            f"{BUILD} failed (exit {built.returncode}; it needs Go and the Go module proxy):\n"
            f"{built.stderr[-3000:]}",
        )
    return Path(lines[-1])


@pytest.fixture
def collector(otelcol_binary: Path, stack: Stack) -> Iterator[Collector]:
    """A Collector of this test, exporting to the stack's broker under the stack's prefix."""
    with run_collector(otelcol_binary, stack, stack.workdir) as running:
        yield running


@contextmanager
def run_collector(binary: Path, stack: Stack, workdir: Path) -> Iterator[Collector]:
    traces, metrics = stack.topic("otlp_spans"), stack.topic("otlp_metrics")
    asyncio.run(_create_topics(stack, [traces, metrics]))
    port = free_port()
    env = {
        **os.environ,
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{port}",
        "OTELCOL_KAFKA_BROKER": stack.bootstrap.split(",")[0],
        "OTELCOL_TRACES_TOPIC": traces,
        "OTELCOL_METRICS_TOPIC": metrics,
    }
    log = workdir / "otelcol.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(binary), "--config", f"file:{CONFIG}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_until_listening(process, port, log)
        yield Collector(f"http://127.0.0.1:{port}", traces, metrics, log)
    finally:
        stop(process)


async def _create_topics(stack: Stack, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(**stack.connection.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(name, 3, 1) for name in names if name not in existing]
        if wanted:
            with suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()
