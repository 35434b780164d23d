"""The recorder's merge of one partition's input topics: causal order, each topic's own kept."""

from __future__ import annotations

from dataclasses import dataclass

from canarystream.audit.merge import PartitionMerge

RANK = {"verdicts": 0, "decisions": 1, "actuations": 2}


@dataclass(frozen=True)
class Msg:
    offset: int
    timestamp: int


def released(merge: PartitionMerge[Msg], now: float = 0.0, *, caught_up: bool = True) -> list:
    return [(t, m.offset) for t, m in merge.release(lambda _: caught_up, now)]


def test_a_backlog_comes_out_in_producer_time_with_ties_to_the_verdict() -> None:
    merge: PartitionMerge[Msg] = PartitionMerge(RANK, hold_seconds=1.0)
    # As a consumer may hand them out: every report first, then the decisions, then the verdict.
    merge.add("actuations", [Msg(0, 11), Msg(1, 21)])
    merge.add("decisions", [Msg(0, 10), Msg(1, 20)])
    merge.add("verdicts", [Msg(0, 10)])
    assert released(merge) == [
        ("verdicts", 0),
        ("decisions", 0),
        ("actuations", 0),
        ("decisions", 1),
        ("actuations", 1),
    ]
    assert len(merge) == 0


def test_messages_handed_out_again_or_already_recorded_are_left_out() -> None:
    merge: PartitionMerge[Msg] = PartitionMerge(RANK, hold_seconds=1.0)
    assert merge.add("decisions", [Msg(0, 10), Msg(1, 11)]) == 0
    assert merge.add("decisions", [Msg(0, 10), Msg(1, 11), Msg(2, 12)]) == 2  # after a seek
    assert merge.add("verdicts", [Msg(3, 1), Msg(4, 9)], start=4) == 1  # 3 is in the trail
    assert released(merge) == [
        ("verdicts", 4),
        ("decisions", 0),
        ("decisions", 1),
        ("decisions", 2),
    ]


def test_a_topic_keeps_its_own_order_whatever_its_times() -> None:
    merge: PartitionMerge[Msg] = PartitionMerge(RANK, hold_seconds=1.0)
    merge.add("decisions", [Msg(0, 30), Msg(1, 10)])  # a producer whose clock went back
    merge.add("verdicts", [Msg(0, 20)])
    merge.add("actuations", [Msg(0, 25)])
    assert released(merge) == [
        ("verdicts", 0),
        ("actuations", 0),
        ("decisions", 0),
        ("decisions", 1),
    ]


def test_waits_for_a_topic_not_read_to_its_end_then_gives_up_after_the_hold() -> None:
    merge: PartitionMerge[Msg] = PartitionMerge(RANK, hold_seconds=2.0)
    merge.add("decisions", [Msg(0, 10)])
    assert released(merge, 0.0, caught_up=False) == []
    assert released(merge, 1.5, caught_up=False) == []
    assert len(merge) == 1
    assert released(merge, 2.0, caught_up=False) == [("decisions", 0)]
    # A new wait starts from scratch once nothing is held.
    merge.add("decisions", [Msg(1, 11)])
    assert released(merge, 2.5, caught_up=False) == []
    assert released(merge, 3.0, caught_up=True) == [("decisions", 1)]
