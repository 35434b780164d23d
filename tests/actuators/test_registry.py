"""The backend registry and the one ``canarystream actuate BACKEND`` command: kinds, validated
config sections, and the common options declared once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from canarystream.actuators import (
    REGISTRY,
    Actuator,
    HandlerOptions,
    Plugin,
    Registry,
    TrafficBackend,
    traffic,
)
from canarystream.cli import app
from canarystream.cli.actuate_cmd import COMMON_OPTIONS, section_from_args
from canarystream.errors import ConfigError
from tests.support.actuators import EVERY_SERVICE, ProtocolOnly

KINDS = ["flagd", "gateway-api", "haproxy", "hooks", "memory", "nginx", "unleash"]
HAPROXY = {"socket": "/run/haproxy.sock", "backend": "app", "baseline_server": "a"}
SIGNED = {"CANARYSTREAM_SIGNING_SCHEME": "hmac-sha256", "CANARYSTREAM_VERIFY_KEYS": '["k"]'}

# A valid section of every registered backend, and the kind its handler reports as.
SAMPLES: dict[str, tuple[dict[str, Any], str]] = {
    "flagd": ({"path": "/tmp/flags.json"}, "flagd"),
    "gateway-api": (
        {
            "out": "/tmp/route.yaml",
            "route": "shop",
            "gateway": "edge",
            "baseline_service": "shop-v1",
            "canary_service": "shop-v2",
            "service_port": "80",
        },
        "gateway_api",
    ),
    "haproxy": ({**HAPROXY, "canary_server": "b"}, "haproxy"),
    "hooks": ({"allow_program": ["/usr/bin/true"]}, "hooks"),
    "memory": ({}, "memory"),
    "nginx": (
        {"upstream_file": "/tmp/u.conf", "upstream": "app", "baseline_server": "a:1"}
        | {"canary_server": "b:1", "reload_command": "nginx -s reload"},
        "nginx",
    ),
    "unleash": ({"url": "http://127.0.0.1:4242", "admin_token": "*:*.secret"}, "unleash"),
}


def test_every_backend_is_registered_and_builds_its_handler() -> None:
    assert REGISTRY.kinds() == KINDS == sorted(SAMPLES)
    for kind, (section, reported) in SAMPLES.items():
        handler = REGISTRY.get(kind).build(
            section, HandlerOptions(verifier=None, scope=EVERY_SERVICE), environ={}
        )
        assert handler.kind == reported and handler.describe(), kind


def test_an_unknown_backend_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        REGISTRY.get("envoy")
    assert str(raised.value) == f"unknown backend 'envoy'; known: {', '.join(KINDS)}"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({**HAPROXY}, "  canary_server: Field required (--canary-server)"),
        ({**HAPROXY, "canary_server": "b", "total_weight": 300}, "  total_weight: 300 is not"),
        ({**HAPROXY, "canary_server": "b", "total_weight": "lots"}, "  total_weight: Input"),
        ({**HAPROXY, "canary_server": "a"}, "  canary_server: must differ from baseline_server"),
        ({**HAPROXY, "canary_server": "b", "weight": 3}, "  weight: not a key of haproxy"),
        ({**HAPROXY, "canary_server": "b", "address": "/s"}, "  address: given twice"),
        ({**HAPROXY, "canary_server": "b", "socket": "localhost"}, "  address: 'localhost' is"),
    ],
)
def test_config_errors_name_the_field(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        REGISTRY.get("haproxy").parse(section, environ={})
    lines = str(raised.value).splitlines()
    assert lines[0] == "haproxy: invalid configuration"
    assert any(line.startswith(message) for line in lines[1:]), lines


def test_legacy_option_names_are_read_as_the_fields_they_stand_for() -> None:
    config: Any = REGISTRY.get("haproxy").parse({**HAPROXY, "canary-server": "b"}, environ={})
    assert (config.address, config.canary_server) == ("/run/haproxy.sock", "b")
    gateway: Any = REGISTRY.get("gateway-api").parse(
        {**SAMPLES["gateway-api"][0], "hostname": "shop.example"}, environ={}
    )
    assert (gateway.port, gateway.hostnames) == (80, ("shop.example",))
    nginx: Any = REGISTRY.get("nginx").parse(SAMPLES["nginx"][0], environ={})
    assert nginx.reload_command == ("nginx", "-s", "reload")


def test_the_unleash_token_comes_from_the_environment_and_is_never_shown() -> None:
    plugin = REGISTRY.get("unleash")
    url = {"url": "http://127.0.0.1:4242"}
    with pytest.raises(ConfigError, match="admin_token: Field required") as raised:
        plugin.parse(url, environ={})
    assert "CANARYSTREAM_UNLEASH_ADMIN_TOKEN" in str(raised.value)
    config: Any = plugin.parse(url, environ={"CANARYSTREAM_UNLEASH_ADMIN_TOKEN": "*:*.secret"})
    assert config.admin_token == "*:*.secret" and "secret" not in repr(config)
    given: Any = plugin.parse(
        {**url, "admin_token": "*:*.given"}, environ={"CANARYSTREAM_UNLEASH_ADMIN_TOKEN": "x"}
    )
    assert given.admin_token == "*:*.given"  # the configuration wins over the environment


def test_hooks_take_no_gradual_rollback() -> None:
    with pytest.raises(ConfigError, match="rollback_steps: hooks set no traffic share"):
        REGISTRY.get("hooks").build(
            {}, HandlerOptions(verifier=None, scope=EVERY_SERVICE, rollback_steps=3)
        )


def test_a_registry_takes_any_backend_that_follows_the_protocol() -> None:
    class Nothing(BaseModel):
        pass

    registry = Registry()
    registry.add(Plugin("fake", Nothing, traffic(lambda _: ProtocolOnly()), "shares in a dict"))
    with pytest.raises(ValueError, match="'fake' is registered already"):
        registry.add(Plugin("fake", Nothing, traffic(lambda _: ProtocolOnly()), "again"))
    handler = registry.get("fake").build(
        {}, HandlerOptions(verifier=None, scope=EVERY_SERVICE, rollback_steps=2)
    )
    assert isinstance(handler, Actuator) and isinstance(handler.backend, TrafficBackend)
    assert (handler.kind, handler.rollback_steps) == ("protocol_only", 2)
    assert registry.kinds() == ["fake"]


def test_no_backend_key_is_shadowed_by_a_common_option() -> None:
    for kind in REGISTRY.kinds():
        names = REGISTRY.get(kind).names()
        assert not names.keys() & COMMON_OPTIONS, kind


def test_command_line_options_become_a_section() -> None:
    plugin = REGISTRY.get("gateway-api")
    section = section_from_args(
        plugin,
        [
            *("--route", "shop", "--hostname", "a.example", "--hostname=b.example"),
            *("--service-port", "80", "--namespace=-odd"),
        ],
    )
    assert section == {
        "route": "shop",
        "hostname": ["a.example", "b.example"],
        "service_port": "80",
        "namespace": "-odd",
    }
    haproxy = REGISTRY.get("haproxy")
    assert section_from_args(haproxy, ["--drain", "--backend", "app"]) == {
        "drain": True,
        "backend": "app",
    }
    assert section_from_args(haproxy, ["--no-drain"]) == {"drain": False}
    with pytest.raises(ConfigError, match="haproxy has no option --weight; its options: "):
        section_from_args(haproxy, ["--weight", "3"])
    with pytest.raises(ConfigError, match="--backend needs a value"):
        section_from_args(haproxy, ["--backend"])
    with pytest.raises(ConfigError, match="unexpected argument 'app'"):
        section_from_args(haproxy, ["app"])


def _invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    scope = {"CANARYSTREAM_ACTUATOR_SERVICES": '["*"]'}
    return CliRunner().invoke(app, ["actuate", *args], env={**SIGNED, **scope, **(env or {})})


def test_cli_unknown_backend() -> None:
    result = _invoke("envoy", "--dry-run")
    assert result.exit_code == 2
    assert f"unknown backend 'envoy'; known: {', '.join(KINDS)}" in result.stderr


def test_cli_reports_config_errors_by_field_for_every_backend() -> None:
    haproxy = _invoke(
        "haproxy",
        *("--socket", "/s", "--backend", "app", "--baseline-server", "a"),
        *("--canary-server", "b", "--total-weight", "300"),
    )
    assert haproxy.exit_code == 2 and "total_weight: 300 is not within 2..256" in haproxy.stderr
    flagd = _invoke("flagd", "--path", "/tmp/flags.json", "--ofrep-url", "ftp://flagd")
    assert flagd.exit_code == 2
    assert "ofrep_url: 'ftp://flagd' is not an http(s) URL" in flagd.stderr
    hooks = _invoke("hooks", "--rollback-steps", "3")
    assert hooks.exit_code == 2 and "rollback_steps: hooks set no traffic share" in hooks.stderr


def test_cli_reads_a_config_file_section_and_options_override_it(tmp_path: Path) -> None:
    config = tmp_path / "actuators.json"
    section = {**HAPROXY, "canary_server": "b", "total_weight": 300}
    config.write_text(json.dumps({"haproxy": section, "hooks": {}}))
    result = _invoke("haproxy", "--config", str(config))
    assert result.exit_code == 2 and "total_weight: 300 is not within" in result.stderr
    # Fixed on the command line: past the config, to the signing check (none configured).
    fixed = CliRunner().invoke(
        app,
        ["actuate", "haproxy", "--config", str(config), "--total-weight", "256"],
        env={"CANARYSTREAM_SIGNING_SCHEME": "none"},
    )
    assert fixed.exit_code == 2
    assert "CANARYSTREAM_SIGNING_SCHEME (signing_scheme) is none" in fixed.stderr
    missing = _invoke("nginx", "--config", str(config))
    assert missing.exit_code == 2
    assert f"{config}: no 'nginx' section (sections: haproxy, hooks)" in missing.stderr


def test_cli_help_lists_every_backend_and_its_keys() -> None:
    result = CliRunner().invoke(app, ["actuate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for kind in KINDS:
        assert kind in result.stdout
    assert "--canary-server" in result.stdout and "--admin-token" in result.stdout
