"""Every metric family the product exports, read from the registries its services build."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from canarystream.actuators.metrics import ActuationMetrics
from canarystream.audit.metrics import AuditMetrics
from canarystream.ingest.metrics import BridgeMetrics
from canarystream.notify.metrics import NotifyMetrics
from canarystream.security import insecure_gauge
from canarystream.streaming.metrics import WorkerMetrics
from canarystream.streaming.sensors import FaustSensors
from tests.support.services import require_service

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "canarystream.json"
README = ROOT / "README.md"
#: Names a PromQL expression may use that no canarystream service exports.
PROMETHEUS_OWN = {"up"}
_SUFFIX = {"counter": "_total", "histogram": "", "gauge": "", "summary": ""}


@dataclass(frozen=True)
class Family:
    """One exported metric family: its name as scraped, type, labels and the service."""

    name: str
    type: str
    labels: tuple[str, ...]
    service: str

    @property
    def series(self) -> set[str]:
        """The names its samples are scraped under."""
        if self.type == "histogram":
            return {f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count"}
        return {self.name}


def _registries() -> dict[str, CollectorRegistry]:
    worker = WorkerMetrics()
    FaustSensors(worker.registry)
    insecure_gauge(worker.registry, False)
    actuator = CollectorRegistry()
    ActuationMetrics(actuator)
    insecure_gauge(actuator, False)
    audit = AuditMetrics()
    notifier = CollectorRegistry()
    NotifyMetrics(notifier)
    return {
        "worker": worker.registry,
        "actuator": actuator,
        "audit": audit.registry,
        "notifier": notifier,
        "otlp-bridge": BridgeMetrics().registry,
    }


def families() -> list[Family]:
    """Every family of the worker, the actuators, the audit recorder, the notifier and the OTLP
    bridge."""
    found: list[Family] = []
    for service, registry in _registries().items():
        collectors: Any = registry._collector_to_names  # the registered collectors
        for collector in collectors:
            kind = collector._type
            name = collector._name + _SUFFIX[kind]
            found.append(Family(name, kind, tuple(collector._labelnames), service))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    without_labels = re.sub(r"\{[^}]*\}", "", without_ranges)
    without_groupings = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels
    )
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", without_groupings))
    keywords = {"or", "and", "unless", "offset", "bool", "by", "on", "le", "inf", "nan"}
    return {n for n in names if n.lower() not in keywords and not re.fullmatch(r"\d+[smhdwy]", n)}


def require_tool(name: str) -> str:
    """The path of ``promtool`` or ``prometheus``; skip without it, or fail under CI."""
    path = shutil.which(name)
    if path is None:
        require_service(name, "`make services` installs it (Debian's prometheus package)")
    return path
