"""Scenario: the declarative description of one simulated rollout.

A scenario says how a service behaves (traffic, latency, errors, endpoints, dependencies,
gauges, probes), what happens to both cohorts (load patterns, global incidents) and what is
wrong with the canary, if anything (a ``regression``, a silent canary, a benign offset).
Times inside a scenario are seconds after ``start_ts``; durations also accept strings such as
``"6m"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from canarystream.contracts.events import MAX_TS, MIN_TS
from canarystream.documents import read_document
from canarystream.errors import ConfigError, field_errors
from canarystream.policy.model import Policy, parse_duration

__all__ = [
    "Dependency",
    "Endpoint",
    "ErrorsAdd",
    "ErrorsMult",
    "GaugeShift",
    "GaugeSpec",
    "Gradual",
    "Incident",
    "LatencyModel",
    "LatencyMult",
    "LoadPattern",
    "ProbeSpec",
    "Regression",
    "RoutingStep",
    "Scenario",
    "TailOnly",
    "Traffic",
    "load_scenarios",
    "scenario_from_mapping",
]

Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(min_length=1, max_length=256)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Factor = Annotated[float, Field(gt=0.0, le=1000.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoadPattern(_Strict):
    """Shape of the request rate over time, shared by both cohorts.

    The rate multiplier at ``t`` seconds after the start is
    ``(1 + (ramp_factor - 1) * t / duration) * (1 + diurnal_amplitude * sin(2 pi t / period))``.
    """

    ramp_factor: float = Field(
        default=1.0,
        gt=0.0,
        le=100.0,
        description="Load at the end of the scenario relative to its start (linear ramp); "
        "1 means constant load.",
    )
    diurnal_amplitude: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Relative amplitude of a sinusoidal load cycle; 0 means none.",
    )
    diurnal_period: Duration = Field(
        default=86_400.0, gt=0.0, description="Period of the load cycle (s)."
    )

    def multiplier(self, t: np.ndarray | float, duration: float) -> np.ndarray:
        """Load multiplier at ``t`` seconds after the start (scalar or numpy array)."""
        t = np.asarray(t, dtype=float)
        ramp = 1.0 + (self.ramp_factor - 1.0) * t / duration
        if self.diurnal_amplitude == 0.0:
            return ramp
        return ramp * (
            1.0 + self.diurnal_amplitude * np.sin(2.0 * math.pi * t / self.diurnal_period)
        )


class Traffic(_Strict):
    """How requests reach the two cohorts."""

    baseline_mode: Literal["stable", "paired"] = Field(
        default="stable",
        description="stable: the canary receives total_rps x share and the baseline the rest; "
        "paired: each cohort receives cohort_rps while the rollout runs (the policy must use "
        "baseline_mode paired too).",
    )
    total_rps: float = Field(
        default=200.0,
        ge=0.0,
        le=1e6,
        description="Requests per second of the whole service at load 1. In paired mode it is "
        "the canary's rate once promoted.",
    )
    cohort_rps: float = Field(
        default=20.0,
        ge=0.0,
        le=1e6,
        description="Paired mode: requests per second of each cohort at load 1.",
    )
    load: LoadPattern = Field(default_factory=LoadPattern, description="Shared load pattern.")


class LatencyModel(_Strict):
    """Lognormal request latency: ``median_ms * exp(sigma * Z)`` before any multiplier."""

    median_ms: float = Field(default=50.0, gt=0.0, le=600_000.0, description="Median (ms).")
    sigma: float = Field(
        default=0.4, ge=0.0, le=3.0, description="Standard deviation of log latency."
    )
    load_sensitivity: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description="Relative latency increase per unit of load above 1 (queueing), in both "
        "cohorts: the multiplier is 1 + load_sensitivity x (load - 1), at least 0.1.",
    )


class Dependency(_Strict):
    """A critical dependency that requests go through (database, cache, external API...)."""

    name: Name = Field(description="Value of the requests' dependency field.")
    kind: Literal["db", "cache", "external", "queue", "service"] = Field(
        default="service", description="What the dependency is; informative only."
    )
    latency_mult: Factor = Field(default=1.0, description="Latency multiplier of its requests.")
    error_mult: float = Field(
        default=1.0, ge=0.0, le=1000.0, description="Error-rate multiplier of its requests."
    )


class Endpoint(_Strict):
    """A route of the service and its share of requests."""

    name: Name = Field(description="Value of the requests' endpoint field.")
    weight: float = Field(gt=0.0, description="Relative share of requests (normalised).")
    latency_mult: Factor = Field(default=1.0, description="Latency multiplier of this route.")
    error_mult: float = Field(
        default=1.0, ge=0.0, le=1000.0, description="Error-rate multiplier of this route."
    )
    dependencies: list[Name] = Field(
        default_factory=list,
        description="Dependencies this route uses; each request goes through one of them, "
        "chosen uniformly. Empty means requests carry no dependency.",
    )


class GaugeSpec(_Strict):
    """A gauge every instance samples periodically (cpu_utilization, db_pool_saturation...).

    Instances are assumed scaled with their cohort's traffic, so a gauge follows the shared
    load pattern, not the canary's share.
    """

    name: Name = Field(description="Metric name of the samples.")
    mean: float = Field(description="Level at load 1.")
    noise: float = Field(default=0.02, ge=0.0, description="Standard deviation of a sample.")
    load_sensitivity: float = Field(
        default=0.0,
        description="Relative change of the level per unit of load above 1: level is "
        "mean x (1 + load_sensitivity x (load - 1)).",
    )
    interval: Duration = Field(default=10.0, gt=0.0, description="Sampling period (s).")
    low: float | None = Field(default=0.0, description="Samples are clipped at this; None: no.")
    high: float | None = Field(default=1.0, description="Samples are clipped at this; None: no.")

    @model_validator(mode="after")
    def _bounds(self) -> GaugeSpec:
        if self.low is not None and self.high is not None and self.high < self.low:
            raise ValueError("high must be at least low")
        return self


class ProbeSpec(_Strict):
    """A synthetic check run against each cohort periodically."""

    name: Name = Field(default="health", description="Probe name of the results.")
    interval: Duration = Field(default=15.0, gt=0.0, description="Period per cohort (s).")
    failure_rate: Probability = Field(default=0.002, description="Chance a probe fails.")


class Incident(_Strict):
    """A global incident: both cohorts degrade together (a shared dependency, a bad zone)."""

    start: Duration = Field(description="Seconds after the scenario's start.")
    duration: Duration = Field(gt=0.0, description="How long it lasts (s).")
    error_add: Probability = Field(
        default=0.0, description="Added to every request's error probability."
    )
    latency_mult: Factor = Field(default=1.0, description="Latency multiplier meanwhile.")


class _Regression(_Strict):
    onset: Duration = Field(default=0.0, description="Seconds after the start it begins.")


class _Scoped(_Regression):
    endpoint: Name | None = Field(
        default=None, description="Only requests of this endpoint regress; None: all."
    )
    dependency: Name | None = Field(
        default=None, description="Only requests through this dependency regress; None: all."
    )


class ErrorsMult(_Scoped):
    """The canary's error probability is multiplied by ``factor``."""

    kind: Literal["errors_mult"] = Field(default="errors_mult", description="Regression kind.")
    factor: float = Field(ge=0.0, le=1000.0, description="Error-rate multiplier.")


class ErrorsAdd(_Scoped):
    """The canary's error probability rises by ``add`` (0.02 = +2 percentage points)."""

    kind: Literal["errors_add"] = Field(default="errors_add", description="Regression kind.")
    add: Probability = Field(description="Added error probability.")


class LatencyMult(_Scoped):
    """Every canary request is ``factor`` times slower."""

    kind: Literal["latency_mult"] = Field(default="latency_mult", description="Regression kind.")
    factor: Factor = Field(description="Latency multiplier.")


class TailOnly(_Scoped):
    """Only the slowest ``fraction`` of canary requests get ``factor`` times slower.

    A request belongs to the tail when its lognormal draw lies above the ``1 - fraction``
    quantile, so the median is untouched and quantiles above ``1 - fraction`` scale by
    ``factor``.
    """

    kind: Literal["tail_only"] = Field(default="tail_only", description="Regression kind.")
    factor: Factor = Field(description="Latency multiplier of tail requests.")
    fraction: float = Field(default=0.05, gt=0.0, lt=1.0, description="Share of requests hit.")


class Gradual(_Scoped):
    """A drift growing linearly from onset: ``1 + (factor - 1) * (t - onset) / ramp``.

    The multiplier reaches ``factor`` ``ramp`` seconds after onset and keeps growing at the
    same rate, like a leak.
    """

    kind: Literal["gradual"] = Field(default="gradual", description="Regression kind.")
    target: Literal["latency", "errors"] = Field(description="What drifts.")
    factor: Factor = Field(description="Multiplier reached ramp seconds after onset.")
    ramp: Duration = Field(default=600.0, gt=0.0, description="Seconds to reach factor.")


class GaugeShift(_Regression):
    """One canary gauge shifts up by an absolute amount; requests are unaffected."""

    kind: Literal["gauge_only"] = Field(default="gauge_only", description="Regression kind.")
    gauge: Name = Field(description="Name of the gauge that shifts.")
    add: float = Field(description="Absolute shift of its samples.")


class RoutingStep(_Strict):
    """From ``at`` seconds after the start on, the router gives the canary ``percent``."""

    at: Duration = Field(ge=0.0, description="Seconds after the start the share takes effect.")
    percent: float = Field(ge=0.0, le=100.0, description="The canary's traffic share (%).")


Regression = Annotated[
    ErrorsMult | ErrorsAdd | LatencyMult | TailOnly | Gradual | GaugeShift,
    Field(discriminator="kind"),
]


def _default_dependencies() -> list[Dependency]:
    return [
        Dependency(name="cache", kind="cache", latency_mult=0.8),
        Dependency(name="postgres", kind="db", latency_mult=1.3),
        Dependency(name="payments-api", kind="external", latency_mult=1.8, error_mult=2.0),
    ]


def _default_endpoints() -> list[Endpoint]:
    return [
        Endpoint(name="/browse", weight=0.7, error_mult=0.5, dependencies=["cache"]),
        Endpoint(name="/cart", weight=0.2, dependencies=["postgres"]),
        Endpoint(
            name="/pay",
            weight=0.1,
            latency_mult=1.5,
            error_mult=2.0,
            dependencies=["payments-api", "postgres"],
        ),
    ]


def _default_gauges() -> list[GaugeSpec]:
    return [
        GaugeSpec(name="cpu_utilization", mean=0.45, noise=0.03, load_sensitivity=0.8),
        GaugeSpec(name="db_pool_saturation", mean=0.30, noise=0.04, load_sensitivity=1.0),
    ]


class Scenario(_Strict):
    """One simulated rollout: a service, its two versions, their telemetry and what goes wrong."""

    deployment: Name = Field(description="Id of the rollout (deployment_started.deployment).")
    service: Name = Field(description="Service name carried by every event.")
    baseline_version: Name = Field(default="v1", description="Version of the baseline cohort.")
    canary_version: Name = Field(default="v2", description="Version of the canary cohort.")
    policy: Name | dict[str, Any] | None = Field(
        default=None,
        description="Policy name or inline policy passed through on deployment_started; "
        "None means the engine's default.",
    )
    start_ts: float = Field(
        default=1_790_000_000.0,
        ge=MIN_TS,
        le=MAX_TS,
        description="Epoch seconds of the deployment_started event; telemetry starts there.",
    )
    duration: Duration = Field(
        default=2_100.0, gt=0.0, le=30 * 86_400.0, description="Length of the simulation (s)."
    )
    seed_offset: int = Field(
        default=0,
        ge=0,
        description="Mixed into the run's seed to give this scenario its own draws.",
    )
    traffic: Traffic = Field(default_factory=Traffic, description="Request rates and load.")
    latency: LatencyModel = Field(
        default_factory=LatencyModel, description="Latency of a request before multipliers."
    )
    instances: int = Field(default=3, ge=1, le=1000, description="Instances per cohort.")
    instance_spread: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Per-instance latency heterogeneity: standard deviation of the log of each "
        "instance's fixed multiplier (0.03 is about 3 %).",
    )
    error_rate: Probability = Field(
        default=0.005, description="Base probability that a request fails (status 5xx)."
    )
    client_error_rate: Probability = Field(
        default=0.01, description="Probability of a 4xx answer, which is not an error."
    )
    endpoints: list[Endpoint] = Field(
        default_factory=_default_endpoints,
        min_length=1,
        description="Routes; default /browse (cache), /cart (postgres), /pay (payments-api "
        "or postgres).",
    )
    dependencies: list[Dependency] = Field(
        default_factory=_default_dependencies, description="Dependencies endpoints may use."
    )
    gauges: list[GaugeSpec] = Field(
        default_factory=_default_gauges,
        description="Gauges; default cpu_utilization and db_pool_saturation.",
    )
    probes: list[ProbeSpec] = Field(
        default_factory=lambda: [ProbeSpec()], description="Synthetic probes; default 'health'."
    )
    incidents: list[Incident] = Field(default_factory=list, description="Global incidents.")
    canary_silent_from: Duration | None = Field(
        default=None,
        description="The canary emits no telemetry from this many seconds after the start "
        "(0: it never starts); None: it never falls silent.",
    )
    canary_latency_factor: Factor = Field(
        default=1.0, description="A benign, constant canary latency multiplier (e.g. 1.02)."
    )
    regression: Regression | None = Field(
        default=None, description="What is wrong with the canary; None: nothing."
    )
    routing: list[RoutingStep] | None = Field(
        default=None,
        min_length=1,
        description="Open loop: the canary's traffic share follows these steps (times strictly "
        "increasing, within the duration; 0 before the first) whatever the engine decides, "
        "and each change is recorded as a traffic_shifted event, as a recording of a rollout "
        "routed by something else would hold it. None: closed loop, the share follows the "
        "engine's decisions.",
    )

    @property
    def end_ts(self) -> float:
        """Epoch seconds at which the simulation ends."""
        return self.start_ts + self.duration

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.canary_version == self.baseline_version:
            raise ValueError("canary_version: must differ from baseline_version")
        if self.end_ts > MAX_TS:
            raise ValueError("duration: start_ts + duration lies beyond the contract's time range")
        _unique("endpoints", [e.name for e in self.endpoints])
        _unique("dependencies", [d.name for d in self.dependencies])
        _unique("gauges", [g.name for g in self.gauges])
        _unique("probes", [p.name for p in self.probes])
        known = {d.name for d in self.dependencies}
        for index, endpoint in enumerate(self.endpoints):
            for name in endpoint.dependencies:
                if name not in known:
                    raise ValueError(f"endpoints.{index}.dependencies: unknown dependency {name!r}")
        self._check_regression()
        self._check_policy()
        self._check_routing()
        return self

    def _check_routing(self) -> None:
        previous = -math.inf
        for index, step in enumerate(self.routing or ()):
            if step.at <= previous:
                raise ValueError(f"routing.{index}.at: times must increase strictly")
            if step.at >= self.duration:
                raise ValueError(
                    f"routing.{index}.at: {step.at:g} s is not within the duration "
                    f"({self.duration:g} s)"
                )
            previous = step.at

    def _check_regression(self) -> None:
        regression = self.regression
        if isinstance(regression, GaugeShift):
            if regression.gauge not in {g.name for g in self.gauges}:
                raise ValueError(f"regression.gauge: unknown gauge {regression.gauge!r}")
        elif regression is not None:
            if regression.endpoint is not None and regression.endpoint not in {
                e.name for e in self.endpoints
            }:
                raise ValueError(f"regression.endpoint: unknown endpoint {regression.endpoint!r}")
            if regression.dependency is not None and regression.dependency not in {
                d.name for d in self.dependencies
            }:
                raise ValueError(
                    f"regression.dependency: unknown dependency {regression.dependency!r}"
                )

    def _check_policy(self) -> None:
        mode = self.traffic.baseline_mode
        if self.policy is None:
            if mode == "paired":
                raise ValueError(
                    "policy: paired traffic needs a policy with baseline_mode paired "
                    "(the default policy is stable)"
                )
            return
        if isinstance(self.policy, str):
            return
        try:
            policy = Policy.model_validate(self.policy)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"policy.{where}: {first['msg']}") from None
        if policy.baseline_mode != mode:
            raise ValueError(
                f"policy.baseline_mode: {policy.baseline_mode!r} does not match "
                f"traffic.baseline_mode {mode!r}"
            )

    def override(  # noqa: PLR0913 -- keyword-only overrides
        self,
        *,
        rps: float | None = None,
        duration: float | str | None = None,
        service: str | None = None,
        deployment: str | None = None,
        seed_offset: int | None = None,
        start_ts: float | None = None,
        routing: list[dict[str, float]] | None = None,
    ) -> Scenario:
        """A validated copy with common knobs changed.

        ``rps`` sets ``total_rps`` in stable mode and ``cohort_rps`` in paired mode;
        ``routing`` (steps as mappings) makes the run open loop.
        """
        data = self.model_dump()
        if rps is not None:
            key = "cohort_rps" if self.traffic.baseline_mode == "paired" else "total_rps"
            data["traffic"][key] = rps
        updates = {
            "duration": duration,
            "service": service,
            "deployment": deployment,
            "seed_offset": seed_offset,
            "start_ts": start_ts,
            "routing": routing,
        }
        data.update({key: value for key, value in updates.items() if value is not None})
        return scenario_from_mapping(data, source=f"scenario {self.deployment!r}")


def _unique(field: str, names: list[str]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise ValueError(f"{field}.{index}: duplicate name {name!r}")
        seen.add(name)


def scenario_from_mapping(data: Any, *, source: str = "scenario") -> Scenario:
    """Validate a decoded scenario; errors name the field, e.g. ``traffic.total_rps``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a scenario is a mapping, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        # Cross-field checks already name their field in the message.
        lines = [f"  {where}: {msg}" if where else f"  {msg}" for where, msg in field_errors(exc)]
        raise ConfigError(f"{source}: invalid scenario\n" + "\n".join(lines)) from exc


def load_scenarios(path: str | Path) -> list[Scenario]:
    """Load a scenario file (``.yaml``, ``.yml`` or ``.json``): one mapping or a list of them."""
    data = read_document(path, "scenario", ConfigError)
    if isinstance(data, list):
        if not data:
            raise ConfigError(f"{path}: the list of scenarios is empty")
        return [
            scenario_from_mapping(item, source=f"{path}: scenarios.{i}")
            for i, item in enumerate(data)
        ]
    return [scenario_from_mapping(data, source=str(path))]
