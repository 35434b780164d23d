"""The two ways a message reaches the engine, behind one small interface.

:class:`ProcessorDriver` is the streaming worker's core (:class:`BatchProcessor` fed
:class:`Inbound` messages, one batch each); :class:`ReplayDriver` is ``canarystream replay``
(:func:`replay_lines`, through its single-file chunked path or its multi-file merge). A driver
holds the state of one run, applies base messages one at a time, applies one fuzzed message
and reports how much of it was rejected, and can save, restore and fingerprint its state so
that the fuzzer need not replay the base stream before every input.

The fingerprint is a digest of the engine's state without its counters, as plain data: two
states with equal fingerprints take the same decisions on the same input (the engine is
deterministic, and a rollout's plain data is complete: restored from it, a rollout continues
with identical decisions). A finished rollout counts by its phase, sequence number and clock
only.
"""

from __future__ import annotations

import hashlib
import pickle
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from canarystream.contracts.decision import Decision
from canarystream.engine import Engine
from canarystream.engine.rollout import Rollout
from canarystream.replay import Rejection, replay_lines
from canarystream.streaming.processor import BatchProcessor, Inbound
from tests.fuzz.base import TELEMETRY_TOPIC, Message

__all__ = ["Applied", "Driver", "ProcessorDriver", "ReplayDriver", "count_elements"]

_STATEFUL = hasattr(Rollout, "to_state")
WALL_CLOCK = 1_790_000_000.0  # dead letters' wall-clock stamp: fixed, so runs are equal
INTERNAL = "internal_error"  # the reason under which a driver contains an exception


def _no_snapshot(service: str) -> bytes | None:
    return None


def _wall_clock() -> float:
    return WALL_CLOCK


def count_elements(payload: bytes) -> int:
    """How many events a message or line holds as the drivers decode it (1 if undecodable).

    >>> count_elements(b'[{"type": "request"}, 5]'), count_elements(b"{"), count_elements(b"[]")
    (2, 1, 0)
    """
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return 1 if payload.strip() else 0
    return len(value) if type(value) is list else 1


@dataclass
class Applied:
    """What applying one fuzzed message did."""

    decisions: list[Decision] = field(default_factory=list)
    elements: int = 0  # events in the message
    rejected: int = 0  # of them rejected (dead-lettered, skipped, ignored)
    dead_letters: int = 0  # records written (processor) or rejections reported (replay)
    reasons: list[str] = field(default_factory=list)

    @property
    def rejected_entirely(self) -> bool:
        """No element of the message was applied."""
        return self.rejected >= self.elements


class Driver(Protocol):
    """One driver's run over the base stream."""

    name: str
    errors: list[str]  # internal errors the driver contained (dead-lettered), since cleared

    def reset(self) -> None: ...

    def apply(self, message: Message) -> list[Decision]: ...

    def apply_suffix(self, messages: Sequence[Message]) -> list[Decision]: ...

    def apply_many(self, messages: Sequence[Message]) -> None: ...

    def apply_fuzzed(self, fuzzed: Any) -> Applied: ...

    def dump(self) -> bytes: ...

    def load(self, blob: bytes) -> None: ...

    def fingerprint(self) -> bytes: ...

    def scratch(self) -> Any: ...

    def restore_scratch(self, saved: Any) -> None: ...


def _plain(value: Any) -> Any:
    """orjson's fallback: plain data for the engine's objects (a rollout by its id)."""
    if isinstance(value, Rollout):
        return f"rollout {value.deployment}"
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, deque):
        return list(value)
    if hasattr(value, "to_state"):
        return value.to_state()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dict__"):
        return vars(value)
    raise TypeError(type(value).__name__)


_PLAIN = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


# Counts kept for reports, not for deciding (the audit would show it if they were).
_COUNTERS = (("admission", "rejected"),)


def _rollout_state(rollout: Rollout) -> Any:
    # A finished rollout can only matter again by coming back to life (a phase, a sequence
    # number); its statistics are dead weight in every digest.
    if not rollout.is_active:
        return ("finished", rollout.phase.value, rollout.seq, rollout.next_tick)
    state = rollout.to_state()
    for part, name in _COUNTERS:
        inner = state.get(part)
        if isinstance(inner, dict):
            state[part] = {key: value for key, value in inner.items() if key != name}
    return state


def _fingerprint(engine: Engine) -> bytes:
    """A digest of everything the engine holds but its counters, blind to object identity.

    Rollouts give their own plain data (``to_state``); pickle would also do, but it encodes
    which objects are shared, so equal states restored from different histories differ.
    """
    state = {k: v for k, v in vars(engine).items() if k not in ("counters", "policies")}
    blob = b""
    if _STATEFUL:
        state["rollouts"] = [(d, _rollout_state(r)) for d, r in engine.rollouts.items()]
        try:
            blob = orjson.dumps(state, default=_plain, option=_PLAIN)
        except TypeError:  # something without plain data (or a cycle)
            blob = b""
    if not blob:
        # Complete, but it encodes which objects are shared: states equal in value may
        # differ here, which costs time (the rest of the stream runs), never a verdict.
        try:
            blob = pickle.dumps(state, protocol=5)
        except RecursionError:  # an applied event nested deeper than pickle goes
            return b""  # equal to no digest: the rest of the stream runs
    return hashlib.blake2b(blob, digest_size=20).digest()


class ProcessorDriver:
    """The worker's batch processor, one message per batch, no snapshot store."""

    name = "processor"

    def __init__(self) -> None:
        self.processor = self._fresh()
        self.errors: list[str] = []

    @staticmethod
    def _fresh() -> BatchProcessor:
        return BatchProcessor(Engine(), _no_snapshot, _wall_clock, telemetry_topic=TELEMETRY_TOPIC)

    def reset(self) -> None:
        self.processor = self._fresh()

    def apply(self, message: Message) -> list[Decision]:
        inbound = Inbound(
            message.topic, message.partition, message.offset, message.key, message.value
        )
        return self._contained(self.processor.process([inbound])).decisions

    def _contained(self, result: Any) -> Any:
        if getattr(result, "invalid", {}).get(INTERNAL):
            found = [
                letter.detail
                for letter in result.dead_letters
                if letter.reason == INTERNAL
                or "internal error" in letter.detail
                or INTERNAL in letter.detail
            ]
            self.errors += found or [INTERNAL]
        return result

    def apply_suffix(self, messages: Sequence[Message]) -> list[Decision]:
        out: list[Decision] = []
        for message in messages:
            out += self.apply(message)
        return out

    def apply_many(self, messages: Sequence[Message]) -> None:
        for message in messages:
            self.apply(message)

    def apply_fuzzed(self, fuzzed: Any) -> Applied:
        inbound = Inbound(fuzzed.topic, fuzzed.partition, fuzzed.offset, fuzzed.key, fuzzed.payload)
        result = self._contained(self.processor.process([inbound]))
        invalid = getattr(result, "invalid", None)
        counted = sum(invalid.values()) if invalid else 0
        elements = count_elements(fuzzed.payload)
        rejected = max(counted, len(result.dead_letters))
        if result.skipped or result.ignored:
            rejected = elements
        return Applied(
            decisions=list(result.decisions),
            elements=elements,
            rejected=rejected,
            dead_letters=len(result.dead_letters),
            reasons=sorted({letter.reason for letter in result.dead_letters}),
        )

    def dump(self) -> bytes:
        return pickle.dumps(self.processor, protocol=5)

    def load(self, blob: bytes) -> None:
        self.processor = pickle.loads(blob)

    def fingerprint(self) -> bytes:
        return _fingerprint(self.processor.engine)

    # A rejected message still moves its service's offsets and may register an unknown
    # service: harmless, but the next input at the same position must find them as before.
    def scratch(self) -> Any:
        return {
            service: (dict(snapshot.offsets), snapshot.partition)
            for service, snapshot in self.processor.services.items()
        }

    def restore_scratch(self, saved: Any) -> None:
        services = self.processor.services
        for service in [s for s in services if s not in saved]:
            del services[service]
        for service, (offsets, partition) in saved.items():
            services[service].offsets = dict(offsets)
            services[service].partition = partition


class ReplayDriver:
    """``replay_lines`` over one engine: base lines one call each, a suffix in one call."""

    name = "replay"

    def __init__(self) -> None:
        self.engine = Engine()
        self.errors: list[str] = []

    def reset(self) -> None:
        self.engine = Engine()

    def _replay(self, sources: list[tuple[str, list[bytes]]]) -> tuple[list[Decision], Any]:
        decisions: list[Decision] = []
        rejections: list[Rejection] = []
        result = replay_lines(
            sources,
            engine=self.engine,
            on_decision=decisions.append,
            on_reject=rejections.append,
        )
        if result.rejected.get(INTERNAL):  # counted per event, whatever a report's reason
            found = [str(r) for r in rejections if "internal" in str(r)]
            self.errors += found or [INTERNAL]
        return decisions, result

    def apply(self, message: Message) -> list[Decision]:
        return self._replay([("base", [message.line])])[0]

    def apply_suffix(self, messages: Sequence[Message]) -> list[Decision]:
        if not messages:
            return []
        return self._replay([("base", [message.line for message in messages])])[0]

    def apply_many(self, messages: Sequence[Message]) -> None:
        self.apply_suffix(messages)  # one call: the same state as one call per line

    def apply_fuzzed(self, fuzzed: Any) -> Applied:
        lines = fuzzed.payload.split(b"\n")
        lines = [line + b"\n" for line in lines if line] or [b"\n"]
        # Two sources take the multi-file path (a merge by ts, then one event at a time).
        sources = [("base", []), ("fuzz", lines)] if fuzzed.merge else [("fuzz", lines)]
        decisions, result = self._replay(sources)  # every rejection is the fuzzed line's
        return Applied(
            decisions=decisions,
            elements=sum(count_elements(line) for line in lines),
            rejected=sum(result.rejected.values()),  # events, by reason
            dead_letters=getattr(result, "rejected_lines", sum(result.rejected.values())),
            reasons=sorted(result.rejected),
        )

    def dump(self) -> bytes:
        return pickle.dumps(self.engine, protocol=5)

    def load(self, blob: bytes) -> None:
        self.engine = pickle.loads(blob)

    def fingerprint(self) -> bytes:
        return _fingerprint(self.engine)

    def scratch(self) -> Any:
        return None

    def restore_scratch(self, saved: Any) -> None:
        return None
