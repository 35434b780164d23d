"""The hook runner's allow-lists, tried as an attacker who writes announcements would: an
over-wide argv behind an allowed program, URL prefix tricks, and redirects to internal servers."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from canarystream.actuators.allow import (
    argv_matches,
    parse_allowed_url,
    parse_argv_pattern,
    url_refusal,
)
from canarystream.actuators.hooks import HookActuator, HookRunner, HookRunnerConfig
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.decision import Action, Decision, Phase
from canarystream.contracts.events import CompensationHook
from canarystream.errors import ConfigError
from tests.support.actuators import EVERY_SERVICE, make_decision
from tests.support.services import serve_http

PY = sys.executable
SECRET = b"internal admin console: root password hunter2"


def _rollback(hooks: list[CompensationHook]) -> Decision:
    decision = make_decision(2, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK)
    return decision.model_copy(update={"compensation": hooks})


def _run(config: HookRunnerConfig, hooks: list[CompensationHook]) -> ActuationReport:
    actuator = HookActuator(HookRunner(config), verifier=None, scope=EVERY_SERVICE)
    return asyncio.run(actuator.actuate(_rollback(hooks), None))


def test_allowing_env_does_not_allow_env_running_a_shell(tmp_path: Path) -> None:
    pwned = tmp_path / "f"
    attack = CompensationHook(name="down", command=["/usr/bin/env", "sh", "-c", f"id > {pwned}"])
    report = _run(HookRunnerConfig(programs=["/usr/bin/env"]), [attack])
    assert report.status is ActuationStatus.FAILED
    assert "matches no allowed argv pattern" in report.detail
    assert not pwned.exists()
    # A pattern lets through what it spells out, and no more.
    fine = CompensationHook(name="down", command=[PY, "-c", "pass", str(pwned)])
    config = HookRunnerConfig(programs=[f"{PY} -c pass *"])
    assert _run(config, [fine]).status is ActuationStatus.APPLIED
    longer = CompensationHook(name="down", command=[PY, "-c", "pass", str(pwned), "x"])
    assert _run(config, [longer]).status is ActuationStatus.FAILED


@pytest.mark.parametrize(
    ("pattern", "argv", "allowed"),
    [
        ("/usr/bin/env", ["/usr/bin/env"], True),
        ("/usr/bin/env", ["/usr/bin/env", "sh", "-c", "id > f"], False),
        ("/usr/bin/env ...", ["/usr/bin/env", "sh", "-c", "id"], True),
        ("/usr/bin/env ...", ["/usr/bin/envy"], False),
        ("/opt/down.sh --db *", ["/opt/down.sh", "--db", "orders"], True),
        ("/opt/down.sh --db *", ["/opt/down.sh", "--db"], False),
        ("/opt/down.sh --db *", ["/opt/down.sh", "--db", "a", "b"], False),
        ("/opt/down.sh --db orders-*", ["/opt/down.sh", "--db", "orders-eu"], True),
        ("/opt/down.sh --db orders-*", ["/opt/down.sh", "--db", "users"], False),
        ("/opt/down.sh --db orders-*", ["/opt/down.sh", "--DB", "orders-eu"], False),
        ("'/opt/my tool' 'a b'", ["/opt/my tool", "a b"], True),
        ("/opt/down.sh", ["opt/down.sh"], False),
    ],
)
def test_argv_patterns_match_whole_command_lines(
    pattern: str, argv: list[str], allowed: bool
) -> None:
    assert argv_matches(argv, parse_argv_pattern(pattern)) is allowed


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("", "an empty argv pattern"),
        ("env sh", "absolute path without globs"),
        ("/usr/bin/* -c x", "absolute path without globs"),
        ("/usr/bin/env ... sh", "may only end a pattern"),
    ],
)
def test_bad_argv_patterns_are_configuration_errors(pattern: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"programs: .*{why}"):
        HookRunnerConfig(programs=[pattern])


@pytest.mark.parametrize(
    ("allowed", "url"),
    [
        ("https://hooks.corp/api", "https://hooks.corp/api"),
        ("https://hooks.corp/api", "https://hooks.corp/api/"),
        ("https://hooks.corp/api", "https://hooks.corp/api/v1/undo?x=1"),
        ("https://hooks.corp/api/", "https://HOOKS.Corp/api/v1"),
        ("https://hooks.corp/api", "https://hooks.corp:443/api/v1"),
        ("http://good.example/x", "http://good.example:80/x"),
        ("https://hooks.corp", "https://hooks.corp/anything"),
        ("https://bücher.example/", "https://xn--bcher-kva.example/hook"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/compensate"),
    ],
)
def test_allowed_urls_cover_their_own_paths(allowed: str, url: str) -> None:
    assert url_refusal(url, [parse_allowed_url(allowed)]) is None


@pytest.mark.parametrize(
    ("allowed", "url"),
    [
        ("http://good.example/x", "http://good.example.evil.com/x"),
        ("https://hooks.corp/api", "https://hooks.corp/apiary"),
        ("https://hooks.corp/api", "http://hooks.corp/api"),
        ("https://hooks.corp/api", "https://hooks.corp:8443/api"),
        ("https://hooks.corp/api", "https://evil.com/api"),
        ("https://hooks.corp/api", "https://hooks.corp.evil.com/api"),
        ("https://hooks.corp/api", "https://user@hooks.corp/api"),
        ("https://hooks.corp/api", "https://hooks.corp@evil.com/api"),
        ("https://hooks.corp/api", "https://hooks.corp:pw@evil.com/api"),
        ("https://hooks.corp/api", "https://hooks.corp/api/../admin"),
        ("https://hooks.corp/api", "https://hooks.corp/api/%2e%2e/admin"),
        ("https://hooks.corp/api", "https://hooks.corp/api/..%2fadmin"),
        ("https://hooks.corp/api", "https://hooks.corp\\@evil.com/api"),
        ("https://hooks.corp/api", "https://hooks%2ecorp/api"),
        ("https://hooks.corp/api", "ftp://hooks.corp/api"),
        ("https://hooks.corp/api", "https://hooks.corp/API"),
    ],
)
def test_url_tricks_are_refused(allowed: str, url: str) -> None:
    assert url_refusal(url, [parse_allowed_url(allowed)]) is not None


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("hooks.example", "is not an http\\(s\\) URL"),
        ("https://u:p@hooks.example/", "user information"),
        ("https://hooks.example/x?y=1", "no query or fragment"),
        ("https:///x", "has no host"),
    ],
)
def test_bad_allowed_urls_are_configuration_errors(entry: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"url_prefixes: .*{why}"):
        HookRunnerConfig(url_prefixes=[entry])


class _Server:
    """A local HTTP server: what it answers, and the requests it got (method, path)."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []
        self.url = ""


@pytest.fixture
def internal() -> Iterator[_Server]:
    """An internal server nobody may reach through a hook: it serves a secret on GET."""
    server = _Server()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            server.hits.append((self.command, self.path))
            self.send_response(200)
            self.send_header("Content-Length", str(len(SECRET)))
            self.end_headers()
            self.wfile.write(SECRET)

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_http(Handler) as base:
        server.url = base
        yield server


@pytest.fixture
def allowed(internal: _Server) -> Iterator[_Server]:
    """An allowed server: /redirect answers 302 to the internal admin page, /ok answers 200
    with a body that names the secret, as a compromised server could."""
    server = _Server()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            server.hits.append((self.command, self.path))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.startswith("/hooks/redirect"):
                self.send_response(302)
                self.send_header("Location", f"{internal.url}/internal/admin")
                body = b"moved: " + SECRET
            else:
                self.send_response(200)
                body = SECRET
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_http(Handler) as base:
        server.url = base
        yield server


def test_a_redirect_is_a_failure_and_never_followed(allowed: _Server, internal: _Server) -> None:
    config = HookRunnerConfig(url_prefixes=[f"{allowed.url}/hooks"])
    hook = CompensationHook(name="notify", url=f"{allowed.url}/hooks/redirect")
    report = _run(config, [hook])
    assert report.status is ActuationStatus.FAILED
    assert "notify: HTTP 302" in report.detail and "not followed" in report.detail
    assert allowed.hits == [("POST", "/hooks/redirect")]
    assert internal.hits == []
    assert "hunter2" not in report.detail and "internal" not in report.detail


def test_an_answer_s_body_is_never_copied_into_the_report(allowed: _Server) -> None:
    config = HookRunnerConfig(url_prefixes=[f"{allowed.url}/hooks"])
    report = _run(config, [CompensationHook(name="notify", url=f"{allowed.url}/hooks/ok")])
    assert report.status is ActuationStatus.APPLIED
    assert f"notify: HTTP 200, {len(SECRET)} bytes in " in report.detail
    assert "hunter2" not in report.detail


def test_webhooks_carry_an_idempotency_key() -> None:
    seen: list[str | None] = []
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(self.headers.get("Idempotency-Key"))
            self.send_response(204)
            self.end_headers()
            done.set()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_http(Handler) as base:
        hook = CompensationHook(name="notify", url=f"{base}/x")
        report = _run(HookRunnerConfig(url_prefixes=[base]), [hook])
    decision = _rollback([hook])
    assert report.status is ActuationStatus.APPLIED and done.is_set()
    assert seen == [f"{decision.decision_id}:notify"]
