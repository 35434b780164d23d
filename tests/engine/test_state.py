"""A rollout's stored state: plain data that restores every attribute, so decisions go on.

``Rollout.to_state()`` (and each part's own ``to_state``) gives JSON-ready plain data and
``from_state`` rebuilds the same objects. The completeness test walks a restored rollout and
its original side by side and names any attribute that does not come back: when it fails
for an attribute you added, carry it in that class's ``to_state``/``from_state``, bump
``STATE_VERSION`` and add a migration (``canarystream/streaming/processor.py``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from enum import Enum
from functools import cache
from types import MethodType
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import BaseModel

from canarystream.analysis import checks, guards
from canarystream.analysis.checks import UNIT_CLASSES, CheckGroup, LatencyTracker, Unit
from canarystream.analysis.cohort import CohortBucket, Slice
from canarystream.analysis.guards import BaselineDriftGuard, NoDataWatch, SampleRatioWatch
from canarystream.analysis.page_hinkley import PageHinkley
from canarystream.analysis.recovery import RecoveryWatch, _Tally
from canarystream.analysis.sequential import MeanRestarts, MeanSequence, RatioGrid, RatioSequence
from canarystream.analysis.sketch import LogHistogram
from canarystream.analysis.state import State, reader
from canarystream.contracts.decision import Action, Decision
from canarystream.engine import Engine
from canarystream.engine.admission import EventClock
from canarystream.engine.rollout import Rollout
from canarystream.engine.routing import Routing
from canarystream.simulate.closed_loop import simulate
from canarystream.simulate.presets import build_preset
from canarystream.simulate.scenario import Scenario
from tests.support.streams import Cohort, Stream, fast_policy, merge, restarted

# Every kind of unit: breakdowns by dependency and endpoint, gauges, probes, SLO budgets.
EVERY_CHECK = {
    "name": "every-check",
    "checks": [
        {"kind": "error_rate", "breakdown": "dependency"},
        {"kind": "latency", "quantile": 0.9, "breakdown": "endpoint"},
        {"kind": "latency_shift"},
        {"kind": "gauge", "metric": "*"},
        {"kind": "probe", "critical": False},
        {"kind": "slo_error_rate", "max_error_rate": 0.05},
        {"kind": "slo_latency", "quantile": 0.99, "max_ms": 2000},
    ],
}
# name: (preset, requests/s, duration, policy, the actions the uninterrupted run takes)
CASES: dict[str, tuple[str, float, float, Any, list[Action]]] = {
    "rollback-then-recovery": (
        "errors-x3",
        80,
        1550,
        None,
        # Stage 0 is held at its deadline (the evidence leans toward harm), then rolled back.
        [Action.ADVANCE, Action.HOLD, Action.ROLLBACK, Action.ROLLBACK_VERIFIED],
    ),
    "breakdowns-and-gauges": (
        "endpoint-only",
        50,
        900,
        EVERY_CHECK,
        [Action.ADVANCE, Action.ROLLBACK],
    ),
    "shared-incident": (
        "global-incident",
        30,
        1000,
        None,
        # Stage 0 (0.3 canary req/s) advances under the low-traffic rule before the incident.
        [Action.ADVANCE, Action.ADVANCE, Action.HOLD, Action.ADVANCE, Action.ADVANCE],
    ),
}
CUTS = (0.35, 0.7)
ADVANCE, ROLLBACK = Action.ADVANCE, Action.ROLLBACK


@cache
def case_events(case: str) -> tuple[dict[str, Any], ...]:
    """The closed-loop telemetry of ``case``, recorded once."""
    preset, rps, duration, policy, _ = CASES[case]
    scenario = build_preset(preset, rps=rps, duration=duration)
    if policy is not None:
        scenario = Scenario.model_validate({**scenario.model_dump(), "policy": policy})
    return tuple(simulate([scenario], seed=1))


@cache
def case_reference(case: str) -> tuple[dict[str, Any], ...]:
    return tuple(d.model_dump() for d in Engine().process_all(case_events(case)))


def cut_positions(case: str) -> list[int]:
    """Where the tests cut ``case``: fixed shares, and while a rollback is being verified."""
    events = case_events(case)
    positions = [round(cut * len(events)) for cut in CUTS]
    rollback = next((d for d in case_reference(case) if d["action"] == ROLLBACK), None)
    if rollback is not None:
        watching = rollback["ts"] + 30.0
        positions.append(next(i for i, e in enumerate(events) if e["ts"] > watching))
    return positions


def frozen_with_hooks() -> list[dict[str, Any]]:
    """A rollout past its rollback-unsafe stage with compensation hooks, frozen by a regression."""
    stream = Stream(3, canary=Cohort(error_rate=0.08))
    started = stream.started(policy=fast_policy(name="frozen"))
    started["rollback_unsafe_from_stage"] = 0
    started["compensation"] = [{"name": "undo", "command": ["true"], "timeout_seconds": 5.0}]
    return merge([started], stream.requests(0, 150, rate=20), [stream.control("paused", 20.0)])


def awaiting_a_decision() -> list[dict[str, Any]]:
    """A rollout whose routing is observed, its advance not applied: held, paged, awaiting."""
    stream = Stream(4)
    started = stream.started(policy=fast_policy(name="routed", baseline_mode="stable"))
    shift = {"type": "traffic_shifted", "ts": started["ts"] + 2, "traffic_percent": 10.0}
    shift |= {"deployment": started["deployment"], "service": started["service"]}
    requests = stream.requests(0, 260, rate=90, canary_rate=10)
    return merge([started, shift], requests)


@cache
def rollouts_at(case: str, position: int) -> tuple[Rollout, ...]:
    """The rollouts after the first ``position`` events of ``case`` (shared: do not change)."""
    engine = Engine()
    engine.process_all(case_events(case)[:position])
    return tuple(engine.rollouts.values())


@cache
def sample_rollouts() -> tuple[tuple[str, Rollout], ...]:
    """Rollouts in every phase the cases reach, for the per-part tests (do not change)."""
    samples = [
        (f"{case}@{position}", rollout)
        for case in CASES
        for position in cut_positions(case)
        for rollout in rollouts_at(case, position)
    ]
    engine = Engine()
    engine.process_all(frozen_with_hooks())
    frozen = [("frozen", rollout) for rollout in engine.rollouts.values()]
    engine = Engine()
    engine.process_all(awaiting_a_decision())
    routed = [("routed", rollout) for rollout in engine.rollouts.values()]
    assert routed[0][1].routing.paged is not None, "the sample must be awaiting, and paged"
    return (*samples, *frozen, *routed)


def through_json(state: State) -> Any:
    return orjson.loads(orjson.dumps(state))


# --- the parts of a rollout and how each is rebuilt --------------------------------------

Rebuild = Callable[[Any], Any]


def parts(rollout: Rollout) -> Iterator[tuple[str, Any, Rebuild]]:
    """Every stateful object of ``rollout``, with its path and how to rebuild it from state."""
    yield "rollout", rollout, Rollout.from_state
    admission = rollout.policy.admission
    yield "admission", rollout.admission, lambda s: EventClock.from_state(s, admission)
    for index, bucket in enumerate(rollout.buckets):
        yield f"buckets.{index}", bucket, CohortBucket.from_state
        for key, found in [(None, bucket.requests), *bucket.slices.items()]:
            yield f"buckets.{index}.{key}", found, Slice.from_state
    for key, tracker in rollout.trackers.items():
        yield f"trackers.{key}", tracker, LatencyTracker.from_state
        for side in ("baseline", "canary"):
            yield f"trackers.{key}.{side}", getattr(tracker, side), LogHistogram.from_state
    trackers = rollout.trackers
    for group in rollout.groups:

        def group_from(state: Any, check: Any = group.check) -> Any:
            return CheckGroup.from_state(state, check, trackers)

        def unit_from(state: Any, check: Any = group.check) -> Any:
            return Unit.from_state(state, check, trackers)

        yield f"groups.{group.name}", group, group_from
        for key, unit in group.units.items():
            yield f"groups.{group.name}.{key}", unit, unit_from
            for name, value in vars(unit).items():
                if isinstance(value, (RatioSequence, MeanSequence, MeanRestarts)):
                    yield f"groups.{group.name}.{key}.{name}", value, type(value).from_state
    guards_config = rollout.policy.guards
    yield (
        "drift",
        rollout.drift,
        lambda s: BaselineDriftGuard.from_state(s, guards_config.baseline_drift),
    )
    for index, scale in enumerate(rollout.drift.scales):
        yield f"drift.scales.{index}", scale, type(scale).from_state
    for index, detector in enumerate(rollout.drift.detectors):
        yield f"drift.detectors.{index}", detector, _detector_from_state
    yield (
        "ratio",
        rollout.ratio,
        lambda s: SampleRatioWatch.from_state(s, guards_config.sample_ratio),
    )
    yield "ratio.test", rollout.ratio.test, RatioSequence.from_state
    yield "no_data", rollout.no_data, lambda s: NoDataWatch.from_state(s, guards_config.no_data)
    yield "routing", rollout.routing, Routing.from_state
    verification = rollout.policy.rollback_verification
    yield "recovery", rollout.recovery, lambda s: RecoveryWatch.from_state(s, verification)
    yield "recovery.reference", rollout.recovery.reference, _Tally.from_state
    yield "recovery.after", rollout.recovery.after, _Tally.from_state


def _detector_from_state(state: Any) -> PageHinkley:
    return PageHinkley.from_state(reader(state, "PageHinkley"))


def state_of(part: Any) -> State:
    """A part's ``to_state``."""
    return part.to_state()  # type: ignore[no-any-return]


def assert_plain(value: Any, path: str) -> None:
    """Only dict (str keys), list, str, int, float (finite), bool and None."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            assert type(key) is str, f"{path}: key {key!r} is not a string"
            assert_plain(item, f"{path}.{key}")
    elif kind is list:
        for index, item in enumerate(value):
            assert_plain(item, f"{path}.{index}")
    elif kind is float:
        assert math.isfinite(value), f"{path}: {value} (write it with state.number)"
    else:
        assert value is None or kind in (str, int, bool), f"{path}: {kind.__name__} is not plain"


# --- attribute by attribute ---------------------------------------------------------------

# Attributes a class holds without writing them in its own state, and why.
NOT_IN_STATE: dict[type, set[str]] = {
    LogHistogram: {"_gamma", "_log_gamma", "_offset", "_cumulative"},  # from accuracy; cache
    Slice: {"_array"},  # a cache of the latencies
    RatioSequence: {"grid"},  # the shared grid of its anchors
    CheckGroup: {"check"},  # the policy's
    checks.GaugeUnit: {"check"},  # its group's (the policy's)
    BaselineDriftGuard: {"config"},  # the policy's
    SampleRatioWatch: {"config"},
    NoDataWatch: {"config"},
    RecoveryWatch: {"config"},
    PageHinkley: {"seen", "mean"},  # the running mean, written as x_mean: [seen, mean]
    EventClock: {"admission"},  # the policy's
}
CACHES = {(LogHistogram, "_cumulative"), (Slice, "_array")}  # rebuilt on first use
FOREIGN = (RatioGrid,)  # held, but written by its owner's state


def attributes(obj: Any) -> dict[str, Any]:
    names = [
        name for cls in type(obj).__mro__ for name in getattr(cls, "__slots__", ()) if name
    ] + list(getattr(obj, "__dict__", {}))
    return {name: getattr(obj, name) for name in dict.fromkeys(names) if hasattr(obj, name)}


def assert_carried(obj: Any, path: str) -> None:
    """Every attribute of ``obj`` is written by its state, or listed in NOT_IN_STATE."""
    cls = type(obj)
    written = set(state_of(obj))
    exempt = next((names for c, names in NOT_IN_STATE.items() if isinstance(obj, c)), set())
    for name in attributes(obj):
        assert name.lstrip("_") in written or name in exempt, (
            f"{path}: {cls.__name__}.{name} is not carried by {cls.__name__}.to_state(); "
            "write it there and read it in from_state, then bump STATE_VERSION and add a "
            "migration (canarystream/streaming/processor.py)"
        )


def assert_same(original: Any, restored: Any, path: str, seen: dict[int, Any]) -> None:
    """``restored`` equals ``original`` attribute by attribute, sharing what it shared."""
    kind = type(original)
    assert type(restored) is kind, f"{path}: {kind.__name__} restored as {type(restored)}"
    if kind in (int, str, bool, type(None)) or isinstance(original, (BaseModel, set, Enum)):
        assert restored == original, f"{path}: {original!r} restored as {restored!r}"
    elif kind is float:
        same = restored == original or (math.isnan(original) and math.isnan(restored))
        assert same, f"{path}: {original!r} restored as {restored!r}"
    elif kind is np.ndarray:
        assert np.array_equal(original, restored, equal_nan=True), f"{path}: array differs"
    elif kind is deque:
        assert restored.maxlen == original.maxlen, f"{path}: maxlen {original.maxlen}"
        assert_same(list(original), list(restored), path, seen)
    elif kind in (list, tuple):
        assert len(restored) == len(original), f"{path}: length {len(original)} -> {len(restored)}"
        for index, (a, b) in enumerate(zip(original, restored, strict=True)):
            assert_same(a, b, f"{path}.{index}", seen)
    elif kind is dict:
        assert list(restored) == list(original), (
            f"{path}: keys {list(original)} -> {list(restored)}"
        )
        for key in original:
            assert_same(original[key], restored[key], f"{path}[{key!r}]", seen)
    elif kind is MethodType:
        assert restored.__func__ is original.__func__, f"{path}: another method"
        assert seen.get(id(original.__self__)) is restored.__self__, f"{path}: bound elsewhere"
    elif kind is RatioGrid:
        assert restored is original, f"{path}: not the shared grid of its anchors"
    elif kind.__module__.startswith("canarystream."):
        if id(original) in seen:  # shared in the original: the same object once restored
            assert seen[id(original)] is restored, f"{path}: a shared object restored as a copy"
            return
        seen[id(original)] = restored
        assert kind in KNOWN or isinstance(original, FOREIGN), (
            f"{path}: {kind.__module__}.{kind.__name__} has no to_state/from_state; a rollout "
            "holds it, so it must be stored as plain data"
        )
        if not isinstance(original, RatioGrid):
            assert_carried(original, path)
        mine, theirs = attributes(original), attributes(restored)
        for name in mine:
            assert name in theirs, (
                f"{path}: {kind.__name__}.{name} is not restored: carry it in "
                f"{kind.__name__}.to_state/from_state, bump STATE_VERSION, add a migration"
            )
            if (kind, name) in CACHES:
                continue
            assert_same(mine[name], theirs[name], f"{path}.{name}", seen)
    else:
        raise AssertionError(f"{path}: no rule to compare a {kind.__name__}")


KNOWN = {
    Rollout,
    CohortBucket,
    Slice,
    LatencyTracker,
    LogHistogram,
    CheckGroup,
    *UNIT_CLASSES.values(),
    RatioSequence,
    MeanSequence,
    MeanRestarts,
    BaselineDriftGuard,
    guards._Standardiser,
    PageHinkley,
    SampleRatioWatch,
    NoDataWatch,
    RecoveryWatch,
    _Tally,
    EventClock,
    Routing,
}


# --- tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_cases_run_as_described(case: str) -> None:
    # The tests below cover what they claim only if the runs reach these decisions.
    assert [d["action"] for d in case_reference(case)] == CASES[case][4]


@pytest.mark.parametrize("case", list(CASES))
def test_every_attribute_survives_the_state_format(case: str) -> None:
    for position in cut_positions(case):
        for rollout in rollouts_at(case, position):
            restored = Rollout.from_state(through_json(rollout.to_state()))

            assert_same(rollout, restored, f"{case}@{position}:rollout", {})


def test_a_frozen_rollout_with_hooks_survives_the_state_format() -> None:
    engine = Engine()
    decisions = engine.process_all(frozen_with_hooks())
    assert [d.action for d in decisions][-1] is Action.FREEZE
    (rollout,) = engine.rollouts.values()

    assert_same(rollout, Rollout.from_state(through_json(rollout.to_state())), "frozen", {})


def test_each_part_round_trips_as_plain_json() -> None:
    seen: set[type] = set()
    for label, rollout in sample_rollouts():
        for path, part, rebuild in parts(rollout):
            state = state_of(part)
            assert_plain(state, f"{label}:{path}")
            assert through_json(state) == state, f"{label}:{path}: changed by JSON"
            assert state_of(rebuild(through_json(state))) == state, f"{label}:{path}"
            seen.add(type(part))
    # Every kind of part was met, so the loop above proved something for each.
    assert seen >= KNOWN, KNOWN - seen


def test_completeness_check_names_an_attribute_that_is_not_carried() -> None:
    label, shared = sample_rollouts()[0]
    rollout = Rollout.from_state(through_json(shared.to_state()))
    rollout.watermark = 12.5  # type: ignore[attr-defined]  # as a new feature would
    restored = Rollout.from_state(through_json(rollout.to_state()))

    with pytest.raises(AssertionError, match=r"Rollout\.watermark is not carried"):
        assert_same(rollout, restored, label, {})


def test_completeness_check_sees_a_value_that_is_not_restored() -> None:
    label, rollout = sample_rollouts()[0]
    restored = Rollout.from_state(through_json(rollout.to_state()))
    restored.groups[0].units[None].exposure[0] += 1  # type: ignore[attr-defined]

    with pytest.raises(AssertionError, match=r"groups\.0\.units\[None\]\.exposure\.0"):
        assert_same(rollout, restored, label, {})


def test_latency_units_share_the_rollouts_trackers_after_restore() -> None:
    for _, rollout in sample_rollouts():
        restored = Rollout.from_state(through_json(rollout.to_state()))
        for group in restored.groups:
            for unit in group.units.values():
                if isinstance(unit, checks.LatencyQuantileUnit):
                    assert unit.tracker is restored.trackers[unit.key]


@pytest.mark.parametrize("case", list(CASES))
def test_mid_stream_restore_gives_identical_decisions(case: str) -> None:
    events, reference = case_events(case), list(case_reference(case))
    for position in cut_positions(case):
        engine = Engine()
        decisions: list[Decision] = engine.process_all(events[:position])
        decisions += restarted(engine).process_all(events[position:])

        assert [d.model_dump() for d in decisions] == reference, f"cut at event {position}"


def test_restored_rollout_shares_the_policy_configuration() -> None:
    _, rollout = sample_rollouts()[0]
    restored = Rollout.from_state(through_json(rollout.to_state()))

    assert restored.policy == rollout.policy
    for group, check in zip(restored.groups, restored.policy.checks, strict=True):
        assert group.check is check
    assert restored.drift.config is restored.policy.guards.baseline_drift
    assert restored.recovery.config is restored.policy.rollback_verification
