"""End to end: real Kafka, the worker, HAProxy, Unleash and every actuator, under real load.

Two rollouts run side by side, each behind its own HAProxy backend of two tiny services
(``deploy/e2e/app.py``: baseline v1, canary v2, one telemetry event per request):

* ``healthy``: the canary is as good as the baseline and is walked 10 -> 30 -> 60 -> 100 %
  (``deploy/e2e/policy.yaml``); HAProxy's weights and the Unleash toggle follow each stage;
* ``regressed``: the canary answers 30 % of requests with 500 (every version 5 %, as
  the policy's error check needs some errors to show no harm); it is rolled back, its
  compensation hooks (a command and a webhook) run once, at least 99.9 % of the requests sent
  after the rollback was applied reach the baseline, and the rollback is verified.

The worker signs decisions (Ed25519, with a key made for the test); decisions forged while
the rollouts run (another key, a tampered real decision, an unsigned one; each with the seq
the worker would use next) are rejected by every actuator and change nothing -- nor may they
make the worker skip a genuine decision: each deployment's signed decisions must keep seq 0,
1, 2... without a gap.
Every process is stopped at the end, whether the test passes or not. Missing HAProxy, Unleash
or Kafka skips the test locally and fails it under CI (``CI=true``).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from canarystream.actuators.flags.unleash import UnleashConfig, UnleashProvider
from canarystream.actuators.routers.haproxy import HAProxyConfig, HAProxyRouter
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.codec import decode_decision, encode_decision
from canarystream.contracts.decision import Action, Decision, Phase, decision_id_for
from canarystream.contracts.signing import SIGNATURE_HEADER, Signer, generate_ed25519_key
from canarystream.contracts.topics import DECISIONS_TOPIC
from tests.support.broker import Stack
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
from tests.support.services import free_ports, require_binary, serve_http, wait_until_listening
from tests.support.unleash import UnleashService

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(300)]

RATE = 40.0  # requests/s per service
BACKGROUND = 0.05  # error rate of every version (the policy's error check needs some errors)
ERROR_RATE = 0.3  # of the regressed canary
TIMEOUT = 150.0  # for both rollouts to finish once announced


@dataclass
class Webhook:
    url: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def webhook_server() -> Iterator[Webhook]:
    """A local compensation webhook that records each POST and answers 204."""
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            hook.calls.append({"path": self.path, "body": body, "headers": headers})
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_http(Handler) as base:
        hook.url = f"{base}/compensate"
        yield hook


def _publish(stack: Stack, messages: list[tuple[bytes, bytes, str | None]]) -> None:
    """``(key, value, signature)`` messages onto the decisions topic, as an attacker could."""

    async def run() -> None:
        producer = AIOKafkaProducer(**stack.connection.client_kwargs())
        await producer.start()
        try:
            for key, value, signature in messages:
                headers = [] if signature is None else [(SIGNATURE_HEADER, signature.encode())]
                await producer.send(stack.topic(DECISIONS_TOPIC), value, key=key, headers=headers)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def _forged(decision: Decision, **update: Any) -> Decision:
    seq = decision.seq + 1  # what the worker would publish next
    action = update.get("action", decision.action)
    return decision.model_copy(
        update={
            "seq": seq,
            "decision_id": decision_id_for(decision.deployment, seq, action.value),
            "summary": "forged",
            **update,
        }
    )


def test_healthy_canary_is_promoted_and_regressed_one_rolled_back(
    stack: Stack, unleash: UnleashService, tmp_path: Path
) -> None:
    haproxy = require_binary("haproxy")
    began = time.time()
    signer = Signer.ed25519(stack.keys.private_pem("worker"))
    tag = uuid.uuid4().hex[:8]
    rollouts = [
        Rollout("healthy", f"e2e-shop-{tag}", f"e2e-shop-{tag}-v2", BACKGROUND),
        Rollout("regressed", f"e2e-cart-{tag}", f"e2e-cart-{tag}-v2", ERROR_RATE),
    ]
    healthy, regressed = rollouts
    actuator_env = {
        **stack.actuator_env(),
        "CANARYSTREAM_UNLEASH_ADMIN_TOKEN": unleash.admin_token,
    }
    processes = Processes(tmp_path)
    marker = tmp_path / "compensated"
    restore_schema = [  # the rollback's command hook, and the one argv the hook runner allows
        sys.executable,
        "-c",
        "import os, sys; open(sys.argv[1], 'a').write("
        "os.environ['CANARYSTREAM_DEPLOYMENT'] + '\\n')",
        str(marker),
    ]
    timeline: list[str] = []
    try:
        with webhook_server() as webhook:
            stack.start_worker("worker", "--policy", str(E2E / "policy.yaml"))
            timeline.append(f"{time.time() - began:6.1f}s worker up")

            # -- services, proxy, actuators, load ---------------------------------------
            for rollout in rollouts:
                for version, errors in (("v1", BACKGROUND), ("v2", rollout.error_rate)):
                    name = f"{rollout.name}-{version}"
                    argv = [sys.executable, str(E2E / "app.py"), "--service", rollout.service]
                    argv += ["--version", version, "--error-rate", str(errors)]
                    processes.start(name, argv, stack.env)
            for rollout in rollouts:
                for version in ("v1", "v2"):
                    name = f"{rollout.name}-{version}"
                    rollout.ports[version] = listening_port(processes, name)
            front_healthy, front_regressed, admin, *metric_ports = free_ports(7)
            fronts = {"healthy": front_healthy, "regressed": front_regressed}
            config = tmp_path / "haproxy.cfg"
            config.write_text(haproxy_config(rollouts, fronts, admin))
            proxy = processes.start("haproxy", [haproxy, "-f", str(config), "-db"], stack.env)
            for port in (*fronts.values(), admin):
                wait_until_listening(proxy, port, tmp_path / "haproxy.log")

            actuate = [sys.executable, "-m", "canarystream", "actuate"]
            common = ["--start-from", "earliest"]
            actuators = {
                "haproxy-healthy": [
                    *("haproxy", "--socket", f"127.0.0.1:{admin}", "--backend", "healthy"),
                    *("--baseline-server", "baseline", "--canary-server", "canary"),
                    *("--service", healthy.service, "--name", "e2e-healthy"),
                ],
                "haproxy-regressed": [
                    *("haproxy", "--socket", f"127.0.0.1:{admin}", "--backend", "regressed"),
                    *("--baseline-server", "baseline", "--canary-server", "canary", "--drain"),
                    *("--service", regressed.service, "--name", "e2e-regressed"),
                ],
                "unleash": ["unleash", "--url", unleash.url, "--name", "e2e", "--service", "*"],
                "hooks": [
                    *("hooks", "--allow-program", shlex.join(restore_schema), "--name", "e2e"),
                    *("--service", regressed.service),
                    *("--allow-url-prefix", webhook.url.rsplit("/", 1)[0] + "/"),
                ],
            }
            metrics_of = dict(zip(actuators, metric_ports, strict=False))
            for name, args in actuators.items():
                argv = [*actuate, *args, *common, "--metrics-port", str(metrics_of[name])]
                processes.start(name, argv, actuator_env)
            for name, port in metrics_of.items():
                wait_until(
                    lambda p=port: serves_metrics(p), 60, f"{name} to serve metrics", processes
                )
            timeline.append(f"{time.time() - began:6.1f}s proxy, 4 services, 4 actuators up")

            requests_file = tmp_path / "requests.jsonl"
            targets = [f"{r.name}=http://127.0.0.1:{fronts[r.name]}/" for r in rollouts]
            load = [sys.executable, str(E2E / "loadgen.py"), "--rate", str(RATE)]
            load += ["--duration", "200", "--max-requests", "20000", "--out", str(requests_file)]
            load += [a for t in targets for a in ("--target", t)]
            processes.start("loadgen", load, stack.env)
            time.sleep(2.0)  # some baseline traffic before the rollouts start

            # -- the rollouts ----------------------------------------------------------
            announced = time.time()
            hooks = [
                {
                    "name": "restore-schema",
                    "command": restore_schema,
                    "timeout_seconds": 20,
                },
                {"name": "notify", "url": webhook.url, "timeout_seconds": 10},
            ]
            stack.produce(
                started_events(rollouts, announced, {regressed.deployment: {"compensation": hooks}})
            )
            timeline.append(f"{announced - began:6.1f}s both rollouts announced")

            # -- forged decisions while the rollouts run ---------------------------------
            def applied_advance() -> bool:
                return any(
                    r.deployment == healthy.deployment
                    and r.backend == "haproxy"
                    and r.status is ActuationStatus.APPLIED
                    and r.seq >= 1
                    for r in actuation_reports(stack)
                )

            wait_until(applied_advance, TIMEOUT, "the healthy canary's first advance", processes)
            raw, real = next(
                (raw, d)
                for raw, d in reversed(genuine_decisions(stack, signer))
                if d.deployment == healthy.deployment
            )
            wrong_key = _forged(real, action=Action.ROLLBACK, traffic_percent=0.0)
            wrong_key = wrong_key.model_copy(update={"phase": Phase.ROLLED_BACK})
            wrong_value = encode_decision(wrong_key)
            real_share = f'"traffic_percent":{real.traffic_percent}'.encode()
            tampered = raw.replace(real_share, b'"traffic_percent":100.0')
            assert tampered != raw
            unsigned = _forged(
                next(
                    d
                    for _, d in genuine_decisions(stack, signer)
                    if d.deployment == regressed.deployment
                ),
                action=Action.PROMOTE,
                traffic_percent=100.0,
                phase=Phase.PROMOTED,
            )
            _publish(
                stack,
                [
                    (
                        healthy.deployment.encode(),
                        wrong_value,
                        Signer.ed25519(generate_ed25519_key()[0]).sign(wrong_value),
                    ),
                    (healthy.deployment.encode(), tampered, signer.sign(raw)),
                    (regressed.deployment.encode(), encode_decision(unsigned), None),
                ],
            )
            forged_at = time.time()
            timeline.append(f"{forged_at - began:6.1f}s 3 forged decisions injected")

            signature_refusals = {
                "refused: its signature is not valid",
                "refused: it is not signed",
            }

            def rejected() -> list[ActuationReport]:
                return [r for r in actuation_reports(stack) if r.status is ActuationStatus.REJECTED]

            def forgeries_refused() -> list[ActuationReport]:
                return [r for r in rejected() if r.detail in signature_refusals]

            # Every actuator reads every decision and checks its signature before its scope:
            # each of the four refuses each of the three forgeries for its signature.
            wait_until(
                lambda: len(forgeries_refused()) >= 12,
                30,
                "12 rejections of forged decisions",
                processes,
            )
            refused = forgeries_refused()
            per_actuator = Counter(r.actuator for r in refused)
            assert len(per_actuator) == 4 and set(per_actuator.values()) == {3}, per_actuator
            # The other refusals are genuine decisions of a service an actuator does not serve.
            others = [r for r in rejected() if r.detail not in signature_refusals]
            assert all("is not one this actuator acts for" in r.detail for r in others), [
                (r.actuator, r.deployment, r.detail) for r in others
            ]
            unleash_metrics = metrics_text(metrics_of["unleash"])
            bad = 'canarystream_actuation_rejected_total{reason="bad_signature"}'
            nosig = 'canarystream_actuation_rejected_total{reason="unsigned"}'
            assert _sample(unleash_metrics, bad) == 2 and _sample(unleash_metrics, nosig) == 1
            router = HAProxyRouter(
                HAProxyConfig(
                    address=f"127.0.0.1:{admin}",
                    backend="healthy",
                    baseline_server="baseline",
                    canary_server="canary",
                )
            )
            provider = UnleashProvider(
                UnleashConfig(url=unleash.url, admin_token=unleash.admin_token)
            )

            def unchanged() -> bool:
                # The share in force is the one the last genuine decision applied (a genuine
                # advance may land meanwhile), never the forged 0 % or 100 %.
                share = asyncio.run(router.get_share(healthy.deployment))
                flag = asyncio.run(provider.get_share(healthy.deployment))
                last = [
                    r
                    for r in actuation_reports(stack)
                    if r.deployment == healthy.deployment and r.status is ActuationStatus.APPLIED
                ]
                by = {r.backend: r.traffic_percent_requested for r in last}
                return share == by.get("haproxy") and flag == by.get("unleash") and share < 100

            wait_until(unchanged, 10, "the forged decisions to have changed nothing", processes)

            # -- both rollouts to their end ------------------------------------------------
            def ended() -> bool:
                genuine = [d for _, d in genuine_decisions(stack, signer)]
                _assert_gapless(genuine)
                return both_ended(genuine, healthy, regressed)

            wait_until(ended, TIMEOUT, "promotion and rollback verification", processes)
            decisions = [d for _, d in genuine_decisions(stack, signer)]
            genuine = {d.decision_id for d in decisions}

            def all_reported() -> bool:
                # Every genuine decision reported by each actuator that handles it.
                seen = {(r.decision_id, r.backend) for r in actuation_reports(stack)}
                return all(
                    (d.decision_id, backend) in seen
                    for d in decisions
                    if d.deployment in (healthy.deployment, regressed.deployment)
                    for backend in ("haproxy", "unleash", "hooks")
                )

            wait_until(all_reported, 30, "every actuator's report on every decision", processes)
            time.sleep(5.0)  # requests after the rollback, for the share on the baseline
            processes.stop("loadgen")
            reports = actuation_reports(stack)
            final_healthy = asyncio.run(router.weights())
            regressed_router = HAProxyRouter(
                HAProxyConfig(
                    address=f"127.0.0.1:{admin}",
                    backend="regressed",
                    baseline_server="baseline",
                    canary_server="canary",
                )
            )
            final_regressed = asyncio.run(regressed_router.weights())
            drained = asyncio.run(regressed_router.admin_states())["canary"]
            flag_healthy = asyncio.run(provider.get_share(healthy.deployment))
            flag_regressed = asyncio.run(provider.get_share(regressed.deployment))
    finally:
        processes.stop_all()
        stack.stop()

    # -- what happened ---------------------------------------------------------------------
    for d in decisions:
        timeline.append(
            f"{d.ts - began:6.1f}s {d.deployment.split('-')[1]:5} seq {d.seq} "
            f"{d.action.value:24} {d.traffic_percent:5g}%  {d.summary[:90]}"
        )
    requests = [json.loads(line) for line in requests_file.read_text().splitlines() if line]
    # Kept before any assertion, so that a failed run leaves every decision whole (its reasons
    # included) beside the services' logs: an assertion's message is cut short.
    (tmp_path / "decisions.jsonl").write_text(
        "".join(d.model_dump_json() + "\n" for d in decisions)
    )
    (tmp_path / "timeline.txt").write_text("\n".join(timeline) + "\n")

    # Forged decisions were applied nowhere; every genuine one at most once per backend.
    applied = [r for r in reports if r.status is ActuationStatus.APPLIED]
    assert {r.decision_id for r in applied} <= genuine
    per_backend = [(r.decision_id, r.backend, r.deployment) for r in applied]
    assert len(per_backend) == len(set(per_backend))

    # Healthy: 10 -> 30 -> 60 -> 100 %, followed by HAProxy and the Unleash toggle at each stage.
    mine = [d for d in decisions if d.deployment == healthy.deployment]
    moves = [d for d in mine if d.action.changes_traffic]
    assert [d.traffic_percent for d in moves] == [10, 30, 60, 100], timeline
    assert moves[-1].action is Action.PROMOTE and mine[-1].phase is Phase.PROMOTED
    for d in moves:
        for backend in ("haproxy", "unleash"):
            (report,) = [
                r for r in applied if r.decision_id == d.decision_id and r.backend == backend
            ]
            assert report.traffic_percent_observed == d.traffic_percent, report
    assert final_healthy == (0, 100) and flag_healthy == 100.0
    promoted_at = max(r.ts for r in applied if r.decision_id == moves[-1].decision_id)
    after_promotion = [q for q in requests if q["target"] == "healthy" and q["t"] > promoted_at]
    on_canary = sum(q["version"] == "v2" for q in after_promotion)

    # Regressed: rolled back with its hooks run once, then verified; traffic on the baseline.
    mine = [d for d in decisions if d.deployment == regressed.deployment]
    (rollback,) = [d for d in mine if d.action is Action.ROLLBACK]
    assert [h.name for h in rollback.compensation] == ["restore-schema", "notify"]
    assert mine[-1].action is Action.ROLLBACK_VERIFIED, timeline
    by_backend = {r.backend: r for r in applied if r.decision_id == rollback.decision_id}
    assert by_backend.keys() == {"haproxy", "unleash", "hooks"}, reports
    assert by_backend["haproxy"].traffic_percent_observed == 0.0
    assert by_backend["unleash"].traffic_percent_observed == 0.0
    assert by_backend["hooks"].detail.startswith("compensation: 2 hook(s) ran: restore-schema")
    assert marker.read_text() == f"{regressed.deployment}\n"
    (call,) = webhook.calls
    assert decode_decision(call["body"]).decision_id == rollback.decision_id
    assert signer.verifier().verify(call["body"], call["headers"][SIGNATURE_HEADER])
    assert final_regressed == (100, 0) and drained & 0x08 and flag_regressed == 0.0
    rolled_back_at = by_backend["haproxy"].ts
    after = [q for q in requests if q["target"] == "regressed" and q["t"] > rolled_back_at]
    on_baseline = sum(q["version"] == "v1" for q in after)
    timeline.append(
        f"after the rollback: {on_baseline}/{len(after)} requests on the baseline "
        f"({100 * on_baseline / max(len(after), 1):.2f} %); after promotion: "
        f"{on_canary}/{len(after_promotion)} on the canary; "
        f"{len(requests)} requests in all; test took {time.time() - began:.0f} s"
    )
    (tmp_path / "timeline.txt").write_text("\n".join(timeline) + "\n")
    print("\n".join(timeline))
    assert len(after) >= 200, timeline
    assert on_baseline >= 0.999 * len(after), timeline
    assert on_canary >= 0.999 * len(after_promotion), timeline


def _assert_gapless(decisions: list[Decision]) -> None:
    """Each deployment's signed decisions carry seq 0, 1, 2... with no gap: a forged decision
    on the topic must not make the worker skip (or actuators miss) a genuine one."""
    seqs: dict[str, list[int]] = {}
    for d in decisions:
        seqs.setdefault(d.deployment, []).append(d.seq)
    for deployment, got in seqs.items():
        missing = sorted(set(range(max(got) + 1)) - set(got))
        assert not missing, (
            f"{deployment}: genuine decision(s) seq {missing} never published, though later "
            f"ones were ({sorted(got)}): the worker took a forged decision's seq for one it "
            "had published itself and skipped its own (its index of published decisions, "
            "canarystream/streaming/published.py, must only count correctly signed messages)"
        )
