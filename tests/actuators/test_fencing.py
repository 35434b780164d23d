"""The fence: each decision applied once, never an older one over a newer one."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from canarystream.actuators.fencing import Admission, Fence
from canarystream.contracts.decision import decision_id_for


def _id(seq: int, deployment: str = "d1") -> str:
    return decision_id_for(deployment, seq, "advance")


def test_new_then_duplicate() -> None:
    fence = Fence()
    assert fence.admit(_id(0), "d1", 0) is Admission.NEW
    assert fence.admit(_id(0), "d1", 0) is Admission.NEW  # admit alone records nothing
    fence.record(_id(0), "d1", 0)
    assert fence.admit(_id(0), "d1", 0) is Admission.DUPLICATE
    assert fence.highest_seq("d1") == 0


def test_stale_and_out_of_order() -> None:
    fence = Fence()
    fence.record(_id(3), "d1", 3)
    assert fence.admit(_id(2), "d1", 2) is Admission.STALE  # arrived after a newer one
    assert fence.admit("another-id", "d1", 3) is Admission.STALE  # same seq, other decision
    assert fence.admit(_id(5), "d1", 5) is Admission.NEW  # a gap is fine
    fence.record(_id(5), "d1", 5)
    assert fence.admit(_id(4), "d1", 4) is Admission.STALE
    assert fence.admit(_id(3), "d1", 3) is Admission.DUPLICATE  # still remembered


def test_deployments_are_fenced_apart() -> None:
    fence = Fence()
    fence.record(_id(7), "d1", 7)
    assert fence.admit(_id(0, "d2"), "d2", 0) is Admission.NEW
    assert "d1" in fence and "d2" not in fence and fence.highest_seq("d2") is None


def test_old_ids_are_forgotten_but_stay_stale() -> None:
    fence = Fence(recent_ids=2)
    for seq in range(4):
        fence.record(_id(seq), "d1", seq)
    assert fence.admit(_id(3), "d1", 3) is Admission.DUPLICATE
    assert fence.admit(_id(0), "d1", 0) is Admission.STALE  # id forgotten, seq still fences


def test_finished_deployments_are_bounded() -> None:
    fence = Fence(max_finished=2)
    fence.record(_id(0, "live"), "live", 0)
    for name in ("a", "b", "c"):
        fence.record(_id(0, name), name, 0)
        fence.record(_id(1, name), name, 1, final=True)
    assert "a" not in fence and "b" in fence and "c" in fence
    assert "live" in fence  # live rollouts are never forgotten
    assert len(fence) == 3
    assert fence.admit(_id(1, "b"), "b", 1) is Admission.DUPLICATE


def test_fence_pickles() -> None:
    fence = Fence(max_finished=5, recent_ids=3)
    fence.record(_id(0), "d1", 0)
    fence.record(_id(1, "d2"), "d2", 1, final=True)
    restored = pickle.loads(pickle.dumps(fence))
    assert restored.admit(_id(0), "d1", 0) is Admission.DUPLICATE
    assert restored.admit(_id(0, "d2"), "d2", 0) is Admission.STALE
    assert (restored.max_finished, restored.recent_ids) == (5, 3)


@given(st.lists(st.integers(min_value=0, max_value=20), max_size=60))
def test_applied_seqs_only_increase(deliveries: list[int]) -> None:
    """However decisions are redelivered and reordered, what is applied goes forward."""
    fence = Fence(recent_ids=4)
    applied: list[int] = []
    for seq in deliveries:
        if fence.admit(_id(seq), "d1", seq) is Admission.NEW:
            fence.record(_id(seq), "d1", seq)
            applied.append(seq)
    assert applied == sorted(set(applied))
    if deliveries:
        assert applied[-1] == max(deliveries)
