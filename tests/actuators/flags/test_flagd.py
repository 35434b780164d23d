"""flagd flag provider: the flag file it writes, checked by OpenFeature's SDK and flagd provider,
read back from a real flagd (or, where none is built, an OFREP stand-in), driven by the Actuator.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from scipy.stats import binom

from canarystream.actuators import Actuator, FlagdConfig, FlagdProvider, RetryPolicy
from canarystream.actuators.base import TrafficBackend, TrafficTarget
from canarystream.actuators.flags.flagd import render_flag
from canarystream.contracts.actuation import ActuationStatus
from canarystream.contracts.decision import Action, Phase
from canarystream.contracts.signing import Signer
from canarystream.errors import ConfigError, FlagError
from tests.actuators.flags.conftest import FlagService
from tests.support.actuators import DEPLOYMENT, EVERY_SERVICE, make_decision
from tests.support.services import free_ports, require_module

FLAG = "shop-canary"
KEYS = [f"user-{i}" for i in range(2000)]
SIGNER = Signer.hmac(b"flagd test key")


def _target(percent: float, deployment: str = DEPLOYMENT) -> TrafficTarget:
    return TrafficTarget(deployment, "shop", "v1", "v2", percent)


def _provider(service: FlagService | Path, **kwargs: object) -> FlagdProvider:
    if isinstance(service, Path):
        (port,) = free_ports(1)  # nothing listens there
        return FlagdProvider(FlagdConfig(path=str(service), ofrep_url=f"http://127.0.0.1:{port}"))
    config = FlagdConfig(path=str(service.path), ofrep_url=service.ofrep_url, **kwargs)  # type: ignore[arg-type]
    return FlagdProvider(config)


@contextmanager
def _openfeature(**provider_args: object) -> Iterator[object]:
    """An OpenFeature client backed by OpenFeature's flagd provider, in its own domain."""
    require_module("openfeature.contrib.provider.flagd")
    from openfeature import api  # noqa: PLC0415
    from openfeature.contrib.provider.flagd import FlagdProvider as OpenFeatureFlagd  # noqa: PLC0415
    from openfeature.contrib.provider.flagd.config import CacheType  # noqa: PLC0415

    provider = OpenFeatureFlagd(cache=CacheType.DISABLED, **provider_args)  # type: ignore[arg-type]
    domain = f"canarystream-test-{uuid.uuid4()}"
    api.set_provider_and_wait(provider, domain)
    try:
        yield api.get_client(domain)
    finally:
        provider.shutdown()


def _variants(client: object, keys: list[str] = KEYS) -> list[str]:
    """The variant of the canary flag for each targeting key, asserting no evaluation failed."""
    from openfeature.evaluation_context import EvaluationContext  # noqa: PLC0415

    variants = []
    for key in keys:
        details = client.get_string_details(FLAG, "missing", EvaluationContext(key))  # type: ignore[attr-defined]
        assert details.error_code is None, details.error_message
        assert details.value == details.variant
        variants.append(details.variant)
    return variants


def _from_file(path: Path) -> list[str]:
    """Variants as OpenFeature's flagd provider evaluates the file itself (its file resolver,
    the reference in-process evaluator)."""
    from openfeature.contrib.provider.flagd.config import ResolverType  # noqa: PLC0415

    with _openfeature(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path)) as c:
        return _variants(c)


def _assert_share(variants: list[str], percent: float) -> None:
    """The canary share is what a binomial draw at ``percent`` gives, beyond doubt."""
    canary = Counter(variants)["canary"]
    low, high = binom.interval(1 - 1e-6, len(variants), percent / 100)
    assert low <= canary <= high, (canary, low, high)


# -- the flag file ---------------------------------------------------------------------------


def test_partial_rollout_is_a_fractional_rule() -> None:
    config = FlagdConfig(path="flags.json")
    flag = render_flag(config, FLAG, _target(10.0), revision=7)
    assert flag["variants"] == {"baseline": "baseline", "canary": "canary"}
    assert flag["defaultVariant"] == "baseline"
    assert flag["targeting"] == {"fractional": [["canary", 1000], ["baseline", 9000]]}
    assert flag["metadata"] == {
        "managedBy": "canarystream",
        "deployment": DEPLOYMENT,
        "service": "shop",
        "baselineVersion": "v1",
        "canaryVersion": "v2",
        "canaryPercent": 10.0,
        "revision": 7,
    }
    tiny = render_flag(config, FLAG, _target(0.001), revision=1)
    assert tiny["targeting"]["fractional"][0] == ["canary", 1]  # never rounded to nothing
    assert tiny["metadata"]["canaryPercent"] == 0.01  # and the share it really gives


def test_rollback_and_promote_serve_one_variant() -> None:
    config = FlagdConfig(path="flags.json")
    rollback = render_flag(config, FLAG, _target(0.0), revision=1)
    promote = render_flag(config, FLAG, _target(100.0), revision=2)
    assert "targeting" not in rollback and rollback["defaultVariant"] == "baseline"
    assert "targeting" not in promote and promote["defaultVariant"] == "canary"


def test_custom_targeting_property_keeps_the_flag_key_salt() -> None:
    config = FlagdConfig(path="flags.json", targeting_key="sessionId", flag_key="{service}-v")
    rule = render_flag(config, config.key_for("shop"), _target(25.0), revision=1)["targeting"]
    assert config.key_for("shop") == "shop-v"
    assert rule["fractional"][0] == {"cat": [{"var": "$flagd.flagKey"}, {"var": "sessionId"}]}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"path": ""},
        {"flag_key": "canary"},
        {"canary_variant": "baseline"},
        {"total_weight": 1},
        {"ofrep_url": "127.0.0.1:8016"},
        {"timeout": 0},
    ],
)
def test_invalid_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        FlagdConfig(**{"path": "flags.json", **kwargs})  # type: ignore[arg-type]


def test_writes_atomically_and_keeps_other_flags(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    other = {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"}
    path.write_text(json.dumps({"flags": {"dark-mode": other}}))
    provider = _provider(path)
    assert isinstance(provider, TrafficBackend) and provider.kind == "flagd"

    async def scenario() -> None:
        await provider.set_share(_target(10.0))
        await provider.set_share(_target(25.0))

    asyncio.run(scenario())
    flags = json.loads(path.read_text())["flags"]
    assert flags["dark-mode"] == other
    assert flags[FLAG]["metadata"]["revision"] == 2
    assert flags[FLAG]["targeting"]["fractional"][0] == ["canary", 2500]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flags.json"]  # no temporary left


def test_broken_flag_file_is_a_flag_error(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text("{not json")
    with pytest.raises(FlagError, match="cannot read flag file"):
        asyncio.run(_provider(path).set_share(_target(10.0)))


def test_unreachable_flagd_is_a_flag_error(tmp_path: Path) -> None:
    provider = _provider(tmp_path / "flags.json")

    async def scenario() -> float | None:
        await provider.set_share(_target(10.0))
        return await provider.get_share(DEPLOYMENT)

    with pytest.raises(FlagError, match="flagd OFREP"):
        asyncio.run(scenario())


def test_openfeature_file_resolver_splits_as_written(tmp_path: Path) -> None:
    """OpenFeature's own flagd evaluator reads the file and splits users by p."""
    path = tmp_path / "flags.json"
    provider = _provider(path)
    asyncio.run(provider.set_share(_target(10.0)))
    at_ten = _from_file(path)
    _assert_share(at_ten, 10.0)
    asyncio.run(provider.set_share(_target(25.0)))
    at_25 = _from_file(path)
    _assert_share(at_25, 25.0)
    # Sticky: growing the share only moves baseline users over, never back.
    assert all(b == "canary" for a, b in zip(at_ten, at_25, strict=True) if a == "canary")
    asyncio.run(provider.set_share(_target(0.0)))
    assert set(_from_file(path)) == {"baseline"}
    asyncio.run(provider.set_share(_target(100.0)))
    assert set(_from_file(path)) == {"canary"}


# -- read back from a running flag service ---------------------------------------------------


def test_read_back_follows_each_write(flag_service: FlagService) -> None:
    provider = _provider(flag_service)

    async def scenario() -> list[float | None]:
        seen = [await provider.get_share(DEPLOYMENT)]  # no flag yet
        for percent in (1.0, 10.0, 0.0, 100.0):
            await provider.set_share(_target(percent))
            seen.append(await provider.get_share(DEPLOYMENT))
        seen.append(await provider.get_share("another-deployment"))
        # A new provider (an actuator restarted) finds the deployment's flag in the file.
        seen.append(await _provider(flag_service).get_share(DEPLOYMENT))
        return seen

    assert asyncio.run(scenario()) == [None, 1.0, 10.0, 0.0, 100.0, None, 100.0]


def test_flag_of_a_newer_deployment_is_not_read_back_as_the_old_one(
    flag_service: FlagService,
) -> None:
    provider = _provider(flag_service)

    async def scenario() -> tuple[float | None, float | None]:
        await provider.set_share(_target(10.0, deployment="shop-old"))
        await provider.set_share(_target(50.0, deployment="shop-new"))
        return await provider.get_share("shop-old"), await provider.get_share("shop-new")

    assert asyncio.run(scenario()) == (None, 50.0)


def test_actuator_applies_signed_decisions(flag_service: FlagService) -> None:
    actuator = Actuator(
        _provider(flag_service),
        verifier=SIGNER.verifier(),
        scope=EVERY_SERVICE,
        retry=RetryPolicy(max_attempts=3, initial_delay=0.05, deadline=20),
    )
    advance = make_decision(0, Action.ADVANCE, 10.0)
    hold = make_decision(1, Action.HOLD, 10.0)
    forged = make_decision(2, Action.PROMOTE, 100.0, Phase.PROMOTED)
    rollback = make_decision(2, Action.ROLLBACK, 0.0, Phase.ROLLED_BACK)

    async def scenario() -> list[object]:
        reports = [await actuator.actuate(advance, SIGNER.sign_decision(advance))]
        reports.append(await actuator.actuate(hold, SIGNER.sign_decision(hold)))
        reports.append(await actuator.actuate(forged, Signer.hmac(b"x").sign_decision(forged)))
        reports.append(await actuator.backend.get_share(DEPLOYMENT))  # type: ignore[union-attr]
        reports.append(await actuator.actuate(rollback, SIGNER.sign_decision(rollback)))
        await actuator.close()
        return reports

    applied, held, refused, after_forgery, rolled_back = asyncio.run(scenario())
    assert applied.status is ActuationStatus.APPLIED  # type: ignore[attr-defined]
    assert applied.traffic_percent_observed == 10.0  # type: ignore[attr-defined]
    assert applied.backend == "flagd"  # type: ignore[attr-defined]
    assert held.status is ActuationStatus.APPLIED  # type: ignore[attr-defined]
    assert held.traffic_percent_observed == 10.0  # type: ignore[attr-defined]
    assert refused.status is ActuationStatus.REJECTED  # type: ignore[attr-defined]
    assert after_forgery == 10.0
    assert rolled_back.status is ActuationStatus.APPLIED  # type: ignore[attr-defined]
    assert rolled_back.traffic_percent_observed == 0.0  # type: ignore[attr-defined]


# -- the real flagd, evaluated by OpenFeature's SDK -------------------------------------------


@pytest.mark.flagd
def test_flagd_serves_the_rollout_to_openfeature(flagd: FlagService) -> None:
    """What flagd serves over gRPC to OpenFeature's flagd provider matches p at every step.

    Not compared key for key with the file resolver: flagd core v0.16.1 hashes the bucketing
    string itself, openfeature-flagd-core 2.0.0 its CBOR encoding, so users land apart."""
    from openfeature.contrib.provider.flagd.config import ResolverType  # noqa: PLC0415

    provider = _provider(flagd)
    with _openfeature(resolver_type=ResolverType.RPC, host="127.0.0.1", port=flagd.grpc_port) as c:
        asyncio.run(provider.set_share(_target(10.0)))
        assert asyncio.run(provider.get_share(DEPLOYMENT)) == 10.0  # flagd has loaded it
        served = _variants(c)
        _assert_share(served, 10.0)

        asyncio.run(provider.set_share(_target(0.0)))  # rollback
        assert asyncio.run(provider.get_share(DEPLOYMENT)) == 0.0
        assert set(_variants(c)) == {"baseline"}

        asyncio.run(provider.set_share(_target(100.0)))  # promote
        assert asyncio.run(provider.get_share(DEPLOYMENT)) == 100.0
        assert set(_variants(c)) == {"canary"}
