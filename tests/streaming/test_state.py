"""The worker's stored state: versioned JSON that is read back exactly, or refused.

``ServiceSnapshot.dumps`` writes ``{"format", "version", ...plain data}``; ``loads`` restores
it, upgrades an older version through ``MIGRATIONS``, and refuses anything else with a
``StateFormatError`` that names the problem: nothing in a stored record is ever executed.
``fixtures/service-state-v1.json`` is a snapshot of format version 1 taken mid-rollout; it
must keep loading and deciding as the run it came from (regenerate it only with a new
version, next to the old one: ``python -m tests.streaming.test_state``).
``fixtures/service-state-v2.json`` is the same snapshot as version 2 wrote it (through the
version-1 migration), which version 3 reads with no starter and no command taken.
``fixtures/service-state-v3.json`` is that snapshot as version 3 wrote it, which version 4
reads with no routing observed and its latest decision as the one that set the share.
``fixtures/service-state-v4.json`` the same again as version 4 wrote it, which version 5
reads with change detectors that go on exactly as the cumulative tests it stored.
``fixtures/service-state-v5.json`` the same again as version 5 wrote it, which version 6 reads
with the low-traffic rule off (its rollout goes on under the policy it started with).
``fixtures/service-state-v6.json`` the same again as version 6 wrote it, which version 7 reads
with no message of a last witness (the next event ahead counts as a new witness).
``fixtures/service-state-v7.json`` is today's format of the same snapshot, kept so that a
change of the format shows here as a new version, not as a silent difference.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.errors import CanarystreamError, StateFormatError
from canarystream.streaming import processor
from canarystream.streaming.processor import (
    STATE_FORMAT,
    STATE_VERSION,
    BatchProcessor,
    Inbound,
    ServiceSnapshot,
)
from tests.support.streams import SERVICE, T0, Cohort, Stream, fast_policy, merge

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE = FIXTURES / "service-state-v1.json"
CONTINUATION = FIXTURES / "service-state-v1.continuation.json"
ADDED_REASON_FIELDS = ("ruled_out", "more_samples", "risk")  # optional, after the fixture
TELEMETRY, DEPLOYMENTS = "canary.telemetry.v1", "canary.deployments.v1"

# Breakdown units, a latency sketch, gauge windows, probes, hooks; a rollback verified quickly.
FIXTURE_POLICY = fast_policy(
    name="fixture",
    checks=[
        {"kind": "error_rate", "breakdown": "endpoint", "advance_abs_margin": 0.01},
        {"kind": "latency", "quantile": 0.9, "tolerance": 0.1, "advance_tolerance": 0.3},
        {"kind": "gauge", "metric": "cpu", "window": 10},
        {"kind": "probe", "critical": False},
    ],
    rollback_verification={"window": 30, "min_requests": 20},
)
FIXTURE_CUT = 65.0  # seconds after the start: 20 s before the run rolls back
FIXTURE_END = 116.0  # just past the verification of the rollback


def fixture_events() -> list[dict[str, Any]]:
    """The run the fixture was taken from: a canary with 6 % errors, rolled back at 85 s."""
    stream = Stream(1, canary=Cohort(error_rate=0.06))
    started = stream.started(policy=FIXTURE_POLICY)
    started["compensation"] = [{"name": "undo", "command": ["true"], "timeout_seconds": 5.0}]
    events = merge(
        [started],
        stream.requests(0, 140, rate=5, endpoints=("/cart", "/pay")),
        stream.gauges(0, 140, "cpu", baseline=0.5, canary=0.52),
        stream.probes(0, 140, "login", baseline_fail=0.01, canary_fail=0.01),
    )
    return [event for event in events if event["ts"] < T0 + FIXTURE_END]


def write_fixture() -> None:
    """Write the fixture and its continuation (run by hand for a new format version only)."""
    events = fixture_events()
    cut = next(i for i, e in enumerate(events) if e["ts"] >= T0 + FIXTURE_CUT)
    engine = Engine()
    before = engine.process_all(events[:cut])
    snapshot = ServiceSnapshot(SERVICE, 3, {TELEMETRY: cut}, engine.rollouts_of(SERVICE))
    reference = Engine().process_all(events)
    FIXTURES.mkdir(exist_ok=True)
    FIXTURE.write_bytes(snapshot.dumps())
    continuation = {
        "events": events[cut:],
        "decisions": [d.model_dump(mode="json") for d in reference[len(before) :]],
    }
    CONTINUATION.write_bytes(orjson.dumps(continuation) + b"\n")


def snapshot_state() -> dict[str, Any]:
    """The fixture as decoded plain data, to be damaged by the refusal tests."""
    return orjson.loads(FIXTURE.read_bytes())  # type: ignore[no-any-return]


def request(ts: float, service: str = SERVICE) -> bytes:
    event = {"type": "request", "ts": ts, "service": service, "version": "v1"}
    return orjson.dumps(event | {"latency_ms": 20.0, "status": 200})


class _Touch:
    """Unpickling this creates a file: what a forged changelog record could do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def assert_decides_as_recorded(snapshot: ServiceSnapshot) -> dict[str, Any]:
    """Adopt ``snapshot``'s rollouts, feed the recorded continuation and check that the
    decisions are the recorded ones; return the continuation."""
    continuation: dict[str, Any] = orjson.loads(CONTINUATION.read_bytes())
    engine = Engine()
    engine.adopt(snapshot.rollouts)
    decisions = engine.process_all(continuation["events"])
    assert_recorded(decisions, continuation["decisions"])
    return continuation


def assert_recorded(decisions: list[Decision], recorded: list[dict[str, Any]]) -> None:
    """``decisions`` are the recorded ones, but for reason fields added to the contract since
    the fixture was recorded (left out) and computed floats' last bits."""
    added = {"reasons": {"__all__": set(ADDED_REASON_FIELDS)}}
    made = [d.model_dump(mode="json", exclude=added) for d in decisions]
    assert within_last_digits(made, recorded) == recorded


def within_last_digits(made: Any, recorded: Any) -> Any:
    """``made`` with each float that agrees with ``recorded``'s to 12 significant digits
    replaced by the recorded one; anything else left as it is, for the comparison to show.

    The fixture was recorded on another machine: numpy's vectorised functions take other
    code paths on other CPUs, so a computed bound may differ in its last bits there. On one
    machine decisions are exactly reproducible (``tests/test_replay.py``)."""
    if isinstance(made, float) and isinstance(recorded, float):
        return recorded if math.isclose(made, recorded, rel_tol=1e-12, abs_tol=1e-300) else made
    if isinstance(made, dict) and isinstance(recorded, dict):
        return {k: within_last_digits(v, recorded.get(k)) for k, v in made.items()}
    if isinstance(made, list) and isinstance(recorded, list) and len(made) == len(recorded):
        return [within_last_digits(m, r) for m, r in zip(made, recorded, strict=True)]
    return made


# --- the format ---------------------------------------------------------------------------


def test_fixture_of_version_1_loads_and_decides_as_the_run_it_came_from() -> None:
    snapshot = ServiceSnapshot.loads(FIXTURE.read_bytes())

    continuation = assert_decides_as_recorded(snapshot)

    assert (snapshot.service, snapshot.partition) == (SERVICE, 3)
    actions = [d["action"] for d in continuation["decisions"]]
    assert actions == ["rollback", "rollback_verified"]  # each with every check's numbers


def test_fixture_is_version_1_of_the_format() -> None:
    state = snapshot_state()

    assert (state["format"], state["version"]) == (STATE_FORMAT, 1)


def test_dumps_then_loads_gives_the_same_bytes() -> None:
    blob = FIXTURE.read_bytes()
    if STATE_VERSION == 1:
        assert ServiceSnapshot.loads(blob).dumps() == blob
    restored = ServiceSnapshot.loads(blob)
    assert ServiceSnapshot.loads(restored.dumps()).dumps() == restored.dumps()


def test_version_1_is_read_as_the_current_version_without_tombstones() -> None:
    """Version 2 added the finished deployment ids; a version-1 record knows none."""
    restored = ServiceSnapshot.loads(FIXTURE.read_bytes())
    assert restored.tombstones == {}
    assert orjson.loads(restored.dumps())["version"] == STATE_VERSION == 7


def test_version_2_is_read_with_no_starter_and_no_command_taken() -> None:
    """Version 3 added who started each rollout and the signed commands it took; a
    version-2 record knows neither (so any authorised principal may approve its rollouts)."""
    blob = (FIXTURES / "service-state-v2.json").read_bytes()
    assert orjson.loads(blob)["version"] == 2

    restored = ServiceSnapshot.loads(blob)

    assert [(r.started_by, r.controls) for r in restored.rollouts] == [(None, [])]
    assert restored.dumps() == ServiceSnapshot.loads(FIXTURE.read_bytes()).dumps()


def test_version_3_is_read_with_no_routing_observed() -> None:
    """Version 4 added each rollout's observed routing; a version-3 record observed none, so
    its rollouts take the share decided as routed, as they did, and await no decision."""
    blob = (FIXTURES / "service-state-v3.json").read_bytes()
    assert orjson.loads(blob)["version"] == 3

    restored = ServiceSnapshot.loads(blob)

    [rollout] = restored.rollouts
    assert rollout.last_decision is not None
    assert rollout.routing.to_state() == {
        "share": None,
        "at": None,
        "decided": rollout.last_decision.decision_id,
        "awaited": None,
        "awaited_since": None,
        "paged": None,
    }
    assert restored.dumps() == ServiceSnapshot.loads(FIXTURE.read_bytes()).dumps()


def test_version_4_goes_on_as_its_cumulative_tests_with_no_later_onset() -> None:
    """Version 5 added the change detectors; a version-4 rollout keeps the evidence it has:
    its detectors are its cumulative e-processes (no onset mass left), its restarts never
    start, so it decides as the run it came from."""
    blob = (FIXTURES / "service-state-v4.json").read_bytes()
    assert orjson.loads(blob)["version"] == 4
    restored = ServiceSnapshot.loads(blob)
    assert restored.dumps() == ServiceSnapshot.loads(FIXTURE.read_bytes()).dumps()
    units = [unit for group in restored.rollouts[0].groups for unit in group.units.values()]
    tests = [unit.test for unit in units if unit.kind in ("error_rate", "probe", "latency")]
    assert tests and all(t.mass == 0.0 for t in tests if t.steps)
    for test in tests:
        if test.steps and test.detect is not None:
            assert math.isclose(test.detector(), test.e_value(test.detect), rel_tol=1e-9)
    gauges = [unit for unit in units if unit.kind == "gauge"]
    assert gauges and all(not unit.restarts.live for unit in gauges if unit.diffs.count)

    assert_decides_as_recorded(restored)


def test_version_5_goes_on_with_the_low_traffic_rule_off() -> None:
    """Version 6 added the policy's low-traffic rule; a version-5 rollout started under a
    policy without it, so it goes on with it off and decides as the run it came from."""
    blob = (FIXTURES / "service-state-v5.json").read_bytes()
    assert orjson.loads(blob)["version"] == 5
    assert "low_traffic" not in orjson.loads(blob)["rollouts"][0]["policy"]
    restored = ServiceSnapshot.loads(blob)
    assert [r.policy.low_traffic.enabled for r in restored.rollouts] == [False]
    assert restored.dumps() == ServiceSnapshot.loads(FIXTURE.read_bytes()).dumps()
    assert_decides_as_recorded(restored)


def test_version_6_goes_on_with_no_message_of_a_last_witness() -> None:
    """Version 7 added the message of each rollout's last witness; a version-6 rollout knows
    none, so the next event ahead counts as a new witness, as it did, and the rollout decides
    as the run it came from."""
    blob = (FIXTURES / "service-state-v6.json").read_bytes()
    assert orjson.loads(blob)["version"] == 6
    assert "witness_message" not in orjson.loads(blob)["rollouts"][0]["admission"]
    restored = ServiceSnapshot.loads(blob)
    assert [r.admission.witness_message for r in restored.rollouts] == [None]
    assert restored.dumps() == ServiceSnapshot.loads(FIXTURE.read_bytes()).dumps()
    assert_decides_as_recorded(restored)


def test_version_7_the_current_format_reads_back_byte_for_byte() -> None:
    blob = (FIXTURES / "service-state-v7.json").read_bytes()
    assert orjson.loads(blob)["version"] == 7 == processor.STATE_VERSION
    restored = ServiceSnapshot.loads(blob)
    assert restored.dumps() == blob
    assert blob == ServiceSnapshot.loads(FIXTURE.read_bytes()).dumps()


def test_tombstones_survive_a_restart() -> None:
    snapshot = ServiceSnapshot.loads(FIXTURE.read_bytes())
    snapshot.tombstones = {"checkout-1": 1_790_000_000.5, "checkout-2": 1_790_000_900.0}
    assert ServiceSnapshot.loads(snapshot.dumps()).tombstones == snapshot.tombstones


def test_every_snapshot_field_is_stored() -> None:
    snapshot = ServiceSnapshot.loads(FIXTURE.read_bytes())
    stored = set(orjson.loads(snapshot.dumps())) - {"format", "version"}
    for item in dataclasses.fields(ServiceSnapshot):
        if item.name == "unreadable":  # a marker of this process, never stored
            continue
        assert item.name in stored, (
            f"ServiceSnapshot.{item.name} is not written by dumps(): add it to dumps/loads, "
            "bump STATE_VERSION and add a migration (canarystream/streaming/processor.py)"
        )


def test_an_older_version_is_upgraded_through_its_migration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def from_version_0(state: dict[str, Any]) -> dict[str, Any]:
        state["service"] = state.pop("name")
        return state | {"version": 1}

    monkeypatch.setitem(processor.MIGRATIONS, 0, from_version_0)
    old = snapshot_state()
    old["version"], old["name"] = 0, old.pop("service")

    restored = ServiceSnapshot.loads(orjson.dumps(old))

    assert restored.dumps() == ServiceSnapshot.loads(FIXTURE.read_bytes()).dumps()


# --- refused, never executed ----------------------------------------------------------------


def _damaged(change: Callable[[dict[str, Any]], Any]) -> bytes:
    state = snapshot_state()
    change(state)
    return orjson.dumps(state)


def _rollout(state: dict[str, Any]) -> dict[str, Any]:
    return state["rollouts"][0]  # type: ignore[no-any-return]


def _first_test(state: dict[str, Any]) -> dict[str, Any]:
    return _rollout(state)["groups"][1]["units"][0]["unit"]["test"]  # type: ignore[no-any-return]


REFUSED: dict[str, tuple[Callable[[], bytes], str]] = {
    "pickle-of-the-old-format": (
        lambda: pickle.dumps(ServiceSnapshot(SERVICE, 0), protocol=5),
        r"is a pickle \(the format before version 1\)",
    ),
    "protocol-0-pickle": (lambda: pickle.dumps({"service": SERVICE}, protocol=0), "not JSON"),
    "newer-version": (
        lambda: _damaged(lambda s: s.update(version=STATE_VERSION + 1)),
        rf"version {STATE_VERSION + 1} is newer than this worker reads \({STATE_VERSION}\)",
    ),
    "older-version-without-migration": (
        lambda: _damaged(lambda s: s.update(version=0)),
        f"version 0 is older than {STATE_VERSION} and no migration reads it",
    ),
    "version-as-text": (lambda: _damaged(lambda s: s.update(version="1")), "no integer version"),
    "no-format": (lambda: _damaged(lambda s: s.pop("format")), "not a canarystream service state"),
    "other-format": (
        lambda: _damaged(lambda s: s.update(format="other/state")),
        "not a canarystream service state",
    ),
    "not-an-object": (lambda: b"[1, 2, 3]", "not a canarystream service state"),
    "truncated": (lambda: FIXTURE.read_bytes()[:-200], "not JSON"),
    "garbage": (lambda: b"\x00\xffgarbage", "not JSON"),
    "empty": (lambda: b"", "not JSON"),
    "missing-rollouts": (
        lambda: _damaged(lambda s: s.pop("rollouts")),
        r"state\.rollouts: missing",
    ),
    "missing-field": (
        lambda: _damaged(lambda s: _rollout(s).pop("seq")),
        r"state\.rollouts\.0\.seq: missing",
    ),
    "wrong-type": (
        lambda: _damaged(lambda s: _rollout(s).update(seq="3")),
        r"state\.rollouts\.0\.seq: expected an integer, got str",
    ),
    "bool-for-integer": (
        lambda: _damaged(lambda s: _rollout(s).update(stage=True)),
        r"state\.rollouts\.0\.stage: expected an integer, got bool",
    ),
    "text-in-numbers": (
        lambda: _damaged(lambda s: _first_test(s)["loglik"].__setitem__(5, "0.5")),
        r"groups\.1\.units\.0\.unit\.test\.loglik: expected a list of numbers",
    ),
    "short-array": (
        lambda: _damaged(lambda s: _first_test(s)["loglik"].pop()),
        r"test\.loglik: expected \d+ items, got \d+",
    ),
    "unknown-phase": (
        lambda: _damaged(lambda s: _rollout(s).update(phase="exploded")),
        r"state\.rollouts\.0\.phase: unknown Phase 'exploded'",
    ),
    "invalid-policy": (
        lambda: _damaged(lambda s: _rollout(s)["policy"].update(alpha=5)),
        r"state\.rollouts\.0\.policy\.alpha: ",
    ),
    "groups-out-of-policy-order": (
        lambda: _damaged(lambda s: _rollout(s)["groups"].reverse()),
        r"groups\.0\.name: 'probes' is not the policy's check 'error_rate'",
    ),
    "rollout-of-another-service": (
        lambda: _damaged(lambda s: _rollout(s).update(service="search")),
        "rollout of service 'search' in the state of 'checkout'",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_with_a_message_naming_the_problem(name: str) -> None:
    make, message = REFUSED[name]

    with pytest.raises(StateFormatError, match=message):
        ServiceSnapshot.loads(make())


def test_state_format_error_is_one_of_ours() -> None:
    assert issubclass(StateFormatError, CanarystreamError)


def test_a_pickled_record_is_never_executed(tmp_path: Path) -> None:
    proof, target = tmp_path / "proof", tmp_path / "target"
    pickle.loads(pickle.dumps(_Touch(proof))).close()
    assert proof.exists()  # the record would run code if it were unpickled

    for protocol in (0, 2, 5):
        with pytest.raises(StateFormatError):
            ServiceSnapshot.loads(pickle.dumps(_Touch(target), protocol=protocol))

    assert not target.exists()


# --- an unreadable record in the worker ----------------------------------------------------


def test_unreadable_record_is_reported_and_its_messages_dead_lettered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    forged = pickle.dumps(_Touch(tmp_path / "executed"), protocol=5)
    store = {SERVICE: forged}
    worker = BatchProcessor(Engine(), store.get, lambda: 0.0, telemetry_topic=TELEMETRY)
    started = orjson.dumps(Stream().started(policy=fast_policy()))
    batch = [
        Inbound(TELEMETRY, 0, 7, SERVICE.encode(), request(T0 + 1)),
        Inbound(DEPLOYMENTS, 0, 3, SERVICE.encode(), started),
        Inbound(TELEMETRY, 1, 9, b"search", request(T0 + 1, "search")),  # no state: ignored
    ]

    with caplog.at_level(logging.ERROR, logger="canarystream.streaming.processor"):
        result = worker.process(batch)
    later = worker.process([Inbound(TELEMETRY, 0, 8, SERVICE.encode(), request(T0 + 2))])

    assert result.unreadable == {SERVICE}
    assert [letter.reason for letter in result.dead_letters] == ["state_unreadable"] * 2
    assert "is a pickle" in result.dead_letters[0].detail
    assert result.invalid["state_unreadable"] == 2 and result.ignored == 1
    # Nothing decided from empty state, and nothing stored over the record.
    assert result.decisions == [] and result.snapshots == {}
    assert [letter.reason for letter in later.dead_letters] == ["state_unreadable"]
    assert later.snapshots == {} and store[SERVICE] is forged
    assert not (tmp_path / "executed").exists()
    assert f"stored state of service {SERVICE!r} cannot be read" in caplog.text


def test_a_readable_record_is_restored_and_goes_on() -> None:
    continuation = orjson.loads(CONTINUATION.read_bytes())
    store = {SERVICE: FIXTURE.read_bytes()}
    worker = BatchProcessor(Engine(), store.get, lambda: 0.0, telemetry_topic=TELEMETRY)
    offset = ServiceSnapshot.loads(store[SERVICE]).offsets[TELEMETRY]
    batch = [
        Inbound(TELEMETRY, 3, offset + 1 + index, SERVICE.encode(), orjson.dumps(event))
        for index, event in enumerate(continuation["events"])
    ]

    result = worker.process(batch)

    assert_recorded(result.decisions, continuation["decisions"])
    assert not result.dead_letters and not result.unreadable
    stored = ServiceSnapshot.loads(result.snapshots[SERVICE].dumps())
    assert stored.offsets[TELEMETRY] > offset  # up to the last message its rollout took


if __name__ == "__main__":
    write_fixture()
