"""The fence at its limits: parameter bounds, exact memory bounds, and every refusal's words."""

from __future__ import annotations

import pytest

from canarystream.actuators.fencing import Admission, Fence, refusal
from canarystream.contracts.decision import Action, Decision, decision_id_for
from canarystream.contracts.signing import Signer, Verifier, canonical_bytes
from tests.support.actuators import make_decision


def _id(seq: int, deployment: str = "d1") -> str:
    return decision_id_for(deployment, seq, "advance")


@pytest.mark.parametrize(("max_finished", "recent_ids"), [(0, 8), (-1, 8), (10, 0), (10, -3)])
def test_parameters_below_one_are_refused(max_finished: int, recent_ids: int) -> None:
    name = "max_finished" if max_finished < 1 else "recent_ids"
    value = max_finished if max_finished < 1 else recent_ids
    with pytest.raises(ValueError, match=rf"^{name} must be at least 1, not {value}$"):
        Fence(max_finished=max_finished, recent_ids=recent_ids)


def test_one_of_each_is_enough() -> None:
    fence = Fence(max_finished=1, recent_ids=1)
    assert (fence.max_finished, fence.recent_ids) == (1, 1)
    assert Fence().max_finished == 10_000 and Fence().recent_ids == 8
    fence.record(_id(0), "d1", 0)
    fence.record(_id(1), "d1", 1)
    assert fence.admit(_id(1), "d1", 1) is Admission.DUPLICATE
    assert fence.admit(_id(0), "d1", 0) is Admission.STALE  # only the last id is kept


def test_exactly_recent_ids_ids_are_remembered() -> None:
    fence = Fence(recent_ids=3)
    for seq in range(5):
        fence.record(_id(seq), "d1", seq)
    assert [fence.admit(_id(s), "d1", s) for s in range(5)] == [
        Admission.STALE,
        Admission.STALE,
        Admission.DUPLICATE,
        Admission.DUPLICATE,
        Admission.DUPLICATE,
    ]
    fence.record(_id(4), "d1", 4)  # recorded again: still one entry, nothing pushed out
    assert fence.admit(_id(2), "d1", 2) is Admission.DUPLICATE


def test_exactly_max_finished_deployments_are_remembered() -> None:
    fence = Fence(max_finished=2)
    for name in ("a", "b"):
        fence.record(_id(0, name), name, 0, final=True)
    assert "a" in fence and "b" in fence and len(fence) == 2
    fence.record(_id(0, "c"), "c", 0, final=True)
    assert "a" not in fence and len(fence) == 2
    assert fence.highest_seq("a") is None
    assert fence.admit(_id(0, "a"), "a", 0) is Admission.NEW  # forgotten: new again


def test_ending_again_makes_a_deployment_the_most_recent() -> None:
    fence = Fence(max_finished=2)
    fence.record(_id(0, "a"), "a", 0, final=True)
    fence.record(_id(0, "b"), "b", 0, final=True)
    fence.record(_id(1, "a"), "a", 1, final=True)  # "a" ended last now
    fence.record(_id(0, "c"), "c", 0, final=True)
    assert "a" in fence and "b" not in fence and "c" in fence


def test_the_highest_seq_never_goes_back() -> None:
    fence = Fence()
    fence.record(_id(5), "d1", 5)
    fence.record(_id(3), "d1", 3)  # recorded late (a hook's report): seq stays 5
    assert fence.highest_seq("d1") == 5
    assert fence.admit(_id(4), "d1", 4) is Admission.STALE
    assert fence.admit(_id(6), "d1", 6) is Admission.NEW
    assert fence.admit(_id(3), "d1", 3) is Admission.DUPLICATE


KEY = b"k"


def _signed(seq: int, action: Action = Action.ADVANCE) -> tuple[Decision, bytes, str]:
    decision = make_decision(seq, action)
    payload = canonical_bytes(decision)
    return decision, payload, Signer.hmac(KEY).sign(payload)


def test_refusals_name_why_and_what_was_done() -> None:
    verifier = Verifier(hmac_keys=[KEY])
    fence = Fence()
    decision, payload, signature = _signed(2)
    assert refusal(decision, payload, signature, verifier, fence) is None
    fence.record(decision.decision_id, decision.deployment, 2)

    assert refusal(decision, payload, None, verifier, fence) == (
        "refused: it is not signed",
        "unsigned",
    )
    assert refusal(decision, payload, "hmac-sha256:00", verifier, fence) == (
        "refused: its signature is not valid",
        "bad_signature",
    )
    done = refusal(decision, payload, signature, verifier, fence, done="handled")
    assert done == (
        f"refused: decision {decision.decision_id} was handled already",
        "duplicate",
    )
    older, older_payload, older_signature = _signed(1)
    assert refusal(older, older_payload, older_signature, verifier, fence) == (
        "refused: seq 1 is not newer than seq 2 already applied",
        "stale",
    )
    newer, newer_payload, newer_signature = _signed(3)
    assert refusal(newer, newer_payload, newer_signature, verifier, fence) is None


def test_without_a_verifier_only_the_fence_decides() -> None:
    fence = Fence()
    decision, payload, _ = _signed(0)
    assert refusal(decision, payload, None, None, fence) is None
    assert refusal(decision, payload, "garbage", None, fence) is None
    fence.record(decision.decision_id, decision.deployment, 0)
    assert refusal(decision, payload, None, None, fence) == (
        f"refused: decision {decision.decision_id} was applied already",
        "duplicate",
    )


def test_a_signature_check_comes_before_the_fence() -> None:
    fence = Fence()
    decision, payload, _ = _signed(0)
    fence.record(decision.decision_id, decision.deployment, 0)
    # A duplicate that is also unsigned is refused for its signature first.
    assert refusal(decision, payload, None, Verifier(hmac_keys=[KEY]), fence) == (
        "refused: it is not signed",
        "unsigned",
    )
