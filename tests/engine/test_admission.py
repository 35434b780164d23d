"""Event-time admission: no single event and no minority producer moves a rollout's clock.

Each attack reproduced on the engine before admission existed: one request stamped years
ahead held a rollout at that time for good (a canary with 3x errors was never rolled back);
one stamped +3 days rolled back a healthy canary; 60 canary 503s stamped 11 days before the
deployment rolled back a healthy canary.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import numpy as np
import pytest

from canarystream.contracts.decision import Action, Decision
from canarystream.contracts.topics import service_partition
from canarystream.engine import Engine
from canarystream.errors import ContractError
from canarystream.readable import duration
from tests.support.streams import CANARY, SERVICE, T0, Cohort, Stream, fast_policy, merge

DAY = 86_400.0


def lenient(events: list[dict[str, Any]], engine: Engine | None = None):
    """Feed events as a driver does: contract errors are counted by reason, the rest flows on."""
    engine = engine if engine is not None else Engine()
    decisions: list[Decision] = []
    rejected: Counter[str] = Counter()
    for event in events:
        try:
            decisions.extend(engine.process(event))
        except ContractError as exc:
            rejected[exc.reason] += 1
    return decisions, rejected, engine


def signature(decisions: list[Decision]) -> list[tuple]:
    return [(d.seq, d.action, d.ts, d.stage, d.traffic_percent, d.phase) for d in decisions]


def request(at: float, *, version: str = CANARY, status: int = 200, **extra: Any) -> dict:
    return {
        "type": "request",
        "ts": T0 + at,
        "service": SERVICE,
        "version": version,
        "latency_ms": 40.0,
        "status": status,
        **extra,
    }


def healthy_rollout(seed: int = 0) -> list[dict[str, Any]]:
    stream = Stream(seed)
    return [stream.started(policy=fast_policy()), *stream.requests(0, 200, rate=40)]


def regressed_rollout(seed: int = 0) -> list[dict[str, Any]]:
    stream = Stream(seed, canary=Cohort(error_rate=0.03))
    return [stream.started(policy=fast_policy()), *stream.requests(0, 200, rate=40)]


def insert(events: list[dict], at_index: int, *extra: dict) -> list[dict]:
    return [*events[:at_index], *extra, *events[at_index:]]


@pytest.mark.parametrize("ahead", [3 * DAY, 2 * 365 * DAY, 60 * 365 * DAY])
@pytest.mark.parametrize("stream", [healthy_rollout, regressed_rollout])
def test_a_lone_far_future_event_changes_no_decision(stream, ahead: float) -> None:
    events = stream()
    reference, rejected, reference_engine = lenient(events)
    assert not rejected
    reference_ignored = Counter(ignored=reference_engine.counters["telemetry_without_rollout"])
    far = request(0, status=503) | {"ts": min(T0 + 30 + ahead, 4_102_444_800.0)}
    for index in (1, 50, len(events) // 2, len(events) - 5):
        decisions, rejected, engine = lenient(insert(events, index, far))
        assert signature(decisions) == signature(reference)
        # Rejected while the rollout is live; after it ended, telemetry is simply ignored.
        ignored = engine.counters["telemetry_without_rollout"]
        assert rejected + Counter(ignored=ignored) - reference_ignored == Counter(
            {"ts_out_of_range": 1}
        ) or (not rejected and ignored)
    # The regressed canary is still rolled back; the healthy one still promoted.
    assert reference[-1].action in {Action.ROLLBACK, Action.PROMOTE}


def test_canary_errors_stamped_before_the_deployment_are_rejected() -> None:
    events = healthy_rollout()
    reference, _, _ = lenient(events)
    assert reference[-1].action is Action.PROMOTE
    stale = [request(-11 * DAY + i, status=503) for i in range(60)]
    decisions, rejected, _ = lenient(insert(events, len(events) // 3, *stale))
    assert signature(decisions) == signature(reference)
    assert rejected == Counter({"ts_out_of_range": 60})


def test_telemetry_within_the_grace_before_the_start_is_accepted() -> None:
    stream = Stream(0)
    started = stream.started(policy=fast_policy())
    early = [request(-30 + i) for i in range(5)]  # grace is 60 s by default
    _, rejected, engine = lenient([started, *early])
    assert not rejected
    assert engine.rollouts[started["deployment"]].arrived == 5


def test_telemetry_exactly_the_grace_before_the_start_is_the_earliest_accepted() -> None:
    stream = Stream(0)
    started = stream.started(policy=fast_policy())  # grace 60 s
    engine = Engine()
    engine.process(started)
    engine.process(request(-60.0))
    gauge = request(-60.0) | {"type": "metric", "name": "cpu", "value": 0.5}
    for field in ("latency_ms", "status"):
        del gauge[field]
    engine.process(gauge)  # samples are admitted by the rollout itself, requests inline
    with pytest.raises(ContractError) as refused:
        engine.process(request(-60.001))

    assert engine.rollouts[started["deployment"]].arrived == 2
    assert refused.value.reason == "ts_out_of_range"
    assert str(refused.value) == (
        f"ts {T0 - 60.001:.3f} (2026-09-21T14:12:19Z) is before deployment "
        f"{started['deployment']!r} started (2026-09-21T14:13:20Z) minus 1m 00s "
        "(admission.grace)"
    )


def test_a_skewed_minority_producer_does_not_drag_the_clock() -> None:
    """One instance in ten stamps its events 100 s ahead (inside max_skew): the clock follows
    the other nine, never more than one tick ahead of the true time."""
    events = healthy_rollout()
    rng = np.random.default_rng(3)
    skewed = []
    for event in events[1:]:
        if rng.random() < 0.1:
            skewed.append(event | {"ts": event["ts"] + 100.0, "instance": "bad-host"})
        else:
            skewed.append(event)
    engine = Engine()
    engine.process(events[0])
    rollout = engine.rollouts[events[0]["deployment"]]
    true_time = T0
    worst = 0.0
    for event in skewed:
        if event.get("instance") != "bad-host":
            true_time = max(true_time, event["ts"])
        with contextlib.suppress(ContractError):
            engine.process(event)
        worst = max(worst, rollout.clock - true_time)
    assert worst <= rollout.tick


def test_a_skewed_producer_beyond_max_skew_is_rejected_and_changes_nothing() -> None:
    """A host an hour ahead: its events are all rejected, the rest decides as without it."""
    events = healthy_rollout(seed=4)
    rng = np.random.default_rng(5)
    bad = rng.random(len(events)) < 0.3
    bad[0] = False
    mixed = [e | {"ts": e["ts"] + 3600.0} if b else e for e, b in zip(events, bad, strict=True)]
    clean = [e for e, b in zip(events, bad, strict=True) if not b]
    decisions, rejected, engine = lenient(mixed)
    reference, _, _ = lenient(clean)
    assert signature(decisions) == signature(reference)
    assert set(rejected) == {"ts_out_of_range"}
    # Every bad event is rejected while the rollout is live, ignored after it ended.
    ignored_after_end = engine.counters["telemetry_without_rollout"]
    assert rejected["ts_out_of_range"] + ignored_after_end >= int(bad.sum())
    assert rejected["ts_out_of_range"] > 1000


def test_a_real_gap_of_every_producer_still_works() -> None:
    """Every producer silent for 20 minutes, then back: the clock moves over the gap after a
    few events (the ones that reveal it are rejected) and the rollout goes on."""
    stream = Stream(0)
    policy = fast_policy(guards={"no_data": {"hold_after": 60, "rollback_after": 3600}})
    started = stream.started(policy=policy)
    before = stream.requests(0, 40, rate=40)
    after = stream.requests(40 + 1200, 40 + 1500, rate=40)
    decisions, rejected, engine = lenient([started, *before, *after])
    rollout = engine.rollouts[started["deployment"]]
    gap_witnesses = rollout.policy.admission.gap_witnesses
    assert rejected["ts_out_of_range"] == gap_witnesses - 1
    # The silence was real, so it is judged (held for no canary telemetry); then the rollout
    # resumes and finishes on the telemetry after the gap.
    assert any("no canary telemetry" in d.summary for d in decisions)
    assert decisions[-1].action is Action.PROMOTE
    assert decisions[-1].ts > after[0]["ts"]


def test_every_request_but_the_rejected_witnesses_of_a_real_gap_is_counted() -> None:
    """The one that reveals the gap too, whichever tick the clock lands in after it."""
    stream = Stream(0)
    policy = fast_policy(
        stages=[{"traffic_percent": 10, "min_duration": 3600}],
        guards={"no_data": {"hold_after": 60, "rollback_after": 3600}},
    )
    started = stream.started(policy=policy)
    before = stream.requests(0, 40, rate=40)
    after = stream.requests(40 + 1200, 40 + 1300, rate=40)
    _, rejected, engine = lenient([started, *before, *after])
    rollout = engine.rollouts[started["deployment"]]
    assert rollout.is_live
    counted = sum(rollout.consumed["request"]) + sum(b.requests.requests for b in rollout.buckets)
    counted += len(rollout.admission.pending)
    assert counted == len(before) + len(after) - rejected["ts_out_of_range"]


def two_services(busy_service: str) -> list[dict[str, Any]]:
    """checkout's telemetry stops at 20 s; ``busy_service``'s flows on for 15 minutes."""
    quiet = Stream(0)
    busy = Stream(1, deployment="search-7")
    quiet_started = quiet.started(policy=fast_policy())
    slow = fast_policy(stages=[{"traffic_percent": 10, "min_duration": 3600}])
    busy_started = busy.started(policy=slow) | {"service": busy_service}
    busy_events = [e | {"service": busy_service} for e in busy.requests(0, 900, rate=5)]
    return merge([quiet_started, busy_started], quiet.requests(0, 20, rate=40), busy_events)


def test_a_service_whose_telemetry_stops_reaches_its_no_data_deadline_by_input_time() -> None:
    """Replay: the telemetry of another service of the same partition carries time on."""
    assert service_partition("search12") == service_partition(SERVICE)
    quiet_started = two_services("search12")[0]
    decisions, rejected, engine = lenient(two_services("search12"))
    assert not rejected
    mine = [d for d in decisions if d.deployment == quiet_started["deployment"]]
    assert mine[-1].action is Action.ROLLBACK
    assert "no canary telemetry" in mine[-1].summary
    policy = engine.rollouts[quiet_started["deployment"]].policy
    latest = policy.guards.no_data.rollback_after + policy.admission.idle_after + 20
    assert mine[-1].ts - T0 <= latest + 2 * policy.admission.idle_after


def test_heartbeats_carry_an_idle_rollout_to_its_no_data_deadline() -> None:
    """Live: nothing else flows; the worker's heartbeats move the idle rollout's clock."""
    stream = Stream(0)
    started = stream.started(policy=fast_policy())
    traffic = stream.requests(0, 20, rate=40)
    beats = [{"type": "heartbeat", "ts": T0 + 20 + 10 * i, "service": SERVICE} for i in range(200)]
    decisions, rejected, _ = lenient([started, *traffic, *beats])
    assert not rejected
    rollback = next(d for d in decisions if d.action is Action.ROLLBACK)
    assert "no canary telemetry" in rollback.summary
    # Exactly when a driver that knows the time would have rolled it back.
    engine = Engine()
    alone, _, _ = lenient([started, *traffic], engine)
    assert all(d.action is not Action.ROLLBACK for d in alone)  # waits for telemetry forever
    (told,) = [d for d in engine.advance_to(T0 + 3000) if d.action is Action.ROLLBACK]
    assert rollback.ts == told.ts


def test_heartbeats_do_not_move_a_rollout_that_receives_telemetry() -> None:
    events = healthy_rollout()
    reference, _, _ = lenient(events)
    beat = {"type": "heartbeat", "ts": T0 + 10 * DAY / DAY * 100, "service": SERVICE}
    with_beats = []
    for index, event in enumerate(events):
        with_beats.append(event)
        if index % 97 == 0:
            with_beats.append(beat | {"ts": event["ts"] + 100})
    decisions, _, _ = lenient(with_beats)
    assert signature(decisions) == signature(reference)


def test_a_far_future_control_event_is_rejected_and_moves_nothing() -> None:
    events = healthy_rollout()
    reference, _, _ = lenient(events)
    stream = Stream(0)
    abort = stream.control("aborted", 5 * DAY)
    decisions, rejected, _ = lenient(insert(events, len(events) // 2, abort))
    assert signature(decisions) == signature(reference)
    assert rejected == Counter({"ts_out_of_range": 1})


def test_a_far_future_announcement_cannot_drag_the_rollout_it_supersedes() -> None:
    old = Stream(0)
    # Without the low-traffic rule, which would promote it at 130 s (its error ratio cannot
    # reach the promote tolerance within a 60 s stage).
    started = old.started(policy=fast_policy(low_traffic={"enabled": False}))
    traffic = old.requests(0, 100, rate=40)
    new = old.started(1000 * DAY, deployment="checkout-99", policy=fast_policy())
    decisions, _, engine = lenient([started, *traffic, new])
    superseded = [d for d in decisions if d.deployment == started["deployment"]][-1]
    assert superseded.action is Action.ROLLBACK
    assert superseded.ts - T0 <= 100 + engine.rollouts["checkout-42"].policy.admission.max_skew


def test_a_finished_deployment_id_is_never_started_again() -> None:
    """Re-sent after its state was dropped (the worker keeps few finished rollouts): its
    tombstone answers, until the tombstone's time-to-live has passed."""
    first = Stream(0)
    events = healthy_rollout()
    engine = Engine(tombstone_ttl=7 * DAY)
    decisions, _, _ = lenient(events, engine)
    assert decisions[-1].action is Action.PROMOTE
    later = [
        Stream(i).started(300 * i, deployment=f"checkout-{100 + i}", policy=fast_policy())
        for i in range(1, 5)
    ]
    lenient(later, engine)
    engine.forget(SERVICE, keep=1)  # as the worker does: drop all but the newest
    assert "checkout-42" not in engine.rollouts
    resent = first.started(2000, policy=fast_policy())
    with pytest.raises(ContractError) as rejected:
        engine.process(resent)
    assert rejected.value.reason == "duplicate_deployment"
    assert "checkout-42" not in engine.rollouts
    # After the time-to-live the id may be announced again.
    engine2 = Engine(tombstone_ttl=3600)
    lenient(events, engine2)
    lenient(later, engine2)
    engine2.forget(SERVICE, keep=1)
    late = first.started(5 * DAY, policy=fast_policy())
    assert [d.action for d in engine2.process(late) if d.deployment == "checkout-42"] == [
        Action.ADVANCE
    ]


def test_admission_keeps_decisions_of_an_ordered_stream() -> None:
    """On a time-ordered stream the clock moves at the same boundaries as it always did:
    batching and arrival delay of witnesses change nothing."""
    events = healthy_rollout(seed=9) + [request(200 + i * 0.01) for i in range(40)]
    one_by_one, _, _ = lenient(events)
    engine = Engine()
    batched: list[Decision] = []
    for start in range(0, len(events), 333):
        batched += engine.process_batch(events[start : start + 333], lambda i, e: None)
    assert signature(batched) == signature(one_by_one)


def test_only_a_partitions_own_time_moves_its_idle_rollouts() -> None:
    """The worker interleaves partitions as the broker delivers them: the decisions of a
    service must not depend on how far another partition's telemetry has got."""
    assert service_partition("search") != service_partition(SERVICE)
    events = two_services("search")
    decisions, _, _ = lenient(events)
    mine = [d for d in decisions if d.deployment == "checkout-42"]
    assert all(d.action is not Action.ROLLBACK for d in mine)
    # Every order of the two partitions (each kept in order) gives the same decisions.
    checkout = [e for e in events if e["service"] == SERVICE]
    search = [e for e in events if e["service"] != SERVICE]
    one_then_other, _, _ = lenient(search + checkout)
    other_then_one, _, _ = lenient(checkout + search)
    key = sorted((d.deployment, d.seq, d.action, d.ts, d.traffic_percent) for d in decisions)
    for order in (one_then_other, other_then_one):
        assert (
            sorted((d.deployment, d.seq, d.action, d.ts, d.traffic_percent) for d in order) == key
        )


def test_one_message_of_far_future_events_is_never_taken_for_a_gap() -> None:
    """A producer's batch (one Kafka message) of 50 events a day ahead is one witness of a
    gap, not 50: all are rejected and no decision changes."""
    events = healthy_rollout()
    reference, _, _ = lenient(events)
    burst = [request(DAY + i) for i in range(50)]
    engine = Engine()
    decisions: list[Decision] = []
    errors: list[str] = []
    middle = len(events) // 2
    decisions += engine.process_batch(events[:middle], lambda i, e: errors.append(e.reason))
    decisions += engine.process_batch(
        burst, lambda i, e: errors.append(e.reason), "canary.telemetry.v1/0@1234"
    )
    decisions += engine.process_batch(events[middle:], lambda i, e: errors.append(e.reason))
    assert signature(decisions) == signature(reference)
    assert errors == ["ts_out_of_range"] * 50
    # The same events as 50 messages of their own are a gap of every producer.
    engine = Engine()
    engine.process_batch(events[:middle], lambda i, e: None)
    engine.process_batch(burst, lambda i, e: None)
    assert engine.rollouts["checkout-42"].clock > T0 + DAY - 600


@pytest.mark.parametrize("ahead", [None, 100.0])
def test_a_gap_of_a_week_is_judged_as_silence_at_its_end(ahead: float | None) -> None:
    """Every producer silent for a week (more idle ticks than are closed one by one): the
    open tick's events, and one held for its own tick ``ahead`` of them, are counted in their
    own ticks, not at the gap's end, so the week shows as the canary's silence there (from
    45 s, or from the held event's tick at 145 s: the same days and hours)."""
    stream = Stream(0)
    policy = fast_policy(guards={"no_data": {"hold_after": 60, "rollback_after": 30 * DAY}})
    started = stream.started(policy=policy)
    before = stream.requests(0, 42.5, rate=40)
    held = [request(42.5 + ahead)] if ahead is not None else []
    after = stream.requests(7 * DAY, 7 * DAY + 200, rate=40)
    decisions, rejected, _ = lenient([started, *before, *held, *after])

    assert rejected == Counter({"ts_out_of_range": 15})
    hold = [d for d in decisions if d.action is Action.HOLD][-1]
    assert hold.ts == T0 + 7 * DAY
    assert hold.summary == f"no canary telemetry for {duration(7 * DAY - 145)}"
    if ahead is not None:  # its tick closed on its own, ending the silence it held before
        assert (Action.ADVANCE, "hold cleared; stage 1 resumes") in [
            (d.action, d.summary) for d in decisions if d.ts == T0 + 145
        ]
    assert decisions[-1].action is Action.PROMOTE


def test_one_message_of_events_stamped_ahead_within_max_skew_does_not_drag_the_clock() -> None:
    """One producer's single message holds ten events stamped 100 s ahead (inside max_skew):
    like ten events of one instance, it is one source and must not move the clock alone."""
    events = healthy_rollout()
    engine = Engine()
    for event in events[:401]:
        engine.process(event)
    rollout = engine.rollouts[events[0]["deployment"]]
    true_time = max(float(e["ts"]) for e in events[1:401])
    before = rollout.clock
    for i in range(10):
        ahead = request(true_time - T0 + 100.0 + i * 0.01, instance="bad-host")
        with contextlib.suppress(ContractError):
            engine.process(ahead, message="one-message")
    assert rollout.clock - true_time <= rollout.tick, (before - T0, rollout.clock - T0)
