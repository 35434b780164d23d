"""The fold of decisions into rollout summaries: stage entry, ends, duplicates, attention."""

from __future__ import annotations

import orjson

from canarystream.contracts.decision import (
    Action,
    CheckReason,
    Decision,
    Phase,
    Verdict,
)
from canarystream.summary import CheckStatus, RolloutBook, plain_value, summarize
from tests.support.decisions import decision

T0 = 1_790_000_000.0


def _decision(
    seq: int,
    action: Action = Action.ADVANCE,
    *,
    stage: int = 0,
    share: float = 5.0,
    phase: Phase = Phase.RUNNING,
    deployment: str = "d1",
    service: str = "shop",
    page: bool = False,
    reasons: list[CheckReason] | None = None,
) -> Decision:
    return decision(
        deployment, seq, action, service=service, stage=stage, share=share, phase=phase,
        page=page, ts=T0, spacing=60.0, reasons=reasons,
    )  # fmt: skip


def _reason(check: str, verdict: Verdict, kind: str = "error_rate") -> CheckReason:
    return CheckReason(
        check=check,
        kind=kind,
        verdict=verdict,
        estimate=1.8,
        upper=2.4,
        tolerance=1.5,
        advance_tolerance=2.0,
        message=f"{check} says {verdict.value}",
    )


def test_a_rollout_is_summed_up_from_its_decisions() -> None:
    reasons = [
        _reason("errors", Verdict.FAIL),
        _reason("p99", Verdict.INCONCLUSIVE, kind="latency"),
        _reason("probes", Verdict.PASS, kind="probe"),
        _reason("data", Verdict.NO_DATA),
    ]
    book = RolloutBook().extend(
        [
            _decision(1, stage=0, share=5),
            _decision(2, stage=1, share=25),
            _decision(3, Action.HOLD, stage=1, share=25, phase=Phase.HELD, reasons=reasons),
        ]
    )
    summary = book.get("d1")
    assert summary is not None
    assert (summary.phase, summary.stage, summary.traffic_percent) == (Phase.HELD, 1, 25.0)
    assert summary.started_at == T0 + 60 and summary.stage_since == T0 + 120
    assert summary.age(T0 + 600) == 540 and summary.in_stage(T0 + 600) == 480
    assert summary.last.action is Action.HOLD and summary.decisions == 3
    assert [c.check for c in summary.attention] == ["errors", "p99"]
    errors = summary.attention[0]
    # The tolerance in force (advance) is shown, not the rejection margin.
    assert (errors.estimate, errors.bound, errors.tolerance) == (1.8, 2.4, 2.0)
    assert errors.plain == "estimate ×1.8, bound ×2.4, tolerance ×2"
    assert [d.seq for d in book.timeline("d1")] == [1, 2, 3]


def test_a_duplicate_or_older_decision_changes_nothing() -> None:
    book = RolloutBook()
    book.extend([_decision(1), _decision(2, stage=1, share=25)])
    assert book.add(_decision(2, stage=1, share=25)) is None
    assert book.add(_decision(1)) is None
    summary = book.get("d1")
    assert summary is not None and summary.decisions == 2 and summary.last.seq == 2
    assert book.duplicates == 2
    assert len(book.timeline("d1")) == 2


def test_time_in_stage_stops_when_the_rollout_ends_and_pages_are_remembered() -> None:
    book = RolloutBook().extend(
        [
            _decision(1, stage=0, share=5),
            _decision(2, Action.ROLLBACK, stage=0, share=0, phase=Phase.ROLLED_BACK),
            _decision(
                4, Action.ROLLBACK_NOT_RECOVERING, share=0, phase=Phase.ROLLED_BACK, page=True
            ),
        ]
    )
    summary = book.get("d1")
    assert summary is not None
    assert summary.ended_at == T0 + 120
    assert summary.in_stage(T0 + 10_000) == 60  # stage entered at seq 1, ended at seq 2
    assert summary.paged and summary.last.action is Action.ROLLBACK_NOT_RECOVERING
    assert summary.ending is not None and summary.ending.action is Action.ROLLBACK
    assert summary.first_seq == 1


def test_a_finished_rollout_shows_the_checks_that_ended_it() -> None:
    failing = [_reason("errors", Verdict.FAIL)]
    recovered = [_reason("recovery", Verdict.PASS)]
    book = RolloutBook().extend(
        [
            _decision(1),
            _decision(2, Action.ROLLBACK, share=0, phase=Phase.ROLLED_BACK, reasons=failing),
            _decision(3, Action.ROLLBACK_VERIFIED, share=0, phase=Phase.ROLLED_BACK,
                      reasons=recovered),
        ]
    )  # fmt: skip
    summary = book.get("d1")
    assert summary is not None and summary.last.action is Action.ROLLBACK_VERIFIED
    assert [c.check for c in summary.attention] == ["errors"]
    live = RolloutBook().extend([_decision(1, Action.HOLD, phase=Phase.HELD, reasons=recovered)])
    held = live.get("d1")
    assert held is not None and held.attention == []


def test_clock_behind_the_decisions_gives_no_negative_durations() -> None:
    (summary,) = summarize([_decision(5)])
    assert summary.age(T0) == 0.0 and summary.in_stage(T0) == 0.0
    assert summary.first_seq == 5  # the reader did not see the rollout's start


def test_live_rollouts_come_first_then_the_most_recent() -> None:
    summaries = summarize(
        [
            _decision(1, deployment="old", share=100, phase=Phase.PROMOTED, stage=3),
            _decision(1, deployment="a"),
            _decision(2, deployment="b"),
        ]
    )
    assert [s.deployment for s in summaries] == ["b", "a", "old"]
    book = RolloutBook()
    assert book.newest_ts is None
    book.extend([_decision(3, deployment="a"), _decision(1, deployment="b")])
    assert book.newest_ts == T0 + 180


def test_json_form_keeps_raw_numbers_and_drops_non_finite_ones() -> None:
    reason = _reason("errors", Verdict.FAIL).model_copy(update={"upper": float("inf")})
    (summary,) = summarize([_decision(1, Action.HOLD, phase=Phase.HELD, reasons=[reason])])
    data = orjson.loads(orjson.dumps(summary.to_dict(T0 + 120)))
    assert data["age_seconds"] == 60 and data["phase"] == "held"
    assert data["last_decision"]["action"] == "hold"
    (check,) = data["attention"]
    assert check["estimate"] == 1.8 and check["bound"] is None
    assert check["plain"] == "estimate ×1.8, bound —, tolerance ×2"


def test_plain_values_speak_each_kinds_units() -> None:
    assert plain_value("latency", 0.2) == "+20%"
    assert plain_value("latency", 0.1, of="tolerance") == "+10%"
    assert plain_value("latency", 1.3, of="bound") == "×1.3"
    assert plain_value("probe", 3.0) == "×3"
    assert plain_value("slo_latency", 0.01) == "1%"
    assert plain_value("gauge", float("nan")) == "—"
    reason = _reason("x", Verdict.INCONCLUSIVE).model_copy(update={"advance_tolerance": None})
    assert CheckStatus.from_reason(reason).tolerance == 1.5
