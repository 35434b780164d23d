"""Properties of the policy loader: any document gives a Policy or a PolicyError, and any
valid policy runs a short stream, gaps and far-future events included, within a time budget.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canarystream.engine import Engine
from canarystream.errors import ContractError, PolicyError
from canarystream.policy import Policy, load_policy, policy_from_mapping
from canarystream.policy.model import (
    MAX_CHECKS,
    MAX_DURATION,
    MAX_STAGES,
    MAX_TICK,
    MAX_TICKS_PER_WINDOW,
    MAX_UNITS_PER_SECOND,
    MIN_TICK,
)

T0 = 1_790_000_000.0
BUDGET_S = 20.0  # per example; a typical one takes well under a second


def _between(low: float, high: float) -> st.SearchStrategy[float]:
    """Floats in [low, high], the ends themselves drawn often."""
    return st.one_of(st.just(low), st.just(high), st.floats(low, high))


@st.composite
def _ordered(draw: st.DrawFn, low: float, high: float) -> tuple[float, float]:
    first = draw(_between(low, high))
    return first, draw(_between(first, high))


@st.composite
def _check(draw: st.DrawFn, index: int, tick: float) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            [
                "error_rate",
                "latency",
                "latency_shift",
                "gauge",
                "probe",
                "slo_error_rate",
                "slo_latency",
            ]
        )
    )
    check: dict[str, Any] = {
        "kind": kind,
        "name": f"c{index}",
        "critical": draw(st.booleans()),
        "weight": draw(_between(0.001, 1000)),
    }
    quantile = _between(0.001, 0.9999)
    if kind in ("error_rate", "probe"):
        tolerance, advance = draw(_ordered(1.0, 50.0))
        check |= {"tolerance": tolerance, "advance_tolerance": advance}
        check["promote_tolerance"] = draw(st.none() | _between(tolerance, advance))
        check["advance_abs_margin"] = draw(_between(0.0, 1.0))
    if kind == "error_rate":
        check["breakdown"] = draw(st.sampled_from([None, "endpoint", "dependency"]))
        check["error_statuses"] = draw(st.sampled_from(["500-599", "429,500-599", [503]]))
    if kind in ("latency", "latency_shift"):
        tolerance, advance = draw(_ordered(0.0, 10.0))
        check |= {"tolerance": tolerance, "advance_tolerance": advance}
        check["promote_tolerance"] = draw(st.none() | _between(tolerance, advance))
    if kind == "latency":
        check |= {"quantile": draw(quantile), "advance_abs_margin": draw(_between(0.0, 1.0))}
        check["breakdown"] = draw(st.sampled_from([None, "endpoint", "dependency"]))
    if kind == "latency_shift":
        check["min_ticks"] = draw(st.integers(3, 10_000))
    if kind == "gauge":
        tolerance, advance = draw(_ordered(0.0, 1e12))
        check |= {"tolerance": tolerance, "advance_tolerance": advance}
        check["metric"] = draw(st.sampled_from(["*", "cpu"]))
        check["window"] = draw(_between(tick, min(MAX_DURATION, tick * MAX_TICKS_PER_WINDOW)))
        check["min_windows"] = draw(st.integers(3, 10_000))
        check["direction"] = draw(st.sampled_from(["increase", "decrease"]))
    if kind == "slo_error_rate":
        check["max_error_rate"] = draw(_between(1e-6, 0.999))
    if kind == "slo_latency":
        check |= {"quantile": draw(quantile), "max_ms": draw(_between(0.001, 3_600_000))}
    return check


def _units(check: dict[str, Any]) -> int:
    dynamic = check.get("breakdown") or check.get("metric") == "*"
    return 16 if dynamic else 1


@st.composite
def valid_policies(draw: st.DrawFn) -> dict[str, Any]:
    """Policies drawn from the documented range of every field (the ends included)."""
    tick = draw(_between(MIN_TICK, MAX_TICK))
    span = _between(tick, MAX_DURATION)
    count = draw(st.one_of(st.integers(1, 6), st.just(MAX_STAGES)))
    percents = sorted(
        draw(st.lists(_between(0.001, 100.0), min_size=count, max_size=count, unique=True))
    )
    stages = []
    for percent in percents:
        low = draw(span)
        stages.append(
            {
                "traffic_percent": percent,
                "min_duration": low,
                "max_duration": draw(st.none() | _between(low, MAX_DURATION)),
                "min_samples": draw(st.integers(0, 10**9)),
                "approval": draw(st.booleans()),
            }
        )
    checks: list[dict[str, Any]] = []
    budget = math.floor(MAX_UNITS_PER_SECOND * tick)
    for index in range(draw(st.integers(1, MAX_CHECKS))):
        check = draw(_check(index, tick))
        if sum(map(_units, checks)) + _units(check) > budget:
            break
        checks.append(check)
    if not checks:
        checks = [{"kind": "error_rate"}]
    advance, promote = draw(_ordered(0.5001, 0.9999))
    hold = draw(span)
    window = _between(tick, min(MAX_DURATION, tick * MAX_TICKS_PER_WINDOW))
    return {
        "name": "drawn",
        "tick": tick,
        "alpha": draw(_between(1e-6, 0.4999)),
        "advance_confidence": advance,
        "promote_confidence": promote,
        "baseline_mode": draw(st.sampled_from(["stable", "paired"])),
        "stages": stages,
        "checks": checks,
        "deadline": draw(st.none() | span),
        "guards": {
            "baseline_drift": {
                "enabled": draw(st.booleans()),
                "threshold": draw(_between(1e-6, 1e6)),
                "allowance": draw(_between(0.0, 1000.0)),
                "cooldown": draw(_between(0.0, MAX_DURATION)),
            },
            "sample_ratio": {
                "enabled": draw(st.booleans()),
                "tolerance": draw(_between(0.001, 0.999)),
                "alpha": draw(_between(1e-6, 0.4999)),
                "settle": draw(_between(0.0, MAX_DURATION)),
            },
            "no_data": {"hold_after": hold, "rollback_after": draw(_between(hold, MAX_DURATION))},
        },
        "rollback_verification": {
            "window": draw(window),
            "error_ratio_tolerance": draw(_between(1.0, 50.0)),
            "error_abs_margin": draw(_between(0.0, 1.0)),
            "latency_tolerance": draw(_between(0.0, 10.0)),
            "confidence": draw(_between(0.5001, 0.9999)),
            "min_requests": draw(st.integers(1, 10**9)),
        },
        "admission": {
            "grace": draw(_between(0.0, 86_400.0)),
            "max_skew": draw(_between(2 * tick, 86_400.0)),
            "witnesses": draw(st.integers(1, 1_000)),
            "gap_witnesses": draw(st.integers(2, 10_000)),
            "idle_after": draw(_between(tick, 86_400.0)),
            "max_pending": draw(st.integers(1, 1_000_000)),
        },
    }


def _stream(tick: float, seed: int) -> list[dict[str, Any]]:
    """Telemetry of both cohorts over 40 ticks, a gap of 30 ticks, then events years ahead."""
    events: list[dict[str, Any]] = []
    step = tick / 4
    for k in range(160):
        ts = T0 + k * step
        for version in ("v1", "v2"):
            events.append(
                {
                    "type": "request",
                    "ts": ts,
                    "service": "checkout",
                    "version": version,
                    "latency_ms": 5.0 + (k * 7 + seed) % 40,
                    "status": 500 if (k + seed) % 13 == 0 else 200,
                    "endpoint": f"/e{k % 20}",
                    "dependency": f"d{k % 3}",
                }
            )
            if k % 4 == 0:
                events.append(
                    {
                        "type": "metric",
                        "ts": ts,
                        "service": "checkout",
                        "version": version,
                        "name": f"m{k % 20}",
                        "value": 0.5 + (k % 5) / 10,
                    }
                )
                events.append(
                    {
                        "type": "probe",
                        "ts": ts,
                        "service": "checkout",
                        "version": version,
                        "probe": "health",
                        "ok": (k + seed) % 11 != 0,
                    }
                )
    after_gap = T0 + 160 * step + 30 * tick
    for ts in [after_gap + i * step for i in range(40)] + [T0 + 3e8 + i for i in range(40)]:
        for version in ("v1", "v2"):
            events.append(
                {
                    "type": "request",
                    "ts": ts,
                    "service": "checkout",
                    "version": version,
                    "latency_ms": 10.0,
                    "status": 200,
                }
            )
    return events


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(document=valid_policies(), seed=st.integers(0, 1000))
def test_any_valid_policy_runs_a_stream_within_the_budget(
    document: dict[str, Any], seed: int
) -> None:
    policy = policy_from_mapping(document)  # valid by construction
    engine = Engine()
    started = time.perf_counter()
    engine.process(
        {
            "type": "deployment_started",
            "ts": T0,
            "deployment": "checkout-42",
            "service": "checkout",
            "baseline_version": "v1",
            "canary_version": "v2",
            "policy": document,
        }
    )
    for event in _stream(policy.tick, seed):
        # Out-of-range times are rejected by admission; what matters is the time taken.
        with contextlib.suppress(ContractError):
            engine.process(event)
    elapsed = time.perf_counter() - started
    assert elapsed < BUDGET_S, f"{elapsed:.1f} s for tick {policy.tick:g}"


# Documents of any shape: scalars of every kind, nested lists and mappings whose keys are
# mostly the policy's own field names, so that the values reach the validators behind them.
_KEYS = st.sampled_from(
    sorted(
        {
            *Policy.model_fields,
            "traffic_percent",
            "min_duration",
            "max_duration",
            "min_samples",
            "approval",
            "kind",
            "tolerance",
            "advance_tolerance",
            "promote_tolerance",
            "error_statuses",
            "breakdown",
            "quantile",
            "window",
            "metric",
            "weight",
            "baseline_drift",
            "no_data",
            "hold_after",
            "rollback_after",
            "max_skew",
        }
    )
) | st.text(max_size=8)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["6m", "1e400", "9" * 400, "500-599", "gauge", "error_rate", "-1s"])
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=40,
)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _leaves(item, (*path, key))] or [path]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _leaves(item, (*path, i))] or [path]
    return [path]


@st.composite
def _mutated(draw: st.DrawFn) -> Any:
    """A valid policy with one value anywhere in it replaced by an arbitrary document."""
    document = draw(valid_policies())
    path = draw(st.sampled_from(_leaves(document)))
    replacement = draw(_DOCUMENTS)
    if not path:
        return replacement
    node = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = replacement
    return document


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_DOCUMENTS | st.dictionaries(_KEYS, _DOCUMENTS, max_size=8) | _mutated())
def test_any_document_gives_a_policy_or_a_policy_error(document: Any) -> None:
    try:
        policy = policy_from_mapping(document)
    except PolicyError as exc:
        assert "policy" in str(exc)
    else:
        assert isinstance(policy, Policy)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    text=st.one_of(
        st.text(max_size=200),
        _DOCUMENTS.map(lambda d: yaml.safe_dump(d, default_flow_style=True)),
        st.integers(1, 3_000).map(lambda depth: "[" * depth + "]" * depth),
        st.integers(1, 3_000).map(lambda depth: "{a: " * depth + "1" + "}" * depth),
        st.integers(4_400, 6_000).map(lambda digits: "tick: " + "9" * digits),
        st.just("a: &a [*a]\nb: *a\n"),
    ),
    suffix=st.sampled_from([".yaml", ".json"]),
)
def test_any_file_gives_a_policy_or_a_policy_error(text: str, suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"drawn{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_policy(path)
    except PolicyError as exc:
        assert str(path) in str(exc)
