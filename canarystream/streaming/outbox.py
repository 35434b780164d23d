"""Decisions on their way to the decisions topic: published in order, or not at all.

A batch's decisions must reach the broker before anything else about the batch is made
durable: the worker acknowledges the batch's messages and checkpoints the state that took
those decisions only after the broker has acknowledged every one of them. Otherwise a
checkpoint would say "decided" while the topic lacks the decision, and no restart would ever
derive it again. :class:`DecisionOutbox` enforces the publishing half of that rule:

- Decisions the topic already holds (:class:`~canarystream.streaming.published.PublishedIndex`)
  are not sent again.
- Each deployment's decisions are sent one at a time, the next only once the broker has
  acknowledged the previous one, so a failed send can never leave a later ``seq`` on the
  topic ahead of an earlier one; different deployments go out side by side.
- A failure is retried with exponential backoff. Before each retry, decisions the topic now
  shows (a send reported as failed may still have landed) are dropped from the outbox.
- When the decisions are still not all acknowledged after ``deadline`` seconds,
  :class:`PublishTimeoutError` is raised: the caller must then neither acknowledge nor
  checkpoint anything more (the worker exits and a restart decides again from its last
  checkpoint).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from canarystream.contracts.decision import Decision
from canarystream.errors import BrokerError
from canarystream.streaming.published import PublishedIndex

__all__ = ["DecisionOutbox", "Outcome", "PublishTimeoutError", "Send"]

log = logging.getLogger(__name__)

Send = Callable[[Decision], Awaitable[Awaitable[Any]]]
"""Hands one decision to the producer; the awaitable it returns resolves on the broker's ack."""


class PublishTimeoutError(BrokerError):
    """Decisions could not be published within the deadline; nothing past them may be stored."""


@dataclass
class Outcome:
    """What publishing one batch's decisions came to."""

    published: list[Decision] = field(default_factory=list)
    suppressed: int = 0  # already on the topic (a worker before a restart published them)
    failures: int = 0  # failed attempts, each followed by a retry


class DecisionOutbox:
    """Publishes decisions in ``seq`` order per deployment, retrying until a deadline.

    Parameters
    ----------
    send
        Hands a decision to the producer (see :data:`Send`).
    index
        What the decisions topic already holds; updated with every acknowledged decision.
    deadline
        Seconds from the start of :meth:`publish` after which it gives up.
    first_backoff, max_backoff
        Pause before the first retry, doubled after each failure up to ``max_backoff``.
    clock, sleep
        Monotonic clock and sleep (tests replace them).
    """

    def __init__(  # noqa: PLR0913 -- keyword-only timing, clock and sleep replaceable in tests
        self,
        send: Send,
        index: PublishedIndex,
        *,
        deadline: float,
        first_backoff: float = 0.1,
        max_backoff: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if deadline <= 0 or first_backoff <= 0 or max_backoff < first_backoff:
            raise ValueError("need deadline > 0 and 0 < first_backoff <= max_backoff")
        self._send = send
        self.index = index
        self.deadline = deadline
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self._clock = clock
        self._sleep = sleep

    async def publish(self, decisions: Iterable[Decision]) -> Outcome:
        """Publish the decisions the topic lacks; return once the broker has them all.

        Raises :class:`PublishTimeoutError` when that takes longer than the deadline.
        """
        outcome = Outcome()
        queues: dict[str, deque[Decision]] = {}
        for decision in decisions:
            if self.index.seen(decision.deployment, decision.seq):
                outcome.suppressed += 1
            else:
                queues.setdefault(decision.deployment, deque()).append(decision)
        give_up = self._clock() + self.deadline
        backoff = self.first_backoff
        while queues:
            round_ = asyncio.ensure_future(self._send_round(queues, outcome))
            try:
                done, _ = await asyncio.wait({round_}, timeout=max(give_up - self._clock(), 0))
            except asyncio.CancelledError:
                round_.cancel()
                raise
            if not done:
                round_.cancel()
                raise self._exceeded(queues, "the broker did not acknowledge them")
            try:
                round_.result()
                continue
            except Exception as exc:  # any producer failure: the decisions stay in the outbox
                outcome.failures += 1
                left = give_up - self._clock()
                if left <= 0:
                    raise self._exceeded(queues, repr(exc)) from exc
                log.warning(
                    "publishing %d decisions failed (%r); retrying in %.1f s",
                    sum(map(len, queues.values())), exc, min(backoff, left),
                )  # fmt: skip
                await self._sleep(min(backoff, left))
                backoff = min(backoff * 2, self.max_backoff)
            self._drop_seen(queues, outcome)
        return outcome

    def _drop_seen(self, queues: dict[str, deque[Decision]], outcome: Outcome) -> None:
        """Drop the waiting decisions the topic has meanwhile (counted as suppressed)."""
        for deployment in list(queues):
            queue = queues[deployment]
            while queue and self.index.seen(deployment, queue[0].seq):
                queue.popleft()
                outcome.suppressed += 1
            if not queue:
                del queues[deployment]

    async def _send_round(self, queues: dict[str, deque[Decision]], outcome: Outcome) -> None:
        """Send the first waiting decision of every deployment; pop those acknowledged.

        Raises the first failure once every send of the round has settled.
        """
        error: BaseException | None = None
        sent: list[tuple[str, Decision, Awaitable[Any]]] = []
        for deployment, queue in queues.items():
            try:
                sent.append((deployment, queue[0], await self._send(queue[0])))
            except Exception as exc:
                error = error or exc
        for deployment, decision, ack in sent:
            try:
                await ack
            except Exception as exc:
                error = error or exc
                continue
            self.index.add(deployment, decision.seq)
            outcome.published.append(decision)
            queue = queues[deployment]
            queue.popleft()
            if not queue:
                del queues[deployment]
        if error is not None:
            raise error

    def _exceeded(self, queues: dict[str, deque[Decision]], why: str) -> PublishTimeoutError:
        waiting = sorted((d.deployment, d.seq) for queue in queues.values() for d in queue)
        return PublishTimeoutError(
            f"{len(waiting)} decisions not published within {self.deadline:g} s ({why}); "
            f"first waiting: {', '.join(f'{d}#{s}' for d, s in waiting[:5])}"
        )
