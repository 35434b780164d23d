"""The notification file: validated whole, each error naming its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from canarystream.errors import ConfigError
from canarystream.notify.config import load_notify_config

GOOD: dict[str, Any] = {
    "allowed_urls": ["https://hooks.slack.com/services", "https://events.pagerduty.com/v2"],
    "routes": [
        {
            "name": "shop-team",
            "services": ["shop*"],
            "events": ["held", "rollback"],
            "format": "slack",
            "url": "https://hooks.slack.com/services/T0/B0/X",
        },
        {
            "name": "oncall",
            "services": ["*"],
            "events": ["page"],
            "format": "pagerduty",
            "url": "https://events.pagerduty.com/v2/enqueue",
            "routing_key": "abc",
        },
    ],
}


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "notify.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _with(route: int = 0, **changes: Any) -> dict[str, Any]:
    routes = [dict(r) for r in GOOD["routes"]]
    routes[route].update(changes)
    return {**GOOD, "routes": routes}


def test_a_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    config = load_notify_config(_write(tmp_path, GOOD))
    assert [r.name for r in config.routes] == ["shop-team", "oncall"]
    assert config.routes[0].takes("shop-eu") and not config.routes[0].takes("cart")
    assert config.routes[1].key() == "abc"
    assert config.retry.max_attempts == 5 and config.dedup_window == 10_000
    assert config.rate_limit.per_minute == 20


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (_with(url="https://hooks.slack.com/servicesX/T0"), "routes.0.url"),
        (_with(url="https://evil.example/services/T0"), "not under an allowed URL"),
        (_with(url="https://user@hooks.slack.com/services/T0"), "user information"),
        (_with(url="https://hooks.slack.com/services/../admin"), "routes.0.url"),
        (_with(events=["held", "exploded"]), "routes.0.events.1"),
        (_with(format="teams"), "routes.0.format"),
        (_with(services=[" shop"]), "routes.0.services"),
        (_with(1, routing_key=None), "routing_key"),
        (_with(routing_key="k"), "pagerduty routes only"),
        (_with(1, name="shop-team"), "used twice"),
        (_with(timeout_seconds=0), "routes.0.timeout_seconds"),
        ({**GOOD, "retry": {"max_attempts": 0}}, "retry.max_attempts"),
        ({**GOOD, "rate_limit": {"per_minute": -1}}, "rate_limit.per_minute"),
        ({**GOOD, "allowed_urls": ["ftp://x"]}, "allowed_urls"),
        ({**GOOD, "surprise": 1}, "surprise"),
        ({**GOOD, "routes": []}, "routes"),
        (_with(1, routing_key=None, routing_key_env="NO_SUCH_VARIABLE_X"), "NO_SUCH_VARIABLE_X"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, data: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_notify_config(_write(tmp_path, data))
    assert named in str(caught.value)
    assert "notify.yaml" in str(caught.value)


def test_a_routing_key_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PD_KEY", "from-env")
    data = _with(1, routing_key=None, routing_key_env="PD_KEY")
    config = load_notify_config(_write(tmp_path, data))
    assert config.routes[1].key() == "from-env"


def test_not_a_mapping_or_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "n.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_notify_config(path)
    path.write_text("routes: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_notify_config(path)


def test_the_example_file_loads(monkeypatch) -> None:
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "k")
    root = Path(__file__).resolve().parents[2]
    config = load_notify_config(root / "deploy" / "notify.example.yaml")
    assert [r.format for r in config.routes] == ["slack", "json", "pagerduty"]
