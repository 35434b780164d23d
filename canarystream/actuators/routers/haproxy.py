"""HAProxy router: the canary share as server weights, through the Runtime API.

One HAProxy backend holds a baseline server and a canary server; a share of ``p`` % sets
their weights to ``total - w`` and ``w`` with ``w = p * total / 100`` (HAProxy accepts 0..256),
so 0 % sends nothing to the canary and 100 % nothing to the baseline. The change is made
with ``set weight`` on the admin socket (``stats socket ... level admin``) and read back with
``get weight``; it lives in memory, so the configuration file should start at the baseline.
The share read back is the effective one: a server in drain or maintenance counts as weight 0.

Draining (``drain=True``): at a share of 0 -- a rollback -- the canary server is also put in
``drain`` state. Like weight 0 it takes no new connections from load balancing while
established connections and cookie-persistent (sticky) sessions still reach it, so users
mid-session are not bounced; unlike weight 0 it is an administrative state, shown in the
stats page, that no later ``set weight`` (a script, an agent check) can undo. The next
positive share sets it ``ready`` again, unless someone also put it in maintenance.

>>> split_weights(10.0, 100)  # (baseline, canary) weights for a 10 % canary
(90, 10)
>>> parse_address("127.0.0.1:9999"), parse_address("/run/haproxy/admin.sock")
(('127.0.0.1', 9999), '/run/haproxy/admin.sock')
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from pydantic import AliasChoices, Field, field_validator, model_validator

from canarystream.actuators.base import TrafficTarget, split_weights
from canarystream.actuators.config import BackendConfig
from canarystream.errors import ConfigError, RouterError

__all__ = ["HAProxyConfig", "HAProxyRouter", "parse_address"]

_NAME = re.compile(r"^[A-Za-z0-9._:-]+$")  # no spaces or ';', which end a Runtime API command
_WEIGHT = re.compile(r"^\s*(\d+)\s*\(initial\s+\d+\)\s*$")
# srv_admin_state bits (HAProxy's SRV_ADMF_*): maintenance of any origin, and forced drain.
_ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
_ADMIN_DRAIN = 0x08 | 0x10
_FORCED_DRAIN = 0x08


def parse_address(address: str) -> tuple[str, int] | str:
    """``(host, port)`` for ``host:port`` (``[::1]:port`` for IPv6), else a unix socket path
    (``unix:`` prefix optional)."""
    if address.startswith("unix:"):
        return address.removeprefix("unix:")
    if "/" in address:
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{address!r} is neither host:port nor a socket path")
    return host.strip("[]"), int(port)


class HAProxyConfig(BackendConfig):
    """Where the Runtime API listens and which servers carry the two cohorts."""

    address: str = Field(
        validation_alias=AliasChoices("address", "socket"),
        description="Runtime API (level admin): a unix socket path or host:port.",
    )
    backend: str = Field(description="The HAProxy backend holding both servers.")
    baseline_server: str = Field(description="Server of the baseline.")
    canary_server: str = Field(description="Server of the canary.")
    total_weight: int = Field(
        default=100, description="The two weights sum to this; up to 256 for finer steps."
    )
    timeout: float = Field(default=5.0, gt=0, description="Seconds for one Runtime API command.")
    drain: bool = Field(
        default=False,
        description="On rollback also put the canary server in drain state: sticky sessions "
        "finish, no new ones start.",
    )

    @field_validator("backend", "baseline_server", "canary_server")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a valid name")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            parse_address(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("total_weight")
    @classmethod
    def _total_weight(cls, value: int) -> int:
        if not 2 <= value <= 256:
            raise ValueError(f"{value} is not within 2..256")
        return value

    @model_validator(mode="after")
    def _two_servers(self) -> HAProxyConfig:
        if self.baseline_server == self.canary_server:
            raise ValueError("canary_server: must differ from baseline_server")
        return self


class HAProxyRouter:
    """Routes a canary share by setting two servers' weights on a running HAProxy."""

    kind = "haproxy"

    def __init__(self, config: HAProxyConfig) -> None:
        self.config = config
        self._address = parse_address(config.address)

    async def command(self, line: str) -> str:
        """Run one Runtime API command line and return its whole answer."""
        timeout = self.config.timeout
        try:
            async with asyncio.timeout(timeout):
                if isinstance(self._address, str):
                    reader, writer = await asyncio.open_unix_connection(self._address)
                else:
                    reader, writer = await asyncio.open_connection(*self._address)
                try:
                    writer.write(line.encode("utf-8") + b"\n")
                    await writer.drain()
                    answer = await reader.read()  # the API closes after one command line
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except TimeoutError as exc:
            raise RouterError(f"haproxy {self.config.address}: no answer in {timeout:g} s") from exc
        except OSError as exc:
            raise RouterError(f"haproxy {self.config.address}: {exc}") from exc
        return answer.decode("utf-8", "replace")

    def describe(self) -> str:
        """The backend and its two servers, and where the Runtime API is."""
        config = self.config
        return (
            f"haproxy backend {config.backend} (baseline {config.baseline_server}, canary "
            f"{config.canary_server}) through {config.address}"
        )

    async def set_share(self, target: TrafficTarget) -> None:
        """Set the baseline and canary weights for ``target.canary_percent`` (and, with
        ``drain``, the canary server's drain state)."""
        config = self.config
        baseline, canary = split_weights(target.canary_percent, config.total_weight)
        canary_server = f"{config.backend}/{config.canary_server}"
        if config.drain and canary > 0:
            # Ready before the weights: a drained canary given all the weight would leave
            # no server to answer.
            state = (await self.admin_states())[config.canary_server]
            if state & _FORCED_DRAIN and not state & _ADMIN_MAINT:
                await self._expect_empty(f"set server {canary_server} state ready", "ready")
        base = f"set weight {config.backend}/{config.baseline_server} {baseline}"
        cand = f"set weight {canary_server} {canary}"
        # The larger weight first: it is positive, so no instant has both servers at 0
        # (which would answer 503 to every request).
        first, second = (cand, base) if canary > baseline else (base, cand)
        await self._expect_empty(f"{first}; {second}", "the weights")
        if config.drain and canary == 0:
            await self._expect_empty(f"set server {canary_server} state drain", "drain")

    async def admin_states(self) -> dict[str, int]:
        """``srv_admin_state`` (bit flags; 0 is ready) of each server of the backend."""
        answer = await self.command(f"show servers state {self.config.backend}")
        fields: list[str] = []
        states: dict[str, int] = {}
        for line in answer.splitlines():
            if line.startswith("# "):
                fields = line[2:].split()
            elif fields and len(words := line.split()) == len(fields):
                row = dict(zip(fields, words, strict=True))
                if row.get("srv_admin_state", "").isdigit():
                    states[row["srv_name"]] = int(row["srv_admin_state"])
        missing = {self.config.baseline_server, self.config.canary_server} - states.keys()
        if missing:
            said = " ".join(answer.split()[:12])
            raise RouterError(
                f"haproxy show servers state {self.config.backend}: no server "
                f"{', '.join(sorted(missing))} ({said})"
            )
        return states

    async def weights(self) -> tuple[int, int]:
        """The current ``(baseline, canary)`` weights."""
        return (
            await self._get(self.config.baseline_server),
            await self._get(self.config.canary_server),
        )

    async def get_share(self, deployment: str) -> float:
        """The canary's share of the two servers' effective weights, %."""
        baseline, canary = await self.weights()
        states = await self.admin_states()
        if states[self.config.baseline_server] & (_ADMIN_MAINT | _ADMIN_DRAIN):
            baseline = 0
        if states[self.config.canary_server] & (_ADMIN_MAINT | _ADMIN_DRAIN):
            canary = 0
        if baseline + canary == 0:
            raise RouterError(
                f"haproxy backend {self.config.backend}: no server takes traffic "
                "(weights 0, drain or maintenance)"
            )
        return 100.0 * canary / (baseline + canary)

    async def close(self) -> None:
        """Nothing to release: each command uses its own connection."""

    async def _expect_empty(self, line: str, what: str) -> None:
        answer = (await self.command(line)).strip()
        if answer:
            raise RouterError(f"haproxy refused {what}: {' '.join(answer.split())}")

    async def _get(self, server: str) -> int:
        answer = await self.command(f"get weight {self.config.backend}/{server}")
        match = _WEIGHT.match(answer)
        if match is None:
            raise RouterError(
                f"haproxy get weight {self.config.backend}/{server}: {' '.join(answer.split())}"
            )
        return int(match.group(1))
