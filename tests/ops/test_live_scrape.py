"""A real Prometheus scrapes a worker and an actuator through a rollout: both ``/metrics``
pass ``promtool check metrics``, the alert rules load, and every query of every dashboard
panel returns data through Prometheus's HTTP API."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from canarystream.contracts.topics import DECISIONS_TOPIC, TELEMETRY_TOPIC
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.scenario import scenario_from_mapping
from tests.ops.catalog import ALERTS, require_tool
from tests.ops.test_rules_and_dashboard import dashboard_queries
from tests.support.broker import Stack
from tests.support.services import free_ports, stop, wait_until_listening

pytestmark = pytest.mark.kafka

#: What the dashboard's template variables stand for in the test.
VARIABLES = {"${deployment}": ".*", "$deployment": ".*", "$__rate_interval": "1m"}
SCRAPE = "1s"
#: Short stages at 1 s ticks: a hold, then an advance, within 40 s of event time.
POLICY = {
    "name": "ops",
    "tick": "1s",
    "baseline_mode": "stable",
    "stages": [
        {"traffic_percent": share, "min_duration": "10s", "min_samples": 30}
        for share in (10, 20, 30, 40, 50)
    ],
    "checks": [
        {"kind": "error_rate", "tolerance": 1.5, "advance_abs_margin": 0.1},
        {"kind": "latency", "name": "latency-p50", "quantile": 0.5},
    ],
    "guards": {"baseline_drift": {"enabled": False}, "sample_ratio": {"settle": "3s"}},
}


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    explain: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{explain()}")


class Prometheus:
    """A Prometheus server of the test, scraping ``targets`` (job -> port) every second."""

    def __init__(self, binary: str, workdir: Path, targets: dict[str, int]) -> None:
        (port,) = free_ports(1)
        config = {
            "global": {"scrape_interval": SCRAPE, "evaluation_interval": SCRAPE},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}
                for job, target in targets.items()
            ],
        }
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        self.url = f"http://127.0.0.1:{port}"
        argv = [
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        wait_until_listening(self.process, port, self.log)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` gives now."""
        found = _get(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        assert found["status"] == "success", found
        return list(found["data"]["result"])

    def has(self, expr: str) -> bool:
        return bool(self.query(expr))


@contextmanager
def _actuator(stack: Stack, workdir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "canarystream", "actuate", "memory", "--service", "*"]
    argv += ["--name", "ops", "--start-from", "earliest", "--metrics-port", str(port)]
    log = workdir / "actuator.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, env=stack.actuator_env(), stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        stop(process)


def _lint(promtool: str, exposition: str) -> str:
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr


def _substitute(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_prometheus_scrapes_a_worker_and_an_actuator_and_every_panel_has_data(
    stack: Stack, tmp_path: Path
) -> None:
    promtool, binary = require_tool("promtool"), require_tool("prometheus")
    (actuator_port,) = free_ports(1)
    with _actuator(stack, tmp_path, actuator_port) as actuator:  # starts while the worker does
        worker = stack.start_worker()
        now = time.time()
        scenario = scenario_from_mapping(
            {"deployment": "shop-1", "service": "shop", "policy": POLICY}
        ).override(rps=40, duration="40s", start_ts=now - 60)
        events = list(simulate([scenario], seed=5))
        starts = [e for e in events if e["type"] == "deployment_started"]
        telemetry = [e for e in events if e["type"] != "deployment_started"]
        metrics = f"http://127.0.0.1:{actuator_port}/metrics"
        _until(lambda: actuator.poll() is None and bool(_text(metrics)), 45, "the actuator")
        jobs = {"canarystream-worker": worker.port, "canarystream-actuator": actuator_port}
        prometheus = Prometheus(binary, tmp_path, jobs)
        try:
            _until(lambda: len(prometheus.query("up == 1")) == 2, 20, "both targets to be scraped")
            # First the announcement and its decision, carried out and scraped before the
            # telemetry's decisions, so that rates over the window see an increase.
            stack.produce(starts)
            _until(
                lambda: prometheus.has('canarystream_actuations_total{status="applied"} >= 1'),
                30,
                "the first actuation to be scraped",
            )
            time.sleep(2.5)  # two more scrapes
            stack.produce(telemetry)
            stack.produce_raw(TELEMETRY_TOPIC, [b'{"type": "request", "ts": '], key=b"shop")
            stack.produce_raw(DECISIONS_TOPIC, [b"not a decision"], key=b"shop")

            def explain() -> str:
                decisions = [raw[:120] for raw in stack.read(DECISIONS_TOPIC)]
                return (
                    f"decisions: {decisions}\nactuator:\n{_text(metrics)}\n"
                    f"{(tmp_path / 'actuator.log').read_text()}\nworker:\n{worker.tail(30)}\n"
                    + "\n".join(
                        line
                        for line in _text(worker.url("/metrics")).splitlines()
                        if line.startswith("canarystream_")
                        and "_created" not in line
                        and "faust" not in line
                    )
                )

            applied = 'sum(canarystream_actuations_total{status="applied"}) >= 2'
            _until(lambda: prometheus.has(applied), 60, "the second actuation", explain)
            _until(
                lambda: (
                    prometheus.has("canarystream_invalid_events_total >= 1")
                    and prometheus.has("canarystream_actuation_rejected_total >= 1")
                ),
                20,
                "the dead letter and the refused decision to be scraped",
            )
            time.sleep(2.5)

            empty = []
            for title, expr in dashboard_queries():
                result = prometheus.query(_substitute(expr))
                values = [float(sample["value"][1]) for sample in result]
                if not any(not math.isnan(v) for v in values):
                    empty.append(f"{title}: {expr} -> {result}")
            assert not empty, "panels without data:\n" + "\n".join(empty)

            rules = _get(f"{prometheus.url}/api/v1/rules")["data"]["groups"]
            loaded = [rule for group in rules for rule in group["rules"]]
            written = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
            assert {rule["name"] for rule in loaded} == {rule["alert"] for rule in written}
            assert all(rule["health"] == "ok" for rule in loaded), loaded
            firing = prometheus.query('ALERTS{alertstate="firing"}')
            assert not [a for a in firing if a["metric"]["alertname"].endswith("Down")], firing

            for name, url in (
                ("worker", worker.url("/metrics")),
                ("actuator", metrics),
            ):
                exposition = _text(url)
                assert "canarystream_" in exposition
                assert _lint(promtool, exposition) == "", f"{name}: {_lint(promtool, exposition)}"
        finally:
            stop(prometheus.process)
    assert worker.alive()
