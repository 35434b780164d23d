"""The worker's logic without Kafka: batches of raw messages in, decisions and state out.

The Faust agent hands each batch of consumed messages to :class:`BatchProcessor`, which
decodes them (orjson), feeds the engine, and returns what must leave the process: decisions,
dead letters, and one state snapshot per service the batch touched. Keeping this apart from
Faust makes the recovery rules testable without a broker:

- A service's snapshot holds its rollouts and, per source topic, the offset of the last
  message applied to them. A message at or below that offset is skipped, so messages the
  broker delivers again after a crash (at-least-once) are never applied twice.
- Services are loaded lazily from the snapshot store the first time a message names them,
  so a worker that takes over a partition continues from exactly where the last one stopped.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from canarystream.contracts.actuation import DeadLetter
from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.engine.rollout import Rollout
from canarystream.errors import ContractError

__all__ = ["BatchProcessor", "BatchResult", "Inbound", "ServiceSnapshot"]

_PICKLE_PROTOCOL = 5
KEEP_FINISHED = 3  # finished rollouts kept per service (duplicate announcements, late commands)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One consumed message: where it came from and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class ServiceSnapshot:
    """Everything the worker keeps about one service: what a restarted worker restores."""

    service: str
    partition: int
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> last applied offset
    rollouts: list[Rollout] = field(default_factory=list)

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=_PICKLE_PROTOCOL)

    @staticmethod
    def loads(blob: bytes) -> ServiceSnapshot:
        return pickle.loads(blob)  # our own changelog, written by dumps


@dataclass
class BatchResult:
    """What one batch produced."""

    decisions: list[Decision] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    snapshots: dict[str, ServiceSnapshot] = field(default_factory=dict)
    ignored: int = 0  # telemetry messages of services without an active rollout (not decoded)
    invalid: Counter[str] = field(default_factory=Counter)  # by reason
    skipped: int = 0  # messages already applied before a restart


class BatchProcessor:
    """Applies batches of consumed messages to one engine, service by service.

    Parameters
    ----------
    engine
        The engine holding the rollouts of the services this worker owns.
    load
        Returns the stored snapshot of a service (bytes) or None; called once per service.
    clock
        Wall clock for dead-letter records only (analysis never reads it).
    """

    def __init__(
        self,
        engine: Engine,
        load: Callable[[str], bytes | None],
        clock: Callable[[], float],
        *,
        telemetry_topic: str | None = None,
    ) -> None:
        self.engine = engine
        self.telemetry_topic = telemetry_topic
        self._load = load
        self._clock = clock
        self.services: dict[str, ServiceSnapshot] = {}  # loaded (or known-absent: no rollouts)

    def _service(self, service: str, partition: int) -> ServiceSnapshot:
        snapshot = self.services.get(service)
        if snapshot is None:
            blob = self._load(service)
            if blob is None:
                snapshot = ServiceSnapshot(service, partition)
            else:
                snapshot = ServiceSnapshot.loads(blob)
                self.engine.adopt(snapshot.rollouts)
            self.services[service] = snapshot
        return snapshot

    def revoke(self, partitions: set[int]) -> int:
        """Forget the services of partitions this worker no longer owns; return how many."""
        gone = [s for s, snap in self.services.items() if snap.partition in partitions]
        for service in gone:
            self.engine.forget(service)
            del self.services[service]
        return len(gone)

    def process(self, batch: list[Inbound]) -> BatchResult:
        """Apply a batch in order; see the module doc for the recovery rules."""
        result = BatchResult()
        engine = self.engine
        touched: dict[str, ServiceSnapshot] = {}
        telemetry_topic = self.telemetry_topic
        active = engine.active_by_service
        for message in batch:
            # Most telemetry belongs to services with no rollout: keyed messages of those are
            # not even decoded (so neither are they checked against the contract).
            if message.topic == telemetry_topic and message.key:
                try:
                    keyed = message.key.decode("utf-8")
                except UnicodeDecodeError:
                    keyed = None
                if keyed is not None and keyed not in active:
                    self._service(keyed, message.partition)  # a restored rollout may be active
                    if keyed not in active:
                        result.ignored += 1
                        continue
            try:
                values = orjson.loads(message.value)
            except orjson.JSONDecodeError as exc:
                self._reject(
                    result,
                    message,
                    ContractError(f"malformed JSON: {exc}", reason="malformed_json"),
                )
                continue
            if type(values) is not list:
                values = [values]
            service = _service_of(message, values)
            if service is None:
                for value in values:
                    self._reject(result, message, _no_service(value), value)
                continue
            snapshot = self._service(service, message.partition)
            if snapshot.offsets.get(message.topic, -1) >= message.offset:
                result.skipped += 1
                continue

            def on_error(index: int, exc: ContractError, message=message, values=values) -> None:
                self._reject(result, message, exc, values[index] if len(values) > 1 else None)

            decided = engine.process_batch(values, on_error)
            if decided:
                result.decisions.extend(decided)
            if engine.deployments_of.get(service):
                snapshot.offsets[message.topic] = message.offset
                snapshot.partition = message.partition
                touched[service] = snapshot
        for service, snapshot in touched.items():
            engine.forget(service, keep=KEEP_FINISHED + (service in engine.active_by_service))
            snapshot.rollouts = engine.rollouts_of(service)
            result.snapshots[service] = snapshot
        return result

    def _reject(
        self, result: BatchResult, message: Inbound, exc: ContractError, event: Any = None
    ) -> None:
        result.invalid[exc.reason] += 1
        raw = (
            message.value if event is None else orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS)
        )
        result.dead_letters.append(
            DeadLetter.for_message(
                raw,
                reason=exc.reason,
                detail=str(exc),
                source=f"{message.topic}/{message.partition}@{message.offset}",
                ts=self._clock(),
            )
        )


def _service_of(message: Inbound, values: list[Any]) -> str | None:
    """The service a message belongs to: its key, else the service field of its first event."""
    if message.key:
        try:
            return message.key.decode("utf-8")
        except UnicodeDecodeError:
            return None
    first = values[0] if values else None
    service = first.get("service") if type(first) is dict else None
    return service if type(service) is str and service else None


def _no_service(value: Any) -> ContractError:
    return ContractError(
        "message has no key and its event names no service; key telemetry and deployment "
        "messages by service",
        reason="no_service",
    )
