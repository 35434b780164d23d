"""The fuzzer itself: reproducible inputs, a base stream worth fuzzing, an oracle that sees.

Each kind of failure is planted in a driver (a crash, a loop, a rejected message that still
changes the state, a clock dragged ahead) and must be reported as such; valid messages that
change decisions must not be.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from canarystream.contracts.decision import Action
from canarystream.engine import Engine
from tests.fuzz.base import T0, TELEMETRY_TOPIC, build_stream
from tests.fuzz.drivers import Applied, ProcessorDriver, ReplayDriver
from tests.fuzz.fuzzer import CHANGE, CRASH, HANG, Fuzzer, Hang, time_limit
from tests.fuzz.mutators import MUTATORS, REJECT, VALID, Fuzzed, generate
from tests.fuzz.runner import load_input, main, run, save_failure


@pytest.fixture(scope="module")
def fuzzer() -> Fuzzer:
    return Fuzzer(seed=3, limit=2.0)


@pytest.fixture
def fresh(fuzzer: Fuzzer) -> Iterator[Fuzzer]:
    """The module's fuzzer, with its drivers put back after a test plants something."""
    drivers = [cursor.driver for cursor in fuzzer.cursors]
    yield fuzzer
    for cursor, driver in zip(fuzzer.cursors, drivers, strict=True):
        cursor.driver = driver
        cursor.position = None


def test_inputs_are_the_same_for_the_same_seed_and_index() -> None:
    base = build_stream()
    assert generate(base, 5, 123) == generate(base, 5, 123)
    assert generate(base, 5, 123) != generate(base, 6, 123)
    names = {generate(base, 5, index).mutator for index in range(3000)}
    assert names == set(MUTATORS)


def test_the_base_stream_is_decided_alike_by_both_drivers(fuzzer: Fuzzer) -> None:
    processor = fuzzer.baseline("processor")
    replay = fuzzer.baseline("replay")
    assert processor.keys == replay.keys
    actions = {(d.deployment, d.action) for d in processor.decisions}
    assert ("payments-3", Action.ROLLBACK) in actions  # the regressed canary is rolled back
    assert ("checkout-7", Action.PROMOTE) in actions  # the healthy one promoted
    assert sum(d.deployment.startswith("checkout-r") for d in processor.decisions) >= 8
    kinds = {event["type"] for event in fuzzer.base.events}
    assert {"request", "metric", "probe", "deployment_started", "deployment_paused"} <= kinds


def test_the_digest_moves_with_applied_telemetry_and_not_with_rejected(fuzzer: Fuzzer) -> None:
    base = fuzzer.base
    for driver in (ProcessorDriver(), ReplayDriver()):
        position = _position_after(base, T0 + 20.0)
        driver.apply_many(base.messages[:position])
        before = driver.fingerprint()
        driver.apply_fuzzed(_input(base, position, b'{"type": "request", "ts": "soon"}'))
        assert driver.fingerprint() == before
        burst = _input(base, position, _burst(base, position))
        driver.apply_fuzzed(replace(burst, offset=burst.offset + 1))  # a fresh offset
        assert driver.fingerprint() != before


def test_the_digest_survives_state_nested_deeper_than_serialisers_go() -> None:
    driver = ReplayDriver()
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    driver.engine.kept = deep  # as an applied event's extra field would be kept
    assert driver.fingerprint() != ReplayDriver().fingerprint()


def test_a_valid_message_may_change_decisions(fresh: Fuzzer) -> None:
    position = _position_after(fresh.base, T0 + 5.0)
    outcomes = fresh.run_one(_input(fresh.base, position, _burst(fresh.base, position), VALID))
    assert [(o.failure, o.changed) for o in outcomes] == [(None, True), (None, True)]


def test_an_applied_message_that_must_be_rejected_changes_nothing(fresh: Fuzzer) -> None:
    position = _position_after(fresh.base, T0 + 5.0)
    outcomes = fresh.run_one(_input(fresh.base, position, _burst(fresh.base, position), REJECT))
    assert [o.failure for o in outcomes] == [CHANGE, CHANGE]
    assert all("must be rejected" in o.signature for o in outcomes)


@pytest.mark.parametrize(
    ("plant", "failure", "words"),
    [
        ("crash", CRASH, "KeyError"),
        ("loop", HANG, "hang, by planted"),
        ("mutate", CHANGE, "rejected (invalid_field) yet changed decisions"),
        ("drag", CHANGE, "decision stamped ahead of the input"),
    ],
)
def test_planted_failures_are_reported(fresh: Fuzzer, plant: str, failure: str, words: str) -> None:
    position = _position_after(fresh.base, T0 + 5.0)
    for cursor in fresh.cursors:
        cursor.driver = _Planted(cursor.driver, plant, fresh.base, position)
    fuzzed = _input(fresh.base, position, b'{"type": "request", "x_plant": 1}')
    outcomes = fresh.run_one(fuzzed)
    assert [o.failure for o in outcomes] == [failure, failure]
    assert all(words in o.signature for o in outcomes), [o.signature for o in outcomes]


def test_an_exception_the_drivers_contain_is_a_crash(
    fresh: Fuzzer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine turns an exception into an internal_error rejection; the fuzzer must not.
    hook = "_process" if hasattr(Engine, "_process") else "process"
    original = getattr(Engine, hook)

    def planted(self: Engine, event: Any) -> Any:
        if isinstance(event, dict) and "x_plant" in event:
            raise ZeroDivisionError("planted")
        return original(self, event)

    monkeypatch.setattr(Engine, hook, planted)
    position = _position_after(fresh.base, T0 + 5.0)
    outcomes = fresh.run_one(_input(fresh.base, position, b'{"type": "request", "x_plant": 1}'))
    assert [o.failure for o in outcomes] == [CRASH, CRASH]
    assert all("ZeroDivisionError" in o.signature for o in outcomes), outcomes


def test_time_limit_interrupts_a_loop_and_leaves_other_timers_be() -> None:
    signal.setitimer(signal.ITIMER_REAL, 30.0)  # pytest-timeout's kind of alarm
    signal.setitimer(signal.ITIMER_PROF, 60.0)  # an outer limit of the fuzzer's own kind
    try:
        started = time.process_time()
        with pytest.raises(Hang), time_limit(0.2):
            while True:
                pass
        assert 0.1 < time.process_time() - started < 5  # (CPU accounting is coarse)
        assert 20.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30.0
        assert 50.0 < signal.getitimer(signal.ITIMER_PROF)[0] <= 60.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_PROF, 0)


def test_a_saved_failure_reproduces_its_input(fuzzer: Fuzzer, tmp_path: Path) -> None:
    tally = fuzzer.run([11])
    fuzzed = fuzzer.generate(11)
    example = next(iter(tally.failures.values()), None)
    if example is None:  # no failure to hand: save one as if it were
        from tests.fuzz.fuzzer import Example, Outcome  # noqa: PLC0415

        example = Example(fuzzed, Outcome("replay", failure=CHANGE, signature="x: y"), 1)
    path = save_failure(tmp_path, example)
    assert load_input(path) == example.fuzzed
    assert main(["--input", str(path), "--limit", "5"]) in (0, 1)


def test_runner_spreads_inputs_over_workers(fuzzer: Fuzzer, tmp_path: Path) -> None:
    lines: list[str] = []
    tally = run(fuzzer, range(40), jobs=2, out=tmp_path, echo=lines.append)
    assert tally.inputs == 40
    assert tally.by_driver["processor"]["inputs"] == tally.by_driver["replay"]["inputs"] == 40


# ---------------------------------------------------------------------------------- helpers


def _position_after(base: Any, ts: float) -> int:
    """The first position whose context has reached ``ts`` (both rollouts under way)."""
    return next(site.position for site in base.sites if site.now >= ts)


def _burst(base: Any, position: int) -> bytes:
    """Sixty failed canary requests of checkout, stamped at its latest time."""
    now = base.sites[position].last_ts["checkout"]
    event = {
        "type": "request",
        "ts": now,
        "service": "checkout",
        "version": "v2",
        "latency_ms": 30.0,
        "status": 503,
    }
    return orjson.dumps([event] * 60)


def _input(base: Any, position: int, payload: bytes, expect: str = REJECT) -> Fuzzed:
    site = base.sites[position]
    return Fuzzed(
        seed=0,
        index=0,
        mutator="planted",
        position=position,
        payload=payload,
        key=b"checkout",
        topic=TELEMETRY_TOPIC,
        partition=3,
        offset=site.offsets[TELEMETRY_TOPIC] + 1,
        expect={"processor": expect, "replay": expect},
        merge=False,
    )


class _Planted:
    """A driver with a bug planted for messages carrying ``x_plant``."""

    def __init__(self, inner: Any, plant: str, base: Any, position: int) -> None:
        self.inner = inner
        self.plant = plant
        self.burst = _burst(base, position)
        self.late = base.sites[position].now + 3600.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def apply_fuzzed(self, fuzzed: Fuzzed) -> Applied:
        applied = self.inner.apply_fuzzed(fuzzed)
        engine = getattr(self.inner, "engine", None) or self.inner.processor.engine
        if self.plant == "crash":
            raise KeyError("planted")
        if self.plant == "loop":
            while True:
                pass
        if self.plant == "mutate":
            for event in orjson.loads(self.burst):
                engine.process(event)
        if self.plant == "drag":
            applied.decisions += engine.advance_to(self.late)
        return applied
