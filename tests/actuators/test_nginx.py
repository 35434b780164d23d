"""NGINX router: rendering, atomic writes and reloads with a stand-in command, then a real
NGINX whose traffic split follows the decisions."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from canarystream.actuators import Actuator, NginxConfig, NginxRouter
from canarystream.actuators.base import TrafficTarget
from canarystream.actuators.routers.nginx import read_canary_percent, render_upstream
from canarystream.contracts.actuation import ActuationStatus
from canarystream.contracts.decision import Action, Phase
from canarystream.errors import ConfigError, RouterError
from tests.support.actuators import EVERY_SERVICE, Nginx, count_cohorts, make_decision

BASE, CANARY = "127.0.0.1:8081", "127.0.0.1:8082"


def _target(percent: float) -> TrafficTarget:
    return TrafficTarget("d1", "shop", "v1", "v2", percent)


def _recorder(log: Path, exit_code: int = 0) -> tuple[str, ...]:
    """A command that appends a line to ``log`` and exits with ``exit_code``."""
    code = f"open({str(log)!r}, 'a').write('ran\\n'); raise SystemExit({exit_code})"
    return (sys.executable, "-c", code)


@pytest.mark.parametrize(
    ("percent", "baseline", "canary"),
    [(0.0, "weight=100", "down"), (10.0, "weight=90", "weight=10"), (100.0, "down", "weight=100")],
)
def test_render_and_read_back(percent: float, baseline: str, canary: str) -> None:
    text = render_upstream("app", BASE, CANARY, percent)
    assert f"server {BASE} {baseline};" in text and f"server {CANARY} {canary};" in text
    assert read_canary_percent(text, BASE, CANARY) == percent


def test_read_back_of_hand_written_upstreams() -> None:
    text = "upstream app {\n  server a:1;\n  server b:1 weight=3 max_fails=2;\n}\n"
    assert read_canary_percent(text, "a:1", "b:1") == 75.0  # weight defaults to 1
    assert read_canary_percent(text, "a:1", "c:1") is None
    assert read_canary_percent("server a:1 down; server b:1 down;", "a:1", "b:1") is None
    one_line = "upstream app { server a:1 weight=1; server b:1 weight=1; }  # b:1 weight=9;"
    assert read_canary_percent(one_line, "a:1", "b:1") == 50.0


def test_set_weight_writes_atomically_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "conf.d" / "upstream.conf"
    reloads = tmp_path / "reloads"
    router = NginxRouter(
        NginxConfig(
            path=path,
            upstream="app",
            baseline_server=BASE,
            canary_server=CANARY,
            reload_command=_recorder(reloads),
        )
    )
    assert asyncio.run(router.get_share("d1")) is None  # nothing written yet
    asyncio.run(router.set_share(_target(25.0)))
    asyncio.run(router.set_share(_target(25.0)))  # a retry reloads again, harmlessly
    assert asyncio.run(router.get_share("d1")) == 25.0
    assert reloads.read_text() == "ran\nran\n"
    assert [p.name for p in path.parent.iterdir()] == ["upstream.conf"]  # no temporary left
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_failing_reload_is_a_router_error(tmp_path: Path) -> None:
    config = NginxConfig(
        path=tmp_path / "u.conf",
        upstream="app",
        baseline_server=BASE,
        canary_server=CANARY,
        reload_command=_recorder(tmp_path / "log", exit_code=1),
    )
    with pytest.raises(RouterError, match="exited 1"):
        asyncio.run(NginxRouter(config).set_share(_target(5.0)))
    missing = NginxConfig(
        path=tmp_path / "u.conf",
        upstream="app",
        baseline_server=BASE,
        canary_server=CANARY,
        reload_command=("/nonexistent/nginx", "-s", "reload"),
    )
    with pytest.raises(RouterError, match="/nonexistent/nginx"):
        asyncio.run(NginxRouter(missing).set_share(_target(5.0)))


def test_refused_check_puts_the_previous_file_back(tmp_path: Path) -> None:
    path = tmp_path / "u.conf"
    path.write_text(render_upstream("app", BASE, CANARY, 5.0))
    reloads = tmp_path / "reloads"
    router = NginxRouter(
        NginxConfig(
            path=path,
            upstream="app",
            baseline_server=BASE,
            canary_server=CANARY,
            reload_command=_recorder(reloads),
            check_command=_recorder(tmp_path / "checks", exit_code=1),
        )
    )
    with pytest.raises(RouterError, match="exited 1"):
        asyncio.run(router.set_share(_target(50.0)))
    assert asyncio.run(router.get_share("d1")) == 5.0
    assert not reloads.exists()


def test_a_hung_reload_is_killed(tmp_path: Path) -> None:
    config = NginxConfig(
        path=tmp_path / "u.conf",
        upstream="app",
        baseline_server=BASE,
        canary_server=CANARY,
        reload_command=(sys.executable, "-c", "import time; time.sleep(30)"),
        timeout=0.3,
    )
    started = time.monotonic()
    with pytest.raises(RouterError, match=r"no exit in 0\.3 s"):
        asyncio.run(NginxRouter(config).set_share(_target(5.0)))
    assert time.monotonic() - started < 5


def test_config_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="upstream"):
        NginxConfig(path=tmp_path, upstream="a b", baseline_server=BASE, canary_server=CANARY)
    with pytest.raises(ConfigError, match="canary_server"):
        NginxConfig(path=tmp_path, upstream="a", baseline_server=BASE, canary_server="x;y")
    with pytest.raises(ConfigError, match="must differ"):
        NginxConfig(path=tmp_path, upstream="a", baseline_server=BASE, canary_server=BASE)


def _workers(master: int) -> set[int]:
    """Pids of the processes whose parent is ``master``."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == master:
            children.add(int(stat.parent.name))
    return children


def _wait_for_reload(master: int, old: set[int]) -> None:
    """A reload is asynchronous: wait until only new workers are left to answer."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        workers = _workers(master)
        if workers and not workers & old:
            return
        time.sleep(0.05)
    pytest.fail("NGINX did not replace its workers within 10 s")


def test_real_nginx_follows_the_decisions(nginx: Nginx) -> None:
    router = NginxRouter(
        NginxConfig(
            path=nginx.upstream,
            upstream="app",
            baseline_server=nginx.baseline_server,
            canary_server=nginx.canary_server,
            reload_command=(nginx.binary, "-c", str(nginx.config), "-s", "reload"),
            check_command=(nginx.binary, "-c", str(nginx.config), "-t", "-q"),
        )
    )
    actuator = Actuator(router, verifier=None, scope=EVERY_SERVICE)
    assert count_cohorts(nginx.port, 20) == {"baseline": 20}

    old = _workers(nginx.pid)
    report = asyncio.run(actuator.actuate(make_decision(0, traffic_percent=10.0), None))
    assert report.status is ActuationStatus.APPLIED and report.traffic_percent_observed == 10.0
    _wait_for_reload(nginx.pid, old)
    served = count_cohorts(nginx.port, 400)
    assert served["error"] == 0
    assert 28 <= served["canary"] <= 52, served  # smooth weighted round-robin: 40 expected

    rollback = make_decision(1, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK)
    old = _workers(nginx.pid)
    report = asyncio.run(actuator.actuate(rollback, None))
    assert report.status is ActuationStatus.APPLIED and report.traffic_percent_observed == 0.0
    _wait_for_reload(nginx.pid, old)
    assert count_cohorts(nginx.port, 400) == {"baseline": 400}
