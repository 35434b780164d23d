"""Unleash flag provider: the canary share as the gradual-rollout percentage of a feature toggle.

Each service gets one feature toggle in a project, ``<service>-canary`` by default, of type
``release``. In one environment the toggle is switched on with exactly one strategy, a
``flexibleRollout`` (Unleash's *gradual rollout*) whose ``rollout`` parameter is the canary
share: an SDK asked ``is_enabled(feature, context)`` answers True, serve the canary, for that
share of users. Unleash hashes the ``groupId`` (the feature name) with the stickiness property
(``default``: the user id, else the session id, else random), so a user keeps their answer while
the share grows. Unleash serves whole percents: a share is rounded half up, and a share strictly
between 0 and 100 never rounds to 0 or 100 (0.2 % serves 1 %). At 0 % the toggle stays on with a
rollout of 0, so nobody gets the canary and the read-back still names the deployment.

The provider owns the toggle's strategies in its environment: any other strategy there is
deleted (after the canarystream strategy is in place, so the toggle is never left without one)
because it would expose users beyond the canary share. The strategy's title names the
deployment, so the read-back, from the same Admin API, reports only the share written for that
deployment; after a restart the provider finds the toggle by that title. Everything goes through
Unleash's Admin API with an admin API token; a write is skipped when Unleash already holds the
wanted state, so applying the same target twice changes nothing.

>>> config = UnleashConfig(url="http://127.0.0.1:4242", admin_token="*:*.secret")
>>> render_strategy(config, "shop-canary", _target(10.0))["parameters"]
{'rollout': '10', 'stickiness': 'default', 'groupId': 'shop-canary'}
>>> render_strategy(config, "shop-canary", _target(0.2))["parameters"]["rollout"]
'1'
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import urllib.parse
from typing import Any

from pydantic import Field, field_validator

from canarystream.actuators.base import TrafficTarget, split_weights
from canarystream.actuators.config import BackendConfig
from canarystream.errors import FlagError

__all__ = ["UnleashConfig", "UnleashProvider", "render_strategy"]

_MANAGED_BY = "canarystream"
_STRATEGY = "flexibleRollout"


class UnleashConfig(BackendConfig):
    """Where Unleash's Admin API is, with which token, and which toggle to roll out where."""

    url: str = Field(
        description="Unleash's base URL, e.g. http://127.0.0.1:4242 (a base path is kept)."
    )
    admin_token: str = Field(
        repr=False,
        description="An admin API token (prefer the environment variable: a command line is "
        "visible to every user of the machine).",
    )
    project: str = Field(default="default", description="Project that holds the toggles.")
    environment: str = Field(
        default="development", description="Environment whose strategy carries the canary share."
    )
    feature: str = Field(
        default="{service}-canary",
        description="Toggle name; '{service}' stands for the decision's service.",
    )
    stickiness: str = Field(
        default="default",
        description="Context field that buckets users ('default': user id, then session id...).",
    )
    timeout: float = Field(default=5.0, description="Seconds for one Admin API request.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        url = urllib.parse.urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("admin_token")
    @classmethod
    def _token(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be an Unleash admin API token")
        return value

    @field_validator("project", "environment", "stickiness")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("feature")
    @classmethod
    def _feature(cls, value: str) -> str:
        if "{service}" not in value:
            raise ValueError(f"{value!r} must contain '{{service}}'")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"{value} is not positive")
        return value

    def feature_for(self, service: str) -> str:
        """The toggle name of ``service``."""
        return self.feature.format(service=service)

    def matches(self, name: str) -> bool:
        """Whether ``name`` could be the toggle of some service under this template."""
        pattern = ".+".join(re.escape(part) for part in self.feature.split("{service}"))
        return re.fullmatch(pattern, name) is not None


def _title(deployment: str) -> str:
    return f"{_MANAGED_BY}:{deployment}"


def render_strategy(config: UnleashConfig, feature: str, target: TrafficTarget) -> dict[str, Any]:
    """The gradual-rollout strategy of toggle ``feature`` for ``target.canary_percent`` %."""
    _, rollout = split_weights(target.canary_percent, 100)
    return {
        "name": _STRATEGY,
        "title": _title(target.deployment),
        "disabled": False,
        "constraints": [],
        "segments": [],
        "variants": [],
        "parameters": {
            "rollout": str(rollout),
            "stickiness": config.stickiness,
            "groupId": feature,
        },
    }


class UnleashProvider:
    """Rolls a canary out through a feature toggle's gradual-rollout strategy in Unleash."""

    kind = "unleash"

    def __init__(self, config: UnleashConfig) -> None:
        self.config = config
        url = urllib.parse.urlsplit(config.url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        project = urllib.parse.quote(config.project, safe="")
        self._features_path = f"/api/admin/projects/{project}/features"
        self._features: dict[str, str] = {}  # deployment -> toggle name
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        """The toggles, their project and environment, and where Unleash is."""
        config = self.config
        return (
            f"Unleash toggle {config.feature} in project {config.project}, environment "
            f"{config.environment}, at {config.url}"
        )

    async def set_share(self, target: TrafficTarget) -> None:
        """Make the toggle of ``target.service`` serve the canary to ``target.canary_percent``
        % of users in the configured environment, creating (or reviving) the toggle first."""
        feature = self.config.feature_for(target.service)
        async with self._lock:
            await asyncio.to_thread(self._apply, feature, target)
            self._features[target.deployment] = feature

    async def get_share(self, deployment: str) -> float | None:
        """The canary share Unleash holds for ``deployment``'s toggle: the rollout of its
        strategy, 0 when the toggle is off in the environment, and None when no toggle carries
        a strategy written for this deployment."""
        feature = self._features.get(deployment)
        if feature is None:
            feature = await asyncio.to_thread(self._find, deployment)
            if feature is None:
                return None
        state = await asyncio.to_thread(self._environment, feature)
        if state is None:
            return None
        return _rollout_of(feature, state, deployment)

    async def close(self) -> None:
        """Nothing to release: each request opens its own connection."""

    # -- applying --------------------------------------------------------------------------

    def _apply(self, feature: str, target: TrafficTarget) -> None:
        state = self._environment(feature)
        if state is None:
            self._create(feature, target)
            state = self._environment(feature)
            if state is None:
                raise FlagError(f"Unleash did not keep feature {feature!r} it had just created")
        wanted = render_strategy(self.config, feature, target)
        strategies = [s for s in state.get("strategies") or [] if isinstance(s, dict)]
        ours = next((s for s in strategies if _is_ours(s)), None)
        path = self._environment_path(feature) + "/strategies"
        if ours is None:
            self._request("POST", path, wanted)
        elif not _same(ours, wanted):
            self._request("PUT", f"{path}/{_quote(ours.get('id'))}", wanted)
        for strategy in strategies:
            if strategy is not ours:
                # Anything else would expose users beyond the canary share.
                self._request("DELETE", f"{path}/{_quote(strategy.get('id'))}")
        if state.get("enabled") is not True:
            self._request("POST", self._environment_path(feature) + "/on")

    def _create(self, feature: str, target: TrafficTarget) -> None:
        description = (
            f"Canary of {target.service}, rolled out by {_MANAGED_BY}; "
            f"it owns the strategies in {self.config.environment!r}"
        )
        body = {"name": feature, "type": "release", "description": description}
        status, answer = self._call("POST", self._features_path, body)
        if status in (200, 201):
            return
        message = _message(answer)
        if status == 409 and "archived" in message.lower():
            # A toggle archived by hand keeps its name; bring it back rather than fail.
            revive = {"features": [feature]}
            project = urllib.parse.quote(self.config.project, safe="")
            self._request("POST", f"/api/admin/projects/{project}/revive", revive)
            return
        if status == 409:
            raise FlagError(
                f"Unleash feature {feature!r} exists outside project {self.config.project!r} "
                f"({message}): names are global in Unleash, choose another feature template"
            )
        raise self._error("POST", self._features_path, status, answer)

    # -- reading ---------------------------------------------------------------------------

    def _environment(self, feature: str) -> dict[str, Any] | None:
        """The toggle's state in the environment: ``enabled`` and ``strategies``; None when
        the project has no such toggle, or only an archived one (served to nobody)."""
        path = f"{self._features_path}/{_quote(feature)}"
        status, answer = self._call("GET", path)
        if status == 404:
            return None
        if status != 200 or not isinstance(answer, dict):
            raise self._error("GET", path, status, answer)
        for environment in answer.get("environments") or []:
            if isinstance(environment, dict) and environment.get("name") == self.config.environment:
                return environment
        raise FlagError(
            f"Unleash has no environment {self.config.environment!r} for feature {feature!r} "
            f"in project {self.config.project!r}"
        )

    def _find(self, deployment: str) -> str | None:
        """The toggle whose canarystream strategy names ``deployment`` (after a restart)."""
        answer = self._request("GET", self._features_path)
        features = answer.get("features") if isinstance(answer, dict) else None
        for entry in features or []:
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not self.config.matches(name):
                continue
            state = self._environment(name)
            strategies = (state or {}).get("strategies") or []
            if any(_is_ours(s) and s.get("title") == _title(deployment) for s in strategies):
                return name
        return None

    # -- HTTP --------------------------------------------------------------------------------

    def _environment_path(self, feature: str) -> str:
        environment = urllib.parse.quote(self.config.environment, safe="")
        return f"{self._features_path}/{_quote(feature)}/environments/{environment}"

    def _request(self, method: str, path: str, body: object = None) -> Any:
        """Call the Admin API and return the decoded answer; any non-2xx answer is an error."""
        status, answer = self._call(method, path, body)
        if not 200 <= status < 300:
            raise self._error(method, path, status, answer)
        return answer

    def _call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        factory = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = factory(self._host, self._port, timeout=self.config.timeout)
        headers = {"Authorization": self.config.admin_token, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, self._prefix + path, body=data, headers=headers)
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except OSError as exc:
            raise FlagError(f"Unleash at {self.config.url}: {method} {path}: {exc}") from exc
        finally:
            connection.close()
        if not raw.strip():
            return status, None
        try:
            return status, json.loads(raw)
        except ValueError:
            if 200 <= status < 300:
                raise FlagError(
                    f"Unleash answered {method} {path} with {status} and no JSON"
                ) from None
            return status, raw.decode(errors="replace")[:200]

    def _error(self, method: str, path: str, status: int, answer: object) -> FlagError:
        message = _message(answer)
        if status in (401, 403):
            why = "refused the admin token" if status == 401 else "denied the admin token"
            return FlagError(f"Unleash at {self.config.url} {why} ({status}): {message}")
        return FlagError(f"Unleash {method} {path} failed with {status}: {message}")


def _is_ours(strategy: object) -> bool:
    if not isinstance(strategy, dict) or strategy.get("name") != _STRATEGY:
        return False
    title = strategy.get("title")
    return isinstance(title, str) and title.startswith(f"{_MANAGED_BY}:")


def _same(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether ``current`` already serves as ``wanted`` does (ids and order aside)."""
    return (
        current.get("title") == wanted["title"]
        and not current.get("disabled")
        and not current.get("constraints")
        and not current.get("segments")
        and not current.get("variants")
        and current.get("parameters") == wanted["parameters"]
    )


def _rollout_of(feature: str, state: dict[str, Any], deployment: str) -> float | None:
    strategies = [s for s in state.get("strategies") or [] if isinstance(s, dict)]
    ours = next((s for s in strategies if _is_ours(s)), None)
    if ours is None or ours.get("title") != _title(deployment):
        return None
    others = [s for s in strategies if s is not ours and not s.get("disabled")]
    if others:
        names = ", ".join(str(s.get("name")) for s in others)
        raise FlagError(
            f"Unleash feature {feature!r} has other active strategies ({names}): "
            "its exposure is not the canary rollout alone"
        )
    if ours.get("constraints") or ours.get("segments"):
        raise FlagError(
            f"Unleash feature {feature!r}: the canarystream strategy has constraints or "
            "segments added, so its rollout is not the canary share"
        )
    if state.get("enabled") is not True or ours.get("disabled"):
        return 0.0
    rollout: Any = (ours.get("parameters") or {}).get("rollout")  # any JSON value
    try:
        percent = float(rollout)
    except (TypeError, ValueError):
        percent = float("nan")
    if not 0.0 <= percent <= 100.0:
        raise FlagError(f"Unleash feature {feature!r} has an invalid rollout {rollout!r}")
    return percent


def _message(answer: object) -> str:
    if isinstance(answer, dict):
        details = answer.get("details")
        if isinstance(details, list) and details and isinstance(details[0], dict):
            detail = details[0].get("description") or details[0].get("message")
            if detail:
                return str(detail)
        if answer.get("message"):
            return str(answer["message"])
    return str(answer or "no details")


def _quote(value: object) -> str:
    return urllib.parse.quote(str(value), safe="")


def _target(percent: float) -> TrafficTarget:
    """A target for the examples above."""
    return TrafficTarget("shop-2024-06", "shop", "v1", "v2", percent)
