"""Decisions on a stack's decisions topic as the worker publishes them: signed over the exact
value bytes (header ``canarystream-signature``), keyed by deployment; and a rollout's worth of
them, for the readers of the topic (status, notifications) to fold."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer

from canarystream.contracts.codec import encode_decision
from canarystream.contracts.decision import (
    Action,
    CheckReason,
    Decision,
    Phase,
    Verdict,
    decision_id_for,
)
from canarystream.contracts.signing import SIGNATURE_HEADER, Signer
from canarystream.contracts.topics import DECISIONS_TOPIC
from tests.support.broker import Stack

__all__ = ["Published", "decision", "publish", "rollout"]

#: value, signature (None: unsigned), key (None: the deployment)
Published = tuple[bytes, str | None, bytes | None]


def decision(
    deployment: str,
    seq: int,
    action: Action = Action.ADVANCE,
    *,
    service: str = "shop",
    stage: int = 0,
    share: float = 5.0,
    phase: Phase = Phase.RUNNING,
    page: bool = False,
    summary: str | None = None,
    ts: float | None = None,
    spacing: float = 30.0,
    reasons: list[CheckReason] | None = None,
) -> Decision:
    """A decision as the engine makes it (its id derived the engine's way), stamped ``ts``
    (default: ten minutes ago) plus ``spacing`` seconds per ``seq``."""
    return Decision(
        decision_id=decision_id_for(deployment, seq, action.value),
        deployment=deployment,
        service=service,
        seq=seq,
        action=action,
        ts=(time.time() - 600 if ts is None else ts) + spacing * seq,
        stage=stage,
        traffic_percent=share,
        phase=phase,
        baseline_version="v1",
        canary_version="v2",
        policy="default",
        summary=summary or f"{action.value} at stage {stage}",
        reasons=reasons or [],
        page=page,
    )


def rollout(deployment: str, service: str = "shop", *, ts: float | None = None) -> list[Decision]:
    """A rollout that advances twice, is held awaiting approval with a failing non-critical
    check, rolls back, and does not recover (a page)."""
    failing = CheckReason(
        check="errors",
        kind="error_rate",
        verdict=Verdict.FAIL,
        critical=False,
        estimate=2.5,
        upper=3.1,
        tolerance=1.5,
        advance_tolerance=2.0,
        message="rate canary 0.025 vs baseline 0.01",
    )
    held = Phase.HELD
    done = Phase.ROLLED_BACK
    return [
        decision(deployment, 1, service=service, stage=0, share=5, ts=ts),
        decision(deployment, 2, service=service, stage=1, share=25, ts=ts),
        decision(deployment, 3, Action.HOLD, service=service, stage=1, share=25, phase=held,
                 summary="stage 1 passed; awaiting approval", ts=ts, reasons=[failing]),
        decision(deployment, 4, Action.ROLLBACK, service=service, stage=1, share=0, phase=done,
                 summary="critical regression: errors", ts=ts, reasons=[failing]),
        decision(deployment, 5, Action.ROLLBACK_NOT_RECOVERING, service=service, stage=1,
                 share=0, phase=done, page=True, summary="error rate still high", ts=ts),
    ]  # fmt: skip


def publish(stack: Stack, messages: Iterable[Decision | Published], signer: Signer) -> None:
    """Produce decisions signed with ``signer``, and raw ``(value, signature, key)`` tuples
    as they are, in order; wait for the broker's acknowledgements."""

    async def run() -> None:
        producer = AIOKafkaProducer(**stack.connection.client_kwargs(), acks="all")
        await producer.start()
        try:
            for item in messages:
                if isinstance(item, Decision):
                    value = encode_decision(item)
                    signature: str | None = signer.sign(value)
                    key: bytes | None = item.deployment.encode()
                else:
                    value, signature, key = item
                headers = [] if signature is None else [(SIGNATURE_HEADER, signature.encode())]
                await producer.send_and_wait(
                    stack.topic(DECISIONS_TOPIC), value, key=key, headers=headers
                )
        finally:
            await producer.stop()

    asyncio.run(run())
