"""flagd flag provider: the canary share as a fractional rollout of an OpenFeature flag.

The provider owns a flagd flag-definition file (flagd runs with ``--uri file:PATH`` and
watches it). Each service gets one string flag, ``<service>-canary`` by default, with the
variants ``baseline`` and ``canary``. A share of ``p`` % strictly between 0 and 100 becomes a
``fractional`` rule that buckets each evaluation by its targeting key (a murmur3 hash of flag
key and targeting key, so a user keeps their variant while ``p`` grows); 0 % and 100 % drop
the rule and serve one variant to everyone. An evaluation without a targeting key gets the
default variant, the baseline, while a rollout is partial. Other flags in the file are kept.

The file is replaced atomically (temporary file in the same folder, ``fsync``, rename), so
flagd never reads half a file. Each write stamps the flag's ``metadata`` with the
deployment, the share its weights give and a revision number. The read-back asks the running
flagd, over its OFREP HTTP API, to evaluate the flag once and reads that metadata from the
answer: flagd returns the metadata of the definition it has loaded, so a matching revision
proves flagd serves the rule that was written, not just that the file changed.

>>> config = FlagdConfig(path="/tmp/flags.json")
>>> flag = render_flag(config, "shop-canary", _target(10.0), revision=1)
>>> flag["defaultVariant"], flag["targeting"]["fractional"]
('baseline', [['canary', 1000], ['baseline', 9000]])
>>> "targeting" in render_flag(config, "shop-canary", _target(0.0), revision=2)
False
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from canarystream.actuators.base import TrafficTarget, split_weights
from canarystream.actuators.config import BackendConfig
from canarystream.atomicfile import write_atomically
from canarystream.errors import FlagError

__all__ = ["FlagdConfig", "FlagdProvider", "render_flag"]

_SCHEMA = "https://flagd.dev/schema/v0/flags.json"
_MANAGED_BY = "canarystream"
_READBACK_KEY = "canarystream-readback"  # the targeting key of read-back evaluations


class FlagdConfig(BackendConfig):
    """Where the flag file and flagd's OFREP API are, and how the flag is shaped."""

    path: str = Field(description="Flag-definition JSON file that flagd watches (--uri file:PATH).")
    ofrep_url: str = Field(
        default="http://127.0.0.1:8016", description="flagd's OFREP service (--ofrep-port)."
    )
    flag_key: str = Field(
        default="{service}-canary", description="Flag key; '{service}' is the decision's service."
    )
    targeting_key: str = Field(
        default="targetingKey", description="Evaluation-context property that buckets users."
    )
    baseline_variant: str = Field(default="baseline", description="Variant of the baseline.")
    canary_variant: str = Field(default="canary", description="Variant of the canary.")
    total_weight: int = Field(
        default=10_000, description="Fractional weights sum to this: steps of 0.01 %."
    )
    timeout: float = Field(default=5.0, description="Seconds for one OFREP request.")
    settle: float = Field(
        default=5.0, description="Seconds to wait for flagd to serve a new write on read-back."
    )
    poll_interval: float = Field(
        default=0.05, description="Seconds between read-back tries while settling."
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value:
            raise ValueError("must name the flag file flagd watches")
        return value

    @field_validator("flag_key")
    @classmethod
    def _flag_key(cls, value: str) -> str:
        if "{service}" not in value:
            raise ValueError(f"{value!r} must contain '{{service}}'")
        return value

    @field_validator("targeting_key", "baseline_variant")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("total_weight")
    @classmethod
    def _total_weight(cls, value: int) -> int:
        if not 2 <= value <= 1_000_000:
            raise ValueError(f"{value} is not within 2..1000000")
        return value

    @field_validator("ofrep_url")
    @classmethod
    def _ofrep_url(cls, value: str) -> str:
        url = urllib.parse.urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("timeout", "poll_interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"{value} is not positive")
        return value

    @field_validator("settle")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"{value} is negative")
        return value

    @model_validator(mode="after")
    def _two_variants(self) -> FlagdConfig:
        if self.baseline_variant == self.canary_variant:
            raise ValueError("canary_variant: must differ from baseline_variant")
        return self

    def key_for(self, service: str) -> str:
        """The flag key of ``service``."""
        return self.flag_key.format(service=service)


def render_flag(
    config: FlagdConfig, key: str, target: TrafficTarget, *, revision: int
) -> dict[str, Any]:
    """The flagd definition of flag ``key`` serving the canary to ``target.canary_percent`` %."""
    baseline_weight, canary_weight = split_weights(target.canary_percent, config.total_weight)
    percent = 100.0 * canary_weight / config.total_weight
    default = config.canary_variant if baseline_weight == 0 else config.baseline_variant
    flag: dict[str, Any] = {
        "state": "ENABLED",
        "variants": {name: name for name in (config.baseline_variant, config.canary_variant)},
        "defaultVariant": default,
        "metadata": {
            "managedBy": _MANAGED_BY,
            "deployment": target.deployment,
            "service": target.service,
            "baselineVersion": target.baseline_version,
            "canaryVersion": target.canary_version,
            "canaryPercent": round(percent, 6),
            "revision": revision,
        },
    }
    if baseline_weight and canary_weight:
        rule: list[Any] = [[config.canary_variant, canary_weight]]
        rule.append([config.baseline_variant, baseline_weight])
        if config.targeting_key != "targetingKey":
            # flagd salts the default bucketing value with the flag key; keep that salt for a
            # custom property so two flags still split users independently.
            bucket = {"cat": [{"var": "$flagd.flagKey"}, {"var": config.targeting_key}]}
            rule.insert(0, bucket)
        flag["targeting"] = {"fractional": rule}
    return flag


class FlagdProvider:
    """Rolls a canary variant out through a flag file watched by a running flagd."""

    kind = "flagd"

    def __init__(self, config: FlagdConfig) -> None:
        self.config = config
        self._path = Path(config.path)
        url = urllib.parse.urlsplit(config.ofrep_url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._keys: dict[str, str] = {}  # deployment -> flag key
        self._written: dict[str, int] = {}  # flag key -> revision this provider last wrote
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        """The flags, their file, and where flagd serves them."""
        config = self.config
        return f"flagd flag {config.flag_key} in {config.path}, served at {config.ofrep_url}"

    async def set_share(self, target: TrafficTarget) -> None:
        """Write the flag of ``target.service`` so that ``target.canary_percent`` % get the
        canary variant; flagd picks the file up by itself."""
        key = self.config.key_for(target.service)
        async with self._lock:
            revision = await asyncio.to_thread(self._write, key, target)
            self._keys[target.deployment] = key
            self._written[key] = revision

    async def get_share(self, deployment: str) -> float | None:
        """The canary share of ``deployment``'s flag as flagd serves it; None when flagd has no
        flag for it. Waits up to ``settle`` seconds for flagd to load this provider's last
        write, then reports what flagd serves, even if older."""
        key = self._keys.get(deployment)
        if key is None:
            key = await asyncio.to_thread(self._find, deployment)
            if key is None:
                return None
        expected = self._written.get(key, 0)
        deadline = time.monotonic() + self.config.settle
        while True:
            metadata = await asyncio.to_thread(self._served_metadata, key)
            served = _int(metadata.get("revision")) if metadata is not None else None
            settled = served is not None and served >= expected
            if settled or time.monotonic() >= deadline:
                break
            await asyncio.sleep(self.config.poll_interval)
        if metadata is None or metadata.get("deployment") != deployment:
            return None
        percent = metadata.get("canaryPercent")
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise FlagError(f"flagd serves flag {key!r} without a numeric canaryPercent")
        return float(percent)

    async def close(self) -> None:
        """Nothing to release: each request opens its own connection."""

    # -- the flag file ---------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            document = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"$schema": _SCHEMA, "flags": {}}
        except (OSError, ValueError) as exc:
            raise FlagError(f"cannot read flag file {self._path}: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("flags", {}), dict):
            raise FlagError(f"flag file {self._path} has no 'flags' object")
        document.setdefault("flags", {})
        return document

    def _write(self, key: str, target: TrafficTarget) -> int:
        document = self._load()
        previous = document["flags"].get(key)
        old = previous.get("metadata", {}).get("revision") if isinstance(previous, dict) else 0
        revision = max(_int(old) or 0, self._written.get(key, 0)) + 1
        document["flags"][key] = render_flag(self.config, key, target, revision=revision)
        data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
        try:
            write_atomically(self._path, data, mode=0o644)  # flagd sees the old or the new one
        except OSError as exc:
            raise FlagError(f"cannot write flag file {self._path}: {exc}") from exc
        return revision

    def _find(self, deployment: str) -> str | None:
        """The key of the flag whose metadata names ``deployment`` (after a restart)."""
        for key, flag in self._load()["flags"].items():
            metadata = flag.get("metadata") if isinstance(flag, dict) else None
            if isinstance(metadata, dict) and metadata.get("deployment") == deployment:
                return str(key)
        return None

    # -- flagd's OFREP API -----------------------------------------------------------------

    def _served_metadata(self, key: str) -> dict[str, Any] | None:
        """The metadata flagd returns when evaluating ``key``; None if flagd lacks the flag."""
        status, body = self._ofrep(key, {"context": {self.config.targeting_key: _READBACK_KEY}})
        if status == 404:
            return None
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise FlagError(f"flagd answered {status} with invalid JSON for {key!r}") from exc
        if status != 200:
            code = answer.get("errorCode") if isinstance(answer, dict) else None
            if code == "FLAG_NOT_FOUND":
                return None
            detail = answer.get("errorDetails", "") if isinstance(answer, dict) else ""
            raise FlagError(f"flagd could not evaluate {key!r}: {status} {code} {detail}".strip())
        metadata = answer.get("metadata") if isinstance(answer, dict) else None
        if not isinstance(metadata, dict) or metadata.get("managedBy") != _MANAGED_BY:
            raise FlagError(f"flagd serves flag {key!r}, but not as written by {_MANAGED_BY}")
        return metadata

    def _ofrep(self, key: str, payload: dict[str, Any]) -> tuple[int, bytes]:
        path = f"{self._prefix}/ofrep/v1/evaluate/flags/{urllib.parse.quote(key, safe='')}"
        factory = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = factory(self._host, self._port, timeout=self.config.timeout)
        try:
            connection.request(
                "POST",
                path,
                body=json.dumps(payload),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            response = connection.getresponse()
            return response.status, response.read()
        except OSError as exc:
            raise FlagError(f"flagd OFREP at {self.config.ofrep_url}: {exc}") from exc
        finally:
            connection.close()


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _target(percent: float) -> TrafficTarget:
    """A target for the examples above."""
    return TrafficTarget("shop-2024-06", "shop", "v1", "v2", percent)
