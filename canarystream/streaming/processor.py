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
- A snapshot is versioned JSON of plain data (:meth:`ServiceSnapshot.dumps`, format
  :data:`STATE_FORMAT` version :data:`STATE_VERSION`), never a pickle: the changelog is data,
  not code. An older version is upgraded through :data:`MIGRATIONS` or refused.
- A stored record that cannot be read (a pickle of the old format, a newer or unknown version,
  garbage) is reported, never executed and never replaced by empty state: the error is
  logged with the service's name, the service is listed in :attr:`BatchResult.unreadable`,
  and every message naming it is dead-lettered (``state_unreadable``, counted in
  ``invalid``) instead of being applied, so nothing is decided from empty state and its
  record stays as it is for a fixed worker. It is tried again when the partition moves or
  the worker restarts.

Bad input never stops a batch, and what it costs is bounded:

- A message belongs to the service of its key (unkeyed: of its first event). An event naming
  another service, or a command for another service's rollout, is rejected (``key_mismatch``)
  and the rest applied: a message changes only the state stored under its own service.
- Whatever goes wrong with one message — its JSON, the contract, the engine, loading its
  service's state — dead-letters that message (``internal_error`` for anything but a contract
  error, with the exception in the detail) and the next message is applied. The message still
  counts as applied by offset, so a poison message is never retried.
- One dead letter per message, never one per event: its reason is that of its rejected events
  (``mixed`` when they differ), its detail how many of the message's events were rejected and
  the first :data:`LISTED` by index, its original the message, capped
  (:class:`~canarystream.contracts.actuation.DeadLetter`). :attr:`BatchResult.invalid` counts
  rejected events by reason (a message that is not JSON, or fails outside the engine, counts
  once).

Who sent what (with an access file, ``engine.access``): each message on the deployments
topic, and any message carrying credentials, is authenticated here, where its exact bytes and
headers are known (:func:`~canarystream.governance.identity.authenticate_headers`); the engine
then authorizes each of its events against the rollout's state, as it does in replay. Every
announcement, command and traffic shift of a deployments-topic message gets an
:class:`~canarystream.contracts.verdict.InputVerdict` (accepted, or refused with the reason of
its dead letter) in :attr:`BatchResult.verdicts`, with or without an access file.
"""

from __future__ import annotations

import hashlib
import logging
import math
from bisect import insort
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from canarystream.analysis.sequential import MeanRestarts, RatioSequence
from canarystream.analysis.state import Reader
from canarystream.contracts.actuation import MAX_DETAIL_CHARS, DeadLetter, clip
from canarystream.contracts.codec import TELEMETRY_TYPES, decode_events, decode_telemetry
from canarystream.contracts.decision import Decision
from canarystream.contracts.topics import service_partition
from canarystream.contracts.verdict import InputVerdict
from canarystream.contracts.wire import WireRequest
from canarystream.engine import Engine
from canarystream.engine.rollout import Rollout
from canarystream.errors import CanarystreamError, ContractError, StateFormatError
from canarystream.governance.identity import Origin, authenticate_headers
from canarystream.policy.model import LowTrafficRule

__all__ = [
    "MIGRATIONS",
    "STATE_FORMAT",
    "STATE_VERSION",
    "BatchProcessor",
    "BatchResult",
    "Inbound",
    "ServiceSnapshot",
]

log = logging.getLogger(__name__)

STATE_FORMAT = "canarystream/service-state"
STATE_VERSION = 7
"""Version of what :meth:`ServiceSnapshot.dumps` writes. Any change to what a ``to_state``
writes or a ``from_state`` expects bumps it and adds a migration from the previous version to
:data:`MIGRATIONS` (tests/engine/test_state.py fails for an attribute that is not carried)."""


def _rollout_v1_to_v2(rollout: dict[str, Any]) -> dict[str, Any]:
    """A rollout's partition (from its service) and no message of a last witness yet."""
    upgraded = {**rollout, "partition": service_partition(str(rollout.get("service")))}
    admission = rollout.get("admission")
    if type(admission) is dict:
        upgraded["admission"] = {**admission, "far_message": None}
    return upgraded


def _v1_to_v2(state: dict[str, Any]) -> dict[str, Any]:
    """Version 2 adds the finished deployment ids of the service (none known in version 1)
    and each rollout's partition of the service topics (from its service's name)."""
    rollouts = state.get("rollouts")
    if type(rollouts) is list:
        rollouts = [_rollout_v1_to_v2(item) if type(item) is dict else item for item in rollouts]
    upgraded = {**state, "version": 2, "tombstones": {}}
    if rollouts is not None:
        upgraded["rollouts"] = rollouts
    return upgraded


def _v2_to_v3(state: dict[str, Any]) -> dict[str, Any]:
    """Version 3 adds who started each rollout and the signed commands it took: neither is
    known for a rollout started before, so any authorised principal may approve it (there is
    no starter to tell apart) and no command has been taken yet."""
    rollouts = state.get("rollouts")
    upgraded = {**state, "version": 3}
    if type(rollouts) is list:
        upgraded["rollouts"] = [
            {**item, "started_by": None, "controls": []} if type(item) is dict else item
            for item in rollouts
        ]
    return upgraded


def _rollout_v3_to_v4(rollout: dict[str, Any]) -> dict[str, Any]:
    routing = dict.fromkeys(("share", "at", "awaited", "awaited_since", "paged"))
    last = rollout.get("last_decision")
    routing["decided"] = last.get("decision_id") if type(last) is dict else None
    return {**rollout, "routing": routing}


def _v3_to_v4(state: dict[str, Any]) -> dict[str, Any]:
    """Version 4 adds each rollout's observed routing (traffic_shifted): none was observed
    before, so the share decided is taken as routed, as it was, and no decision is awaited;
    the decision that set the share is taken to be the latest one."""
    rollouts = state.get("rollouts")
    upgraded = {**state, "version": 4}
    if type(rollouts) is list:
        upgraded["rollouts"] = [
            _rollout_v3_to_v4(item) if type(item) is dict else item for item in rollouts
        ]
    return upgraded


_RATIO_TESTS = {"error_rate": "tolerance", "probe": "tolerance"}  # detector's anchor field
_UNIT_RATIO_TESTS = {"latency", "slo_error_rate", "slo_latency"}  # detector against ratio 1
_RESTARTS = {"latency_shift": (6, 60), "gauge": (3, 20)}  # (every, horizon) of their restarts


def _sequences_v4_to_v5(node: Any) -> Any:
    """Every rate-ratio sequence under ``node`` with no detector (guards, no-harm bounds)."""
    if type(node) is list:
        return [_sequences_v4_to_v5(item) for item in node]
    if type(node) is not dict:
        return node
    if "loglik" in node and "mh_num" in node and "detect" not in node:
        return RatioSequence.upgrade_state(node, None)
    return {key: _sequences_v4_to_v5(value) for key, value in node.items()}


def _unit_v4_to_v5(unit: dict[str, Any]) -> dict[str, Any]:
    """One check unit: its rollback test gains a detector, its difference stream restarts."""
    kind, test, diffs = unit.get("kind"), unit.get("test"), unit.get("diffs")
    upgraded = dict(unit)
    if type(test) is dict and (kind in _RATIO_TESTS or kind in _UNIT_RATIO_TESTS):
        anchor = unit.get(_RATIO_TESTS[kind]) if kind in _RATIO_TESTS else 1.0
        upgraded["test"] = RatioSequence.upgrade_state(test, anchor)
    if kind in _RESTARTS and type(diffs) is dict:
        count, target = diffs.get("count"), diffs.get("target")
        if type(count) is int and type(target) is int:
            upgraded["restarts"] = MeanRestarts.upgrade_state(count, target, *_RESTARTS[kind])
    return upgraded


def _group_v4_to_v5(group: Any) -> Any:
    units = group.get("units") if type(group) is dict else None
    if type(units) is not list:
        return group
    return {
        **group,
        "units": [
            {**item, "unit": _unit_v4_to_v5(item["unit"])}
            if type(item) is dict and type(item.get("unit")) is dict
            else item
            for item in units
        ],
    }


def _rollout_v4_to_v5(rollout: Any) -> Any:
    groups = rollout.get("groups") if type(rollout) is dict else None
    if type(groups) is not list:
        return rollout
    return _sequences_v4_to_v5({**rollout, "groups": [_group_v4_to_v5(g) for g in groups]})


def _v4_to_v5(state: dict[str, Any]) -> dict[str, Any]:
    """Version 5 adds change detectors to the tests that decide rollbacks: an e-detector in
    each rate-ratio rollback test, restarted confidence sequences beside each stream of
    differences. A rollout stored before goes on with the evidence it has: its detector is
    its cumulative e-process with no later onset (the restarts never start), so it is judged
    to the end as it was, with the same guarantee; other sequences get no detector."""
    rollouts = state.get("rollouts")
    upgraded = {**state, "version": 5}
    if type(rollouts) is list:
        upgraded["rollouts"] = [_rollout_v4_to_v5(item) for item in rollouts]
    return upgraded


_LOW_TRAFFIC_OFF = LowTrafficRule(enabled=False).model_dump(mode="json")


def _rollout_v5_to_v6(rollout: Any) -> Any:
    policy = rollout.get("policy") if type(rollout) is dict else None
    if type(policy) is not dict or "low_traffic" in policy:
        return rollout
    return {**rollout, "policy": {**policy, "low_traffic": _LOW_TRAFFIC_OFF}}


def _v5_to_v6(state: dict[str, Any]) -> dict[str, Any]:
    """Version 6 adds the policy's low-traffic rule (and the reasons' ``risk``, null before):
    a rollout stored before goes on under the policy it started with, so with the rule off,
    deciding as it would have."""
    rollouts = state.get("rollouts")
    upgraded = {**state, "version": 6}
    if type(rollouts) is list:
        upgraded["rollouts"] = [_rollout_v5_to_v6(item) for item in rollouts]
    return upgraded


def _rollout_v6_to_v7(rollout: Any) -> Any:
    admission = rollout.get("admission") if type(rollout) is dict else None
    if type(admission) is not dict:
        return rollout
    return {**rollout, "admission": {**admission, "witness_message": None}}


def _v6_to_v7(state: dict[str, Any]) -> dict[str, Any]:
    """Version 7 adds the message of each rollout's last witness (no message completes a run
    of witnesses alone): none is known for a witness stored before, so the next event ahead
    counts as from a new message."""
    rollouts = state.get("rollouts")
    upgraded = {**state, "version": 7}
    if type(rollouts) is list:
        upgraded["rollouts"] = [_rollout_v6_to_v7(item) for item in rollouts]
    return upgraded


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
    4: _v4_to_v5,
    5: _v5_to_v6,
    6: _v6_to_v7,
}
"""Upgrades of stored state: ``MIGRATIONS[n]`` turns a decoded version-``n`` snapshot (the
whole envelope, plain data) into version ``n + 1``, and :meth:`ServiceSnapshot.loads` chains
them up to :data:`STATE_VERSION`. A version without a path to the current one is refused,
never guessed. Keep each released version's fixture in
tests/streaming/fixtures/ so that its path stays tested."""

KEEP_FINISHED = 3  # finished rollouts kept per service (duplicate announcements, late commands)
LISTED = 5  # rejected events of one message described in its dead letter


@dataclass(frozen=True, slots=True)
class Inbound:
    """One consumed message: where it came from and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a record without a value (a tombstone), dead-lettered
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass
class ServiceSnapshot:
    """Everything the worker keeps about one service: what a restarted worker restores."""

    service: str
    partition: int
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> last applied offset
    rollouts: list[Rollout] = field(default_factory=list)
    tombstones: dict[str, float] = field(default_factory=dict)  # finished id -> ended at
    unreadable: str | None = None  # why the stored record cannot be read (never stored)

    def dumps(self) -> bytes:
        """The snapshot as JSON: format, version, then plain data (``to_state``)."""
        if self.unreadable is not None:
            raise StateFormatError(f"refusing to overwrite the unreadable state of {self.service}")
        return orjson.dumps(
            {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "service": self.service,
                "partition": self.partition,
                "offsets": self.offsets,
                "rollouts": [rollout.to_state() for rollout in self.rollouts],
                "tombstones": self.tombstones,
            }
        )

    @staticmethod
    def loads(blob: bytes) -> ServiceSnapshot:
        """The snapshot :meth:`dumps` wrote, upgraded through :data:`MIGRATIONS` if older.

        Anything else raises :class:`StateFormatError` naming the problem; nothing in the
        blob is ever executed.
        """
        if blob[:1] == b"\x80":  # the PROTO opcode that starts every pickle since protocol 2
            raise StateFormatError(
                "service state is a pickle (the format before version 1), which is never "
                "loaded; no migration reads it"
            )
        try:
            decoded = orjson.loads(blob)
        except orjson.JSONDecodeError as exc:
            raise StateFormatError(f"service state is not JSON: {exc}") from None
        r = Reader(_upgraded(decoded), "state")
        try:
            service = r.text("service")
            offsets = r.child("offsets")
            tombstones = r.child("tombstones")
            snapshot = ServiceSnapshot(
                service,
                r.integer("partition"),
                {topic: offsets.integer(topic) for topic in offsets.fields()},
                [Rollout.from_state(item) for item in r.children("rollouts")],
                {deployment: tombstones.real(deployment) for deployment in tombstones.fields()},
            )
        except StateFormatError:
            raise
        except (CanarystreamError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
            # What the readers do not check themselves (a constructor's own validation).
            raise StateFormatError(f"service state cannot be restored: {exc!r}") from exc
        for index, rollout in enumerate(snapshot.rollouts):
            if rollout.service != service:
                raise StateFormatError(
                    f"state.rollouts.{index}: rollout of service {rollout.service!r} in the "
                    f"state of {service!r}"
                )
        return snapshot


def _upgraded(state: Any) -> Any:
    """A decoded snapshot of any known version, brought to :data:`STATE_VERSION`."""
    if type(state) is not dict or state.get("format") != STATE_FORMAT:
        raise StateFormatError(f"not a canarystream service state (no format {STATE_FORMAT!r})")
    version = state.get("version")
    if type(version) is not int:
        raise StateFormatError(f"service state has no integer version: {version!r}")
    if version > STATE_VERSION:
        raise StateFormatError(
            f"service state version {version} is newer than this worker reads "
            f"({STATE_VERSION}); run a newer canarystream"
        )
    while version < STATE_VERSION:
        migrate = MIGRATIONS.get(version)
        if migrate is None:
            raise StateFormatError(
                f"service state version {version} is older than {STATE_VERSION} and no "
                "migration reads it"
            )
        state, version = migrate(state), version + 1
    return state


@dataclass
class BatchResult:
    """What one batch produced."""

    decisions: list[Decision] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    snapshots: dict[str, ServiceSnapshot] = field(default_factory=dict)
    ignored: int = 0  # telemetry messages of services without an active rollout (not decoded)
    invalid: Counter[str] = field(default_factory=Counter)  # rejected events, by reason
    skipped: Counter[str] = field(default_factory=Counter)  # already applied, by topic
    unreadable: set[str] = field(default_factory=set)  # services whose stored state is refused
    verdicts: list[InputVerdict] = field(default_factory=list)  # announcements and commands


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
        # Services with stored or new state; one without (no rollout) is never cached, so a
        # flood of messages naming made-up services costs no memory.
        self.services: dict[str, ServiceSnapshot] = {}

    def _service(self, service: str, partition: int) -> ServiceSnapshot:
        snapshot = self.services.get(service)
        if snapshot is None:
            blob = self._load(service)
            if blob is None:
                return ServiceSnapshot(service, partition)  # cached once it has a rollout
            else:
                try:
                    snapshot = ServiceSnapshot.loads(blob)
                    if snapshot.service != service:
                        raise StateFormatError(f"the record holds service {snapshot.service!r}")
                except StateFormatError as exc:
                    # Never executed, never replaced: see the module doc.
                    log.error(
                        "stored state of service %r cannot be read; its messages are "
                        "dead-lettered (state_unreadable) until it can: %s",
                        service,
                        exc,
                    )
                    snapshot = ServiceSnapshot(service, partition, unreadable=str(exc))
                else:
                    self.engine.adopt(snapshot.rollouts)
                    self.engine.remember(service, snapshot.tombstones)
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
        """Apply a batch in order; see the module doc for the recovery and bad-input rules.

        Never raises on input: whatever goes wrong with one message dead-letters that message
        (``internal_error`` for anything but a contract error) and the next one is applied.
        """
        result = BatchResult()
        touched: dict[str, ServiceSnapshot] = {}
        traced = False  # one traceback per batch in the log is enough to find a bug
        for message in batch:
            problems = _Problems()
            try:
                self._apply(message, result, touched, problems)
            except Exception as exc:  # one message never stops the batch: see the module doc
                problems.fail(exc)
                log.error(
                    "internal error on message %s/%s@%s, dead-lettered: %s",
                    message.topic,
                    message.partition,
                    message.offset,
                    problems.failure,
                    exc_info=not traced,
                )
                traced = True
            if problems.count:
                self._dead_letter(result, message, problems)
        engine = self.engine
        for service, snapshot in touched.items():
            engine.forget(service, keep=KEEP_FINISHED + (service in engine.active_by_service))
            snapshot.rollouts = engine.rollouts_of(service)
            snapshot.tombstones = dict(engine.tombstones.get(service, {}))
            result.snapshots[service] = snapshot
        return result

    def _apply(
        self,
        message: Inbound,
        result: BatchResult,
        touched: dict[str, ServiceSnapshot],
        problems: _Problems,
    ) -> None:
        """Apply one message; what it breaks goes to ``problems``."""
        if self._ignored(message):
            result.ignored += 1
            return
        if message.value is None:
            problems.whole(_no_value())
            return
        try:
            decode = decode_telemetry if message.topic == self.telemetry_topic else decode_events
            values, batched = decode(message.value)
        except ContractError as exc:
            problems.whole(exc)
            return
        if batched:
            problems.events = len(values)
            problems.batched = True
        service = _service_of(message, values)
        if service is None:
            if values:
                problems.whole(_no_service(), len(values))
            return
        snapshot = self._service(service, message.partition)
        if snapshot.unreadable is not None:
            result.unreadable.add(service)
            problems.whole(_unreadable(service, snapshot.unreadable), len(values))
            return
        if snapshot.offsets.get(message.topic, -1) >= message.offset:
            result.skipped[message.topic] += 1
            return
        try:
            self._process(message, service, values, result, problems)
        finally:
            self._applied(message, service, snapshot, touched)

    def _process(
        self,
        message: Inbound,
        service: str,
        values: list[Any],
        result: BatchResult,
        problems: _Problems,
    ) -> None:
        """Run the events of ``message`` that belong to ``service`` through the engine."""
        engine = self.engine
        origin = self._origin(message)
        if message.topic != self.telemetry_topic:
            problems.refused = {}  # verdicts for the announcements and commands
        events, indices = _own_events(values, service, bool(message.key), engine, problems)
        on_error = problems.event
        if indices is not None:

            def on_error(index: int, exc: ContractError) -> None:
                problems.event(indices[index], exc)

        source = f"{message.topic}/{message.partition}@{message.offset}"
        decided = engine.process_batch(events, on_error, source, origin) if events else None
        if decided:
            result.decisions.extend(decided)
        if problems.refused is not None:
            result.verdicts.extend(_verdicts(message, service, values, origin, problems))

    def _applied(
        self,
        message: Inbound,
        service: str,
        snapshot: ServiceSnapshot,
        touched: dict[str, ServiceSnapshot],
    ) -> None:
        """Record ``message`` as applied to a service the engine knows.

        Applied once whatever happened to it: a poison message is never retried.
        """
        engine = self.engine
        if engine.deployments_of.get(service) or engine.tombstones.get(service):
            snapshot.offsets[message.topic] = message.offset
            snapshot.partition = message.partition
            touched[service] = snapshot
            self.services[service] = snapshot

    def _ignored(self, message: Inbound) -> bool:
        """Whether ``message`` is keyed telemetry of a service with no rollout.

        Most telemetry belongs to such services: their keyed messages are not even decoded
        (so neither are they checked against the contract).
        """
        if message.topic != self.telemetry_topic or not message.key:
            return False
        try:
            keyed = message.key.decode("utf-8")
        except UnicodeDecodeError:
            return False
        active = self.engine.active_by_service
        if keyed in active:
            return False
        if keyed not in self.services and self._load(keyed) is None:
            return True  # no rollout and no stored state: nothing to load
        # A restored rollout may be active; an unreadable state is dead-lettered below.
        known = self._service(keyed, message.partition)
        return keyed not in active and known.unreadable is None

    def _origin(self, message: Inbound) -> Origin | None:
        """Who sent ``message``, with an access file: every deployments-topic message and any
        message with credentials (telemetry is not signed; its commands are refused)."""
        access = self.engine.access
        if access is None:
            return None
        if message.topic == self.telemetry_topic and not message.headers:
            return None
        return authenticate_headers(access, message.headers, message.value or b"")

    def _dead_letter(self, result: BatchResult, message: Inbound, problems: _Problems) -> None:
        """The one dead letter of a message with ``problems``; count them."""
        reason, detail = problems.verdict()
        result.invalid.update(problems.reasons)
        result.dead_letters.append(
            DeadLetter.for_message(
                b"" if message.value is None else message.value,
                reason=reason,
                detail=detail,
                source=f"{message.topic}/{message.partition}@{message.offset}",
                ts=self._clock(),
            )
        )


class _Problems:
    """What went wrong with one message: every problem counted, the first few described.

    Bounded whatever the message holds: a count per reason and at most :data:`LISTED` details.
    """

    __slots__ = ("batched", "count", "events", "failure", "listed", "reasons", "refused", "single")

    def __init__(self) -> None:
        self.events = 1  # events in the message (a JSON array's length)
        self.batched = False  # the message is a JSON array
        self.count = 0  # events rejected, or 1 for the message as a whole
        self.reasons: Counter[str] = Counter()  # what the metrics count: see BatchResult
        self.listed: list[tuple[int, str, str]] = []  # the first rejected events, by index
        self.single: ContractError | None = None  # a problem of the message as a whole
        self.failure: str | None = None  # an internal error outside the engine's isolation
        self.refused: dict[int, str] | None = None  # reason per rejected event (for verdicts)

    def whole(self, exc: ContractError, events: int = 1) -> None:
        """The message as a whole is rejected; ``events`` of its events are set aside."""
        self.single = exc
        self.count += 1
        self.reasons[exc.reason] += max(events, 1)

    def event(self, index: int, exc: ContractError) -> None:
        """Event ``index`` of the message is rejected."""
        self.count += 1
        self.reasons[exc.reason] += 1
        if self.refused is not None:
            self.refused[index] = exc.reason
        listed = self.listed
        if len(listed) < LISTED or index < listed[-1][0]:
            insort(listed, (index, exc.reason, clip(str(exc), MAX_DETAIL_CHARS)))
            del listed[LISTED:]

    def fail(self, exc: Exception) -> None:
        """Something other than a contract error went wrong with the message."""
        self.failure = clip(f"{type(exc).__name__}: {exc}", MAX_DETAIL_CHARS)
        self.count += 1
        self.reasons["internal_error"] += 1

    def verdict(self) -> tuple[str, str]:
        """The dead letter's reason and detail."""
        rejected = self.count - (self.failure is not None) - (self.single is not None)
        if self.batched and rejected:
            counts = ", ".join(f"{r} {n}" for r, n in sorted(self.reasons.items()))
            named = "; ".join(f"[{i}] {r}: {clip(d, 150)}" for i, r, d in self.listed)
            more = f"; {rejected - len(self.listed)} more" if rejected > len(self.listed) else ""
            listing = f"{rejected} of {self.events} events rejected ({counts}): {named}{more}"
        elif rejected:
            listing = self.listed[0][2]
        else:
            listing = ""
        if self.failure is not None:
            detail = f"internal error: {self.failure}"
            return "internal_error", f"{detail}; before it, {listing}" if listing else detail
        if self.single is not None:
            return self.single.reason, str(self.single)
        reasons = list(self.reasons)
        return (reasons[0] if len(reasons) == 1 else "mixed"), listing


VERDICT_TYPES = frozenset(
    {
        "deployment_started",
        "deployment_aborted",
        "deployment_paused",
        "deployment_resumed",
        "deployment_approved",
        "traffic_shifted",
    }
)


def _verdicts(
    message: Inbound, service: str, values: list[Any], origin: Origin | None, problems: _Problems
) -> list[InputVerdict]:
    """The verdict on each announcement, command and traffic shift of a message (see the
    module doc)."""
    refused = problems.refused or {}
    source = f"{message.topic}/{message.partition}@{message.offset}"
    digest = origin.sha256 if origin is not None else None
    out = []
    for index, event in enumerate(values):
        kind = event.get("type") if type(event) is dict else None
        if type(kind) is not str or kind not in VERDICT_TYPES:
            continue
        if digest is None:
            digest = hashlib.sha256(message.value or b"").hexdigest()
        ts, deployment = event.get("ts"), event.get("deployment")
        reason = refused.get(index)
        out.append(
            InputVerdict(
                id=f"{source}#{index}" if problems.batched else source,
                ts=float(ts) if type(ts) in (int, float) and math.isfinite(ts) else 0.0,
                event_type=kind,
                deployment=clip(deployment, 256) if type(deployment) is str else None,
                service=clip(service, 256),
                principal=origin.principal if origin is not None else None,
                verdict="accepted" if reason is None else "refused",
                reason=reason,
                sha256=digest,
            )
        )
    return out


_OBJECTS = (dict, WireRequest)


def _service_of(message: Inbound, values: list[Any]) -> str | None:
    """The service a message belongs to: its key, else the service field of its first event."""
    if message.key:
        try:
            return message.key.decode("utf-8")
        except UnicodeDecodeError:
            return None
    first: Any = values[0] if values else None
    service = first.get("service") if type(first) in _OBJECTS else None
    return service if type(service) is str and service else None


def _own_events(
    values: list[Any], service: str, keyed: bool, engine: Engine, problems: _Problems
) -> tuple[list[Any], list[int] | None]:
    """The events of ``values`` that belong to ``service``; the others are ``key_mismatch``.

    An event belongs to another service when its ``service`` field names one, or when it is
    not telemetry and its ``deployment`` is a rollout of another service. Returns the events
    to apply and their indices in ``values`` (None: all of them, the usual case).
    """
    rollouts = engine.rollouts
    kept: list[int] | None = None
    for index, event in enumerate(values):
        if type(event) not in _OBJECTS:
            continue
        named = event.get("service")
        if type(named) is str and named != service:
            other: str | None = named
        else:
            other = None
            kind = event.get("type")
            if type(kind) is str and kind not in TELEMETRY_TYPES:
                deployment = event.get("deployment")
                rollout = rollouts.get(deployment) if type(deployment) is str else None
                if rollout is not None and rollout.service != service:
                    other = rollout.service
        if other is not None:
            if kept is None:
                kept = list(range(index))
            problems.event(index, _key_mismatch(other, service, keyed))
        elif kept is not None:
            kept.append(index)
    if kept is None:
        return values, None
    return [values[i] for i in kept], kept


def _key_mismatch(other: str, service: str, keyed: bool) -> ContractError:
    whose = "its key" if keyed else "its first event (the message has no key)"
    return ContractError(
        f"event of service {clip(other, 100)!r} in a message of service "
        f"{clip(service, 100)!r} ({whose}); a message holds events of one service",
        reason="key_mismatch",
    )


def _no_value() -> ContractError:
    return ContractError(
        "message has no value (a null record, such as a tombstone): no events to read",
        reason="malformed_json",
    )


def _no_service() -> ContractError:
    return ContractError(
        "message has no key and its event names no service; key telemetry and deployment "
        "messages by service",
        reason="no_service",
    )


def _unreadable(service: str, why: str) -> ContractError:
    return ContractError(
        f"the stored state of service {service!r} cannot be read, so its messages are set "
        f"aside: {why}",
        reason="state_unreadable",
    )
