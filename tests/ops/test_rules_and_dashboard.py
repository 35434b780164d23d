"""The alert rules, their unit tests and the dashboard: valid, and naming only metrics the
product exports."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import yaml

from tests.ops.catalog import (
    ALERT_TESTS,
    ALERTS,
    DASHBOARD,
    PROMETHEUS_OWN,
    ROOT,
    families,
    metric_names,
    require_tool,
)

EXAMPLE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.example.yml"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _exported() -> set[str]:
    return {series for family in families() for series in family.series} | PROMETHEUS_OWN


def dashboard_queries() -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every query of every panel."""
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def test_promtool_accepts_the_rules_and_the_example_config() -> None:
    promtool = require_tool("promtool")
    rules = _run(promtool, "check", "rules", str(ALERTS))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = _run(promtool, "check", "config", str(EXAMPLE_CONFIG))
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_rules_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    result = _run(promtool, "test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_issue_has_an_alert_and_every_alert_a_unit_test() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    assert alerts >= {
        "CanarystreamRollback",
        "CanarystreamRollbackNotRecovering",
        "CanarystreamRolloutWaitingForPerson",
        "CanarystreamDecisionLag",
        "CanarystreamConsumerLag",
        "CanarystreamDeadLettersRising",
        "CanarystreamWorkerDown",
        "CanarystreamActuatorDown",
        "CanarystreamActuationFailures",
    }
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == alerts


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    exported = _exported()
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        unknown = metric_names(rule["expr"]) - exported
        assert not unknown, f"alert {rule['alert']} uses {unknown}"
    queries = dashboard_queries()
    assert len(queries) >= 20
    for title, expr in queries:
        unknown = metric_names(expr) - exported
        assert not unknown, f"panel {title!r} uses {unknown}"


def test_the_dashboard_covers_rollouts_checks_lag_throughput_and_actuations() -> None:
    used = {name for _, expr in dashboard_queries() for name in metric_names(expr)}
    for needed in (
        "canarystream_rollout_phase",
        "canarystream_rollout_traffic_ratio",
        "canarystream_check_upper_bound",
        "canarystream_consumer_lag_messages",
        "canarystream_messages_consumed_total",
        "canarystream_invalid_events_total",
        "canarystream_actuations_total",
        "canarystream_rollout_clock_timestamp_seconds",
    ):
        assert needed in used
    board = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    referenced = {m for _, e in dashboard_queries() for m in re.findall(r"\$\{?(\w+)", e)}
    assert referenced - {"__rate_interval"} <= variables
