"""End to end through a real OpenTelemetry Collector: services instrumented with the
OpenTelemetry Python SDK, judged and actuated.

Two rollouts run side by side, each behind its own HAProxy backend of two tiny services
(``deploy/e2e/app.py --otlp``: baseline v1, canary v2). The services send nothing to Kafka
themselves: each request is a SERVER span (``http.route``, ``http.response.status_code``) of a
resource naming ``service.version``, exported by the SDK as OTLP/HTTP to a Collector built from
its Go modules (``deploy/otelcol``), whose Kafka exporter writes ``otlp_proto`` batches to the
broker; ``canarystream bridge otlp`` turns them into telemetry for the worker, and one
``canarystream actuate haproxy`` per backend carries out the worker's decisions.

* ``healthy``: the canary is as good as the baseline (5 % errors each, which the policy's error
  check needs) and is walked 10 -> 30 -> 60 -> 100 % (``deploy/e2e/policy.yaml``);
* ``regressed``: the canary answers 30 % of requests with 500; it is rolled back, HAProxy
  sends everything to the baseline again, and the rollback is verified.

Every process, the Collector included, is stopped at the end. Missing HAProxy, Kafka or the
Collector (Go, or its build) skips the test locally and fails it under CI (``CI=true``).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from canarystream.actuators.routers.haproxy import HAProxyConfig, HAProxyRouter
from canarystream.contracts.actuation import ActuationStatus
from canarystream.contracts.decision import Action, Phase, Verdict
from canarystream.contracts.signing import Signer
from canarystream.principals import write_access_file
from tests.support.broker import Stack
from tests.support.collector import Collector
from tests.support.drill import (
    E2E,
    Processes,
    Rollout,
    actuation_reports,
    both_ended,
    genuine_decisions,
    haproxy_config,
    listening_port,
    metrics_text,
    serves_metrics,
    started_events,
    wait_until,
)
from tests.support.keys import GRANTS
from tests.support.services import free_ports, require_binary, wait_until_listening

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.otelcol, pytest.mark.timeout(300)]

RATE = 40.0  # requests/s per service
BACKGROUND = 0.05  # error rate of every version (the policy's error check needs some errors)
ERROR_RATE = 0.3  # of the regressed canary
TIMEOUT = 150.0  # for both rollouts to finish once announced


def _resources(stack: Stack) -> set[tuple[str, str, str]]:
    """(service.name, service.version, telemetry.sdk.language) of every resource the Collector
    wrote to the traces topic."""
    found: set[tuple[str, str, str]] = set()
    for raw in stack.read("otlp_spans"):
        request = ExportTraceServiceRequest.FromString(raw)
        for spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in spans.resource.attributes}
            found.add(
                (
                    attributes.get("service.name", ""),
                    attributes.get("service.version", ""),
                    attributes.get("telemetry.sdk.language", ""),
                )
            )
    return found


def _counter(metrics: str, name: str) -> float:
    return sum(
        float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name + " ")
    )


def test_sdk_spans_through_a_collector_promote_a_healthy_canary_and_roll_back_a_regressed_one(
    stack: Stack, collector: Collector, tmp_path: Path
) -> None:
    haproxy = require_binary("haproxy")
    began = time.time()
    signer = Signer.ed25519(stack.keys.private_pem("worker"))
    tag = uuid.uuid4().hex[:8]
    rollouts = [
        Rollout("healthy", f"otel-shop-{tag}", f"otel-shop-{tag}-v2", BACKGROUND),
        Rollout("regressed", f"otel-cart-{tag}", f"otel-cart-{tag}-v2", ERROR_RATE),
    ]
    healthy, regressed = rollouts
    processes = Processes(tmp_path)
    timeline: list[str] = []
    front_healthy, front_regressed, admin, bridge_port, *metric_ports = free_ports(6)
    fronts = {"healthy": front_healthy, "regressed": front_regressed}
    # The actuators sign what they report routed (traffic_shifted), as the actuator principal,
    # whom the worker's access file allows to: nothing reaches the dead-letter topic.
    grants = [*GRANTS, {"principals": ["actuator"], "actions": ["route"]}]
    write_access_file(
        stack.access_file,
        stack.keys.pairs.values(),
        [{"services": ["*"], **grant} for grant in grants],
    )
    actuator_env = {**stack.actuator_env(), **stack.keys.principal_env("actuator")}
    try:
        stack.start_worker("worker", "--policy", str(E2E / "policy.yaml"))
        bridge = [sys.executable, "-m", "canarystream", "bridge", "otlp"]
        bridge += ["--start-from", "earliest"]
        bridge += ["--traces-topic", collector.traces_topic]
        bridge += ["--metrics-topic", collector.metrics_topic]
        processes.start("bridge", [*bridge, "--metrics-port", str(bridge_port)], stack.env)
        wait_until(lambda: serves_metrics(bridge_port), 60, "the bridge's metrics", processes)
        timeline.append(f"{time.time() - began:6.1f}s worker, Collector and bridge up")

        # -- services (OTLP to the Collector only), proxy, actuators, load -------------
        for rollout in rollouts:
            for version, errors in (("v1", BACKGROUND), ("v2", rollout.error_rate)):
                name = f"{rollout.name}-{version}"
                argv = [sys.executable, str(E2E / "app.py"), "--service", rollout.service]
                argv += ["--version", version, "--error-rate", str(errors)]
                argv += ["--otlp", collector.endpoint]
                processes.start(name, argv, stack.env)
        for rollout in rollouts:
            for version in ("v1", "v2"):
                rollout.ports[version] = listening_port(processes, f"{rollout.name}-{version}")
        config = tmp_path / "haproxy.cfg"
        config.write_text(haproxy_config(rollouts, fronts, admin))
        proxy = processes.start("haproxy", [haproxy, "-f", str(config), "-db"], stack.env)
        for port in (*fronts.values(), admin):
            wait_until_listening(proxy, port, tmp_path / "haproxy.log")
        for rollout, port in zip(rollouts, metric_ports, strict=True):
            argv = [sys.executable, "-m", "canarystream", "actuate", "haproxy"]
            argv += ["--socket", f"127.0.0.1:{admin}", "--backend", rollout.name]
            argv += ["--baseline-server", "baseline", "--canary-server", "canary"]
            argv += ["--service", rollout.service, "--name", f"otel-{rollout.name}"]
            argv += ["--start-from", "earliest", "--metrics-port", str(port)]
            processes.start(f"actuate-{rollout.name}", argv, actuator_env)
        for port in metric_ports:
            wait_until(lambda p=port: serves_metrics(p), 60, "an actuator's metrics", processes)
        timeline.append(f"{time.time() - began:6.1f}s proxy, 4 services, 2 actuators up")

        requests_file = tmp_path / "requests.jsonl"
        load = [sys.executable, str(E2E / "loadgen.py"), "--rate", str(RATE)]
        load += ["--duration", "200", "--max-requests", "20000", "--out", str(requests_file)]
        for r in rollouts:
            load += ["--target", f"{r.name}=http://127.0.0.1:{fronts[r.name]}/"]
        processes.start("loadgen", load, stack.env)
        # Baseline traffic through SDK, Collector, Kafka and bridge before the rollouts start.
        wait_until(
            lambda: {(r.service, "v1") for r in rollouts} <= {s[:2] for s in _resources(stack)},
            30,
            "the baselines' spans on the Collector's topic",
            processes,
        )

        # -- the rollouts ------------------------------------------------------------
        announced = time.time()
        stack.produce(started_events(rollouts, announced))
        timeline.append(f"{announced - began:6.1f}s both rollouts announced")

        def ended() -> bool:
            return both_ended([d for _, d in genuine_decisions(stack, signer)], healthy, regressed)

        wait_until(ended, TIMEOUT, "promotion and rollback verification", processes)
        decisions = [d for _, d in genuine_decisions(stack, signer)]

        def all_applied() -> bool:
            seen = {(r.decision_id, r.status) for r in actuation_reports(stack)}
            return all(
                (d.decision_id, ActuationStatus.APPLIED) in seen
                for d in decisions
                if d.action.changes_traffic
            )

        wait_until(all_applied, 30, "HAProxy to apply every traffic change", processes)
        processes.stop("loadgen")
        reports = actuation_reports(stack)
        weights = {
            r.name: asyncio.run(
                HAProxyRouter(
                    HAProxyConfig(
                        address=f"127.0.0.1:{admin}",
                        backend=r.name,
                        baseline_server="baseline",
                        canary_server="canary",
                    )
                ).weights()
            )
            for r in rollouts
        }
        bridge_metrics = metrics_text(bridge_port)
        resources = _resources(stack)
        dead_letters = stack.dead_letters()
    finally:
        processes.stop_all()
        stack.stop()

    # -- what happened -----------------------------------------------------------------
    for d in decisions:
        timeline.append(
            f"{d.ts - began:6.1f}s {d.deployment.split('-')[1]:5} seq {d.seq} "
            f"{d.action.value:24} {d.traffic_percent:5g}%  {d.summary[:90]}"
        )
    spans = _counter(bridge_metrics, 'canarystream_otlp_spans_total{outcome="request"}')
    timeline.append(
        f"{spans:.0f} SDK spans became requests through the Collector; "
        f"test took {time.time() - began:.0f} s"
    )
    (tmp_path / "timeline.txt").write_text("\n".join(timeline) + "\n")
    print("\n".join(timeline))

    # The telemetry came from the SDK through the Collector: both versions of both services.
    assert {(r.service, v, "python") for r in rollouts for v in ("v1", "v2")} <= resources
    assert spans >= 1000, timeline
    assert not dead_letters, dead_letters

    applied = [r for r in reports if r.status is ActuationStatus.APPLIED]

    # Healthy: 10 -> 30 -> 60 -> 100 %, each followed by HAProxy.
    mine = [d for d in decisions if d.deployment == healthy.deployment]
    moves = [d for d in mine if d.action.changes_traffic]
    assert [d.traffic_percent for d in moves] == [10, 30, 60, 100], timeline
    assert moves[-1].action is Action.PROMOTE and mine[-1].phase is Phase.PROMOTED
    for d in moves:
        (report,) = [r for r in applied if r.decision_id == d.decision_id]
        assert report.traffic_percent_observed == d.traffic_percent, report
    assert weights["healthy"] == (0, 100)

    # Regressed: rolled back before it was promoted, HAProxy back on the baseline, verified.
    mine = [d for d in decisions if d.deployment == regressed.deployment]
    assert not any(d.action is Action.PROMOTE for d in mine), timeline
    (rollback,) = [d for d in mine if d.action is Action.ROLLBACK]
    assert any(r.kind == "error_rate" and r.verdict is Verdict.FAIL for r in rollback.reasons)
    assert mine[-1].action is Action.ROLLBACK_VERIFIED, timeline
    (report,) = [r for r in applied if r.decision_id == rollback.decision_id]
    assert report.traffic_percent_observed == 0.0
    assert weights["regressed"] == (100, 0)
