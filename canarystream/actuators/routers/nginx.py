"""NGINX router: a weighted ``upstream`` block in its own file, then a reload.

The file holds only the upstream, for the main configuration to ``include``. It is written
to a temporary file beside the target and renamed over it, so NGINX never reads half a
file; if an optional check command (``nginx -t``) refuses the result, the previous file is
put back. NGINX rejects ``weight=0``, so a server that must take no traffic is marked
``down`` instead.

>>> print(render_upstream("app", "127.0.0.1:8081", "127.0.0.1:8082", 10.0), end="")
# Written by canarystream: canary 10% of traffic. Edits are overwritten.
upstream app {
    server 127.0.0.1:8081 weight=90;  # baseline
    server 127.0.0.1:8082 weight=10;  # canary
}
>>> read_canary_percent(render_upstream("app", "b:1", "c:1", 0.0), "b:1", "c:1")
0.0
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator, model_validator

from canarystream.actuators.base import TrafficTarget, split_weights
from canarystream.actuators.config import BackendConfig, Command
from canarystream.atomicfile import write_atomically
from canarystream.errors import RouterError

__all__ = ["NginxConfig", "NginxRouter", "read_canary_percent", "render_upstream"]

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_ADDRESS = re.compile(r"^[A-Za-z0-9._:\[\]/-]+$")  # host:port, [v6]:port or unix:/path
_COMMENT = re.compile(r"#[^\n]*")


def render_upstream(
    upstream: str,
    baseline_server: str,
    canary_server: str,
    canary_percent: float,
    total_weight: int = 100,
) -> str:
    """The ``upstream`` block that gives the canary ``canary_percent`` % of requests."""
    baseline, canary = split_weights(canary_percent, total_weight)

    def server(address: str, weight: int, role: str) -> str:
        option = f"weight={weight}" if weight > 0 else "down"
        return f"    server {address} {option};  # {role}\n"

    return (
        f"# Written by canarystream: canary {canary_percent:g}% of traffic. "
        "Edits are overwritten.\n"
        f"upstream {upstream} {{\n"
        + server(baseline_server, baseline, "baseline")
        + server(canary_server, canary, "canary")
        + "}\n"
    )


def read_canary_percent(text: str, baseline_server: str, canary_server: str) -> float | None:
    """The canary's share, %, in an upstream block; None if either server is missing."""
    weights: dict[str, int] = {}
    for statement in _COMMENT.sub("", text).split(";"):
        words = re.split(r"[{}]", statement)[-1].split()
        if len(words) < 2 or words[0] != "server":
            continue
        weight = 1  # NGINX's default
        for option in words[2:]:
            if option.startswith("weight=") and option[7:].isdigit():
                weight = int(option[7:])
        weights[words[1]] = 0 if "down" in words[2:] else weight
    if baseline_server not in weights or canary_server not in weights:
        return None
    baseline, canary = weights[baseline_server], weights[canary_server]
    if baseline + canary == 0:
        return None
    return 100.0 * canary / (baseline + canary)


class NginxConfig(BackendConfig):
    """Which upstream file to write and how to make NGINX load it."""

    path: Path = Field(
        validation_alias=AliasChoices("path", "upstream_file"),
        description="The upstream file, included by the main NGINX configuration.",
    )
    upstream: str = Field(description="Name of the upstream block.")
    baseline_server: str = Field(description="Baseline address (host:port or unix:/path).")
    canary_server: str = Field(description="Canary address (host:port or unix:/path).")
    reload_command: Command = Field(
        default=("nginx", "-s", "reload"),
        description="Makes NGINX load the file (one string is split like a shell would).",
    )
    check_command: Command | None = Field(
        default=None, description="Checks the configuration first, e.g. 'nginx -t'."
    )
    total_weight: int = Field(default=100, description="The two weights sum to this.")
    timeout: float = Field(default=10.0, gt=0, description="Seconds for each command.")

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a valid name")
        return value

    @field_validator("baseline_server", "canary_server")
    @classmethod
    def _server(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError(f"{value!r} is not a valid address")
        return value

    @field_validator("reload_command")
    @classmethod
    def _reload(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("total_weight")
    @classmethod
    def _total_weight(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"{value} is less than 2")
        return value

    @model_validator(mode="after")
    def _two_servers(self) -> NginxConfig:
        if self.baseline_server == self.canary_server:
            raise ValueError("canary_server: must differ from baseline_server")
        return self


class NginxRouter:
    """Routes a canary share by rewriting an NGINX upstream and reloading NGINX."""

    kind = "nginx"

    def __init__(self, config: NginxConfig) -> None:
        self.config = config

    def describe(self) -> str:
        """The upstream, its file and its two servers."""
        config = self.config
        return (
            f"nginx upstream {config.upstream} in {config.path} (baseline "
            f"{config.baseline_server}, canary {config.canary_server})"
        )

    async def set_share(self, target: TrafficTarget) -> None:
        """Write the upstream for ``target.canary_percent`` and reload NGINX."""
        config = self.config
        text = render_upstream(
            config.upstream,
            config.baseline_server,
            config.canary_server,
            target.canary_percent,
            config.total_weight,
        )
        previous = config.path.read_text("utf-8") if config.path.exists() else None
        write_atomically(config.path, text.encode(), mode=0o644)
        if config.check_command:
            try:
                await self._run(config.check_command)
            except RouterError:
                if previous is None:
                    config.path.unlink(missing_ok=True)
                else:
                    write_atomically(config.path, previous.encode(), mode=0o644)
                raise
        await self._run(config.reload_command)

    async def get_share(self, deployment: str) -> float | None:
        """The canary's share in the upstream file, %; None if there is no such file."""
        try:
            text = self.config.path.read_text("utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RouterError(f"nginx upstream {self.config.path}: {exc}") from exc
        return read_canary_percent(text, self.config.baseline_server, self.config.canary_server)

    async def close(self) -> None:
        """Nothing to release."""

    async def _run(self, command: Sequence[str]) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            raise RouterError(f"{command[0]}: {exc}") from exc
        try:
            output, _ = await asyncio.wait_for(process.communicate(), self.config.timeout)
        except TimeoutError as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise RouterError(f"{' '.join(command)}: no exit in {self.config.timeout:g} s") from exc
        if process.returncode != 0:
            said = " ".join(output.decode("utf-8", "replace").split())
            raise RouterError(f"{' '.join(command)} exited {process.returncode}: {said}")
