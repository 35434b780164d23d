"""What the end-to-end drills (tests/e2e) share: their processes, HAProxy in front of each
rollout's two versions, and reading back what the worker decided and the actuators did.

A drill starts every peer as a subprocess with a log of its own (:class:`Processes`), waits on
conditions while checking that none of them died (:func:`wait_until`), and reads the decisions
the worker signed (:func:`genuine_decisions`) and the actuators' reports
(:func:`actuation_reports`) from the stack's topics.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canarystream.contracts.actuation import ActuationReport
from canarystream.contracts.codec import decode_decision
from canarystream.contracts.decision import Action, Decision
from canarystream.contracts.signing import SIGNATURE_HEADER, Signer
from canarystream.contracts.topics import ACTUATIONS_TOPIC, DECISIONS_TOPIC
from tests.support.broker import Stack

__all__ = [
    "E2E",
    "Processes",
    "Rollout",
    "actuation_reports",
    "genuine_decisions",
    "haproxy_config",
    "listening_port",
    "metrics_text",
    "raw_decisions",
    "serves_metrics",
    "stop_process",
    "wait_until",
]

E2E = Path(__file__).resolve().parents[2] / "deploy/e2e"


@dataclass
class Rollout:
    """One service behind one HAProxy backend, and its rollout."""

    name: str  # healthy | regressed
    service: str
    deployment: str
    error_rate: float
    ports: dict[str, int] = field(default_factory=dict)  # version -> backend port


class Processes:
    """Every process the test starts, with its log; all stopped at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.running.append((name, process, log))
        return process

    def log(self, name: str) -> str:
        return next(log for n, _, log in self.running if n == name).read_text(errors="replace")

    def check_alive(self) -> None:
        for name, process, log in self.running:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} exited with {process.returncode}:\n{tail}")

    def stop(self, name: str) -> int | None:
        for n, process, _ in self.running:
            if n == name:
                return stop_process(process)
        raise KeyError(name)

    def stop_all(self) -> None:
        for _, process, _ in reversed(self.running):
            stop_process(process)

    def tails(self, lines: int = 15) -> str:
        out = []
        for name, _, log in self.running:
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(out)


def stop_process(process: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM, then SIGKILL after 15 s; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def listening_port(processes: Processes, name: str, timeout: float = 30.0) -> int:
    """The port a ``deploy/e2e/app.py`` process printed (``listening PORT``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check_alive()
        for line in processes.log(name).splitlines():
            if line.startswith("listening "):
                return int(line.split()[1])
        time.sleep(0.1)
    raise AssertionError(f"{name} did not listen in {timeout:g} s:\n{processes.log(name)}")


def haproxy_config(rollouts: list[Rollout], ports: dict[str, int], admin: int) -> str:
    """One frontend and backend per rollout (all traffic on the baseline), and an admin socket."""
    parts = [
        "global",
        f"    stats socket ipv4@127.0.0.1:{admin} level admin",
        "    maxconn 512",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 10s",
        "    timeout server 10s",
        "",
    ]
    for rollout in rollouts:
        parts += [
            f"frontend {rollout.name}",
            f"    bind 127.0.0.1:{ports[rollout.name]}",
            f"    default_backend {rollout.name}",
            "",
            f"backend {rollout.name}",
            "    balance roundrobin",
            # The configuration starts at the baseline: weights live in memory only.
            f"    server baseline 127.0.0.1:{rollout.ports['v1']} weight 100",
            f"    server canary 127.0.0.1:{rollout.ports['v2']} weight 0",
            "",
        ]
    return "\n".join(parts)


def started_events(
    rollouts: list[Rollout], ts: float, extra: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The ``deployment_started`` of each rollout (v1 to v2, the ``e2e`` policy) at ``ts``,
    with ``extra`` fields by deployment."""
    return [
        {
            "type": "deployment_started",
            "ts": ts,
            "deployment": r.deployment,
            "service": r.service,
            "baseline_version": "v1",
            "canary_version": "v2",
            "policy": "e2e",
            **(extra or {}).get(r.deployment, {}),
        }
        for r in rollouts
    ]


def both_ended(decisions: list[Decision], healthy: Rollout, regressed: Rollout) -> bool:
    """Whether the healthy canary is promoted and the regressed one's rollback judged."""
    actions = {(d.deployment, d.action) for d in decisions}
    return (healthy.deployment, Action.PROMOTE) in actions and any(
        (regressed.deployment, a) in actions
        for a in (Action.ROLLBACK_VERIFIED, Action.ROLLBACK_NOT_RECOVERING)
    )


def actuation_reports(stack: Stack) -> list[ActuationReport]:
    return [ActuationReport.model_validate_json(raw) for raw in stack.read(ACTUATIONS_TOPIC)]


def raw_decisions(stack: Stack) -> list[tuple[bytes, bytes | None]]:
    """Every message of the decisions topic: its value and its signature header."""
    return [
        (m.value or b"", dict(m.headers or ()).get(SIGNATURE_HEADER))
        for m in stack.read_messages(DECISIONS_TOPIC)
    ]


def genuine_decisions(stack: Stack, signer: Signer) -> list[tuple[bytes, Decision]]:
    """The decisions the worker signed (forged ones left out), in each partition's order."""
    verifier = signer.verifier()
    return [
        (raw, decode_decision(raw))
        for raw, signature in raw_decisions(stack)
        if signature is not None and verifier.verify(raw, signature)
    ]


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def serves_metrics(port: int) -> bool:
    try:
        metrics_text(port)
    except OSError:
        return False
    return True


def wait_until(predicate: Any, timeout: float, what: str, processes: Processes) -> None:
    """Until ``predicate()``; fail if it does not hold in time or a process dies meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check_alive()
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{processes.tails()}")
