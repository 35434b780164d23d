"""The order in which the recorder appends one partition's messages of its three input topics.

A consumer returns each topic's messages in order but the topics in no order of their own: a
recorder catching up on a backlog would append every actuation report of a rollout before
the decision it applied and the verdict that let the rollout start. The chain is meant to
tell what happened in the order it happened, so the messages of one partition are merged by
the time their producer gave them (the worker publishes a batch's verdicts, waits for the
broker, then its decisions; an actuator reports after it read the decision); ties go to the
verdict, then the decision, then the report. Each topic's own order is kept.

A message is held while another topic of its partition has nothing pending and may still
have older messages on the broker (the consumer's position is before the partition's end);
after ``hold_seconds`` of that it is appended all the same, so a stalled topic delays the
trail a little and never stops it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Generic, Protocol, TypeVar

__all__ = ["PartitionMerge", "Timed"]


class Timed(Protocol):
    """A consumed message: its offset and the producer's time (epoch milliseconds)."""

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> int: ...


M = TypeVar("M", bound=Timed)


class PartitionMerge(Generic[M]):
    """Pending messages of one partition of the input topics, released in causal order.

    ``rank``: each topic's place among ties (lower first).

    >>> from types import SimpleNamespace as Msg
    >>> merge = PartitionMerge({"verdicts": 0, "decisions": 1}, hold_seconds=1.0)
    >>> merge.add("decisions", [Msg(offset=0, timestamp=5)])
    0
    >>> merge.release(lambda topic: False, now=0.0)  # the verdicts may hold an older one
    []
    >>> merge.add("verdicts", [Msg(offset=0, timestamp=5)])
    0
    >>> [topic for topic, _ in merge.release(lambda topic: True, now=0.1)]
    ['verdicts', 'decisions']
    """

    def __init__(self, rank: Mapping[str, int], hold_seconds: float) -> None:
        self.rank = dict(rank)
        self.hold_seconds = hold_seconds
        self.queues: dict[str, deque[tuple[str, M]]] = {topic: deque() for topic in rank}
        self._held_since: float | None = None
        self._queued: dict[str, int] = {}  # per topic: the offset after the last queued

    def add(self, topic: str, messages: list[M], start: int = 0) -> int:
        """Queue ``messages`` of ``topic`` (in their offset order) from offset ``start`` on,
        leaving out those queued before (a consumer that seeks hands them out again); return
        how many were left out."""
        start = max(start, self._queued.get(topic, 0))
        fresh = [message for message in messages if message.offset >= start]
        if fresh:
            self._queued[topic] = fresh[-1].offset + 1
        self.queues[topic].extend((topic, message) for message in fresh)
        return len(messages) - len(fresh)

    def __len__(self) -> int:
        return sum(len(queue) for queue in self.queues.values())

    def release(self, caught_up: Callable[[str], bool], now: float) -> list[tuple[str, M]]:
        """The messages that may be appended now, oldest first, each with its topic.

        ``caught_up(topic)``: whether the consumer has read everything the broker has of that
        topic's partition; ``now``: a monotonic clock in seconds.
        """
        out: list[tuple[str, M]] = []
        while True:
            ready = [topic for topic, queue in self.queues.items() if queue]
            if not ready:
                self._held_since = None
                return out
            if any(not queue and not caught_up(t) for t, queue in self.queues.items()):
                if self._held_since is None:
                    self._held_since = now
                if now - self._held_since < self.hold_seconds:
                    return out
            else:
                self._held_since = None
            topic = min(ready, key=lambda t: (self.queues[t][0][1].timestamp, self.rank[t]))
            out.append(self.queues[topic].popleft())
