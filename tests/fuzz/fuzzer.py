"""The differential oracle: one fuzzed message inserted into the base stream, per driver.

For each driver the base stream is run once (:class:`Baseline`): its decisions, how many of
them the first ``p`` messages emit, a digest of the state after every position and a saved
state every few positions. An input inserted at position ``p`` then costs little: the
driver's state is brought to ``p`` (walking on from where it is, or from the nearest saved
state), the message is applied, and if the state's digest equals the base one the decisions
cannot change (the engine is deterministic), so the rest of the stream is not run; a few per
cent of those inputs (``audit``) run it anyway, so the digest itself is checked by decisions.
Otherwise the rest is run and the decisions are compared by (deployment, seq, action, ts,
stage, traffic %, phase): to the end of the stream for a message that must change nothing,
over the next :data:`FOLLOW` messages for one that may (long enough for a crash, a hang or a
dragged clock to show).

Verdicts, per input and driver:

- **crash**: an exception escaped ``BatchProcessor.process`` or ``replay_lines``, or one was
  contained by them (an ``internal_error`` dead letter or rejection, of the message itself
  or of a base message after it);
- **hang**: the message and the rest of the stream took more than the time limit;
- **silent change**: the decisions differ although the message was rejected entirely (no
  element applied), or although it is one that must be rejected (invalid, out of range, a
  duplicate announcement, a redelivered offset, another service's key); or a decision is
  stamped beyond every base event's time by more than the skew bound (a dragged clock);
- otherwise fine: a valid message that was applied may change decisions (counted apart).
"""

from __future__ import annotations

import re
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from canarystream.contracts.decision import Decision
from tests.fuzz.base import MAX_SKEW, TICK, BaseStream, build_stream, decision_key
from tests.fuzz.drivers import Driver, ProcessorDriver, ReplayDriver
from tests.fuzz.mutators import ANY, REJECT, VALID, Fuzzed, generate

__all__ = [
    "Baseline",
    "Fuzzer",
    "Hang",
    "Outcome",
    "Tally",
    "time_limit",
]

CHECKPOINT_EVERY = 8  # positions between saved states (walking a few messages is cheaper)
FOLLOW = 60  # messages (about 20 s of event time) run after one that may change decisions
CRASH, HANG, CHANGE = "crash", "hang", "silent change"
UNCONFIRMED = "not reproduced"  # a failure that a fresh state did not show again


class Hang(BaseException):
    """Raised by the time limit's alarm (a BaseException: ``except Exception`` cannot eat it)."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


def _where(frame: FrameType | None) -> str:
    """The innermost frame of the project's own code, as ``module.py:line in function``."""
    fallback = ""
    while frame is not None:
        name = frame.f_code.co_filename
        label = f"{name.rsplit('/', 1)[-1]}:{frame.f_lineno} in {frame.f_code.co_name}"
        if "/canarystream/" in name:
            return label
        fallback = fallback or label
        frame = frame.f_back
    return fallback or "?"


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread if the block uses more than ``seconds`` of CPU.

    Processor time, not the wall clock: a machine busy with other work stretches the wall
    clock but not the work an input costs, so a hang means the same on every machine. (The
    engine does no I/O: an input that loops, loops on the processor.) A profiling timer already
    set is put back afterwards, less the time spent; the wall-clock alarm (pytest-timeout's)
    is left alone.
    """

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(_where(frame))

    previous = signal.signal(signal.SIGPROF, alarm)
    outer, interval = signal.setitimer(signal.ITIMER_PROF, seconds)
    started = time.process_time()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
        if outer:
            left = outer - (time.process_time() - started)
            signal.setitimer(signal.ITIMER_PROF, max(left, 0.001), interval)


@dataclass
class Baseline:
    """One driver's run of the base stream, with what the fuzzer needs to start mid-way."""

    decisions: list[Decision]
    keys: list[tuple[Any, ...]]
    before: list[int]  # decisions emitted by the first p messages, p = 0..n
    fingerprints: list[bytes]  # state digest after the first p messages
    saved: dict[int, bytes]  # state after the first p messages, every CHECKPOINT_EVERY

    @classmethod
    def of(cls, driver: Driver, base: BaseStream) -> Baseline:
        driver.reset()
        decisions: list[Decision] = []
        before, fingerprints, saved = [], [], {}
        for position in range(len(base.messages) + 1):
            if position:
                decisions += driver.apply(base.messages[position - 1])
            before.append(len(decisions))
            fingerprints.append(driver.fingerprint())
            if position % CHECKPOINT_EVERY == 0:
                saved[position] = driver.dump()
        return cls(decisions, [decision_key(d) for d in decisions], before, fingerprints, saved)


@dataclass
class Outcome:
    """What one input did through one driver."""

    driver: str
    status: str = "ok"  # ok | crash | hang
    rejected_entirely: bool = False
    moved: bool = False  # the state differs from the base state after the message
    changed: bool = False
    dead_letters: int = 0
    reasons: list[str] = field(default_factory=list)
    failure: str | None = None  # crash | hang | silent change
    signature: str = ""
    detail: str = ""


def _first_difference(got: Sequence[tuple], want: Sequence[tuple]) -> str:
    for index, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"decision {index}: got {a}, base {b}"
    if len(got) > len(want):
        return f"{len(got) - len(want)} more decision(s), first {got[len(want)]}"
    return f"{len(want) - len(got)} decision(s) missing, first {want[len(got)]}"


def _crash_site(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/canarystream/" in f.filename] or frames
    if not ours:
        return "?"
    last = ours[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"


def _exception_name(message: str) -> str:
    """The exception type named in a contained error's message ("... TypeError: x" -> it)."""
    found = re.findall(r"\b([A-Z][A-Za-z]*(?:Error|Exception|Interrupt|Exit))\b", message)
    return found[0] if found else "exception"


class Cursor:
    """A driver's state, positioned in the base stream; runs one input at a time."""

    def __init__(self, driver: Driver, baseline: Baseline, base: BaseStream) -> None:
        self.driver = driver
        self.baseline = baseline
        self.base = base
        self.position: int | None = None  # None: the state is not the base state anywhere
        self.fresh = True  # the last seek restored a saved state (as a reproduction does)
        self.horizon = base.end_ts + MAX_SKEW + TICK  # no decision may be later than this
        self.deployments = {event["deployment"] for event in base.deployments()}

    def seek(self, position: int) -> None:
        self.fresh = self.position is None or self.position > position
        if self.fresh:
            start = position - position % CHECKPOINT_EVERY
            self.driver.load(self.baseline.saved[start])
            self.position = start
        self.driver.apply_many(self.base.messages[self.position : position])
        self.position = position

    def run(self, fuzzed: Fuzzed, limit: float, audit: bool = False) -> Outcome:
        position = fuzzed.position
        self.seek(position)
        driver, baseline = self.driver, self.baseline
        outcome = Outcome(driver.name)
        scratch = driver.scratch()
        suffix: list[Decision] = []
        driver.errors.clear()
        try:
            with time_limit(limit):
                applied = driver.apply_fuzzed(fuzzed)
                moved = bool(applied.decisions) or (
                    driver.fingerprint() != baseline.fingerprints[position]
                )
                end = len(self.base.messages)
                if moved or audit:
                    # A message that may change decisions is followed long enough for a
                    # crash, a hang or a dragged clock to show; one that must change nothing
                    # (rejected, or one to reject) to the end of the stream.
                    allowed = fuzzed.expect[driver.name] != REJECT and not applied.rejected_entirely
                    if allowed and not audit:
                        end = min(end, position + FOLLOW)
                    suffix = driver.apply_suffix(self.base.messages[position:end])
        except Hang as exc:
            self.position = None
            outcome.status = outcome.failure = HANG
            outcome.signature = f"{driver.name}: hang, by {fuzzed.mutator}"
            outcome.detail = f"over {limit:g} CPU s; interrupted in {exc.where}"
            return outcome
        except Exception as exc:  # anything escaping the driver is what the fuzzer looks for
            self.position = None
            outcome.status = outcome.failure = CRASH
            outcome.signature = f"{driver.name}: {type(exc).__name__} at {_crash_site(exc)}"
            outcome.detail = "".join(traceback.format_exception(exc, limit=-8))[-3000:]
            return outcome
        if driver.errors:
            # The driver contained an exception (an internal_error dead letter): a crash all
            # the same, caught one level up.
            self.position = None
            outcome.status = outcome.failure = CRASH
            kind = _exception_name(driver.errors[0])
            outcome.signature = f"{driver.name}: internal error ({kind}), by {fuzzed.mutator}"
            outcome.detail = driver.errors[0][-3000:]
            return outcome
        outcome.rejected_entirely = applied.rejected_entirely
        outcome.dead_letters = applied.dead_letters
        outcome.reasons = applied.reasons
        outcome.moved = moved
        if not (moved or audit):
            driver.restore_scratch(scratch)
            return outcome
        self.position = None
        new = applied.decisions + suffix
        got = baseline.keys[: baseline.before[position]] + [decision_key(d) for d in new]
        want = baseline.keys[: baseline.before[end]]
        outcome.changed = got != want
        expect = fuzzed.expect[driver.name]
        # A new deployment keeps its own time; the base rollouts must not be carried beyond
        # the input's time.
        late = [d for d in new if d.ts > self.horizon and d.deployment in self.deployments]
        if late:
            first = late[0]
            outcome.failure = CHANGE
            outcome.signature = (
                f"{driver.name}: decision stamped ahead of the input, by {fuzzed.mutator}"
            )
            outcome.detail = (
                f"{first.deployment} {first.action.value} at {first.ts:.0f}, "
                f"{first.ts - self.base.end_ts:,.0f} s after the last base event"
            )
        elif outcome.changed and (outcome.rejected_entirely or expect == REJECT):
            outcome.failure = CHANGE
            why = (
                f"rejected ({', '.join(applied.reasons) or 'nothing applied'}) yet"
                if outcome.rejected_entirely
                else "must be rejected, was applied and"
            )
            outcome.signature = f"{driver.name}: {why} changed decisions, by {fuzzed.mutator}"
            outcome.detail = _first_difference(got, want)
        return outcome


@dataclass
class Example:
    """The smallest input seen for one failure signature."""

    fuzzed: Fuzzed
    outcome: Outcome
    count: int = 0


@dataclass
class Tally:
    """Counts of a run (mergeable across workers)."""

    inputs: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0  # processor seconds of the run (all workers)
    by_driver: dict[str, Counter[str]] = field(default_factory=dict)
    by_mutator: dict[str, Counter[str]] = field(default_factory=dict)
    failures: dict[str, Example] = field(default_factory=dict)

    def add(self, fuzzed: Fuzzed, outcomes: Iterable[Outcome]) -> list[tuple[Fuzzed, Outcome]]:
        """Count one input; return its failures that have a new signature."""
        self.inputs += 1
        mutator = self.by_mutator.setdefault(fuzzed.mutator, Counter())
        mutator["inputs"] += 1
        new: list[tuple[Fuzzed, Outcome]] = []
        for outcome in outcomes:
            counts = self.by_driver.setdefault(outcome.driver, Counter())
            counts["inputs"] += 1
            counts["dead letters"] += outcome.dead_letters
            if outcome.moved:
                counts["state moved"] += 1
                mutator[f"moved {outcome.driver}"] += 1
            expect = fuzzed.expect.get(outcome.driver, ANY)
            if outcome.status == CRASH:
                counts["crashes"] += 1
            elif outcome.status == HANG:
                counts["hangs"] += 1
            elif outcome.failure == CHANGE:
                counts["silent changes"] += 1
            elif outcome.failure == UNCONFIRMED:
                counts["not reproduced"] += 1
            else:
                if outcome.rejected_entirely:
                    counts["rejected"] += 1
                    mutator[f"rejected by {outcome.driver}"] += 1
                if outcome.changed:
                    counts["accepted and changed"] += 1
                    mutator["accepted and changed"] += 1
                if expect == REJECT and not outcome.rejected_entirely:
                    counts["applied though invalid (no change)"] += 1
                if expect == VALID and outcome.rejected_entirely:
                    counts["valid but not applied"] += 1
            if outcome.failure:
                mutator[outcome.failure] += 1
                if self._keep(fuzzed, outcome):
                    new.append((fuzzed, outcome))
        return new

    def _keep(self, fuzzed: Fuzzed, outcome: Outcome) -> bool:
        known = self.failures.get(outcome.signature)
        if known is None:
            self.failures[outcome.signature] = Example(fuzzed, outcome, 1)
            return True
        known.count += 1
        if len(fuzzed.payload) < len(known.fuzzed.payload):
            known.fuzzed, known.outcome = fuzzed, outcome
        return False

    def merge(self, other: Tally) -> list[Example]:
        """Add another tally's counts; return the examples whose signature was new here."""
        self.inputs += other.inputs
        for name, counts in other.by_driver.items():
            self.by_driver.setdefault(name, Counter()).update(counts)
        for name, counts in other.by_mutator.items():
            self.by_mutator.setdefault(name, Counter()).update(counts)
        new: list[Example] = []
        for signature, example in other.failures.items():
            known = self.failures.get(signature)
            if known is None:
                self.failures[signature] = example
                new.append(example)
                continue
            known.count += example.count
            if len(example.fuzzed.payload) < len(known.fuzzed.payload):
                known.fuzzed, known.outcome = example.fuzzed, example.outcome
        return new

    def count(self, what: str) -> int:
        """Total of one counter over the drivers."""
        return sum(counts[what] for counts in self.by_driver.values())

    @property
    def failed(self) -> bool:
        return bool(self.count("crashes") + self.count("hangs") + self.count("silent changes"))


class Fuzzer:
    """Runs inputs of one seed through both drivers (in this process)."""

    def __init__(
        self,
        seed: int = 1,
        *,
        limit: float = 2.0,
        audit: float = 0.02,
        base: BaseStream | None = None,
    ) -> None:
        self.seed = seed
        self.limit = limit
        self.audit = audit
        self.base = base or build_stream()
        self.cursors: list[Cursor] = []
        for driver in (ProcessorDriver(), ReplayDriver()):
            baseline = Baseline.of(driver, self.base)
            self.cursors.append(Cursor(driver, baseline, self.base))

    def baseline(self, driver: str) -> Baseline:
        return next(c.baseline for c in self.cursors if c.driver.name == driver)

    def generate(self, index: int) -> Fuzzed:
        return generate(self.base, self.seed, index)

    def run_one(self, fuzzed: Fuzzed) -> list[Outcome]:
        """Both drivers' outcomes for one input."""
        # A share of the inputs that left the state as it was run the rest of the stream
        # anyway: the digest's completeness is then checked by the decisions themselves.
        audit = (fuzzed.index * 2_654_435_761) % 10_000 < self.audit * 10_000
        outcomes = []
        for cursor in self.cursors:
            outcome = cursor.run(fuzzed, self.limit, audit)
            if outcome.failure is not None and not cursor.fresh:
                # Confirm from a state restored afresh, as `--only` would reproduce it: a
                # failure that does not come back would be the digest's fault, not the input's.
                cursor.position = None
                again = cursor.run(fuzzed, self.limit, True)
                if again.failure != outcome.failure:
                    outcome = Outcome(
                        cursor.driver.name,
                        failure=UNCONFIRMED,
                        signature=f"{outcome.signature} (not reproduced)",
                        detail=outcome.detail,
                    )
            outcomes.append(outcome)
        return outcomes

    def run(
        self,
        indices: Iterable[int],
        tally: Tally | None = None,
        on_failure: Callable[[Fuzzed, Outcome], None] | None = None,
        before: Callable[[Fuzzed], None] | None = None,
    ) -> Tally:
        """Run inputs (in position order, so the drivers mostly walk forward); count them."""
        tally = tally or Tally()
        started = time.monotonic()
        inputs = sorted((self.generate(i) for i in indices), key=lambda f: f.position)
        for fuzzed in inputs:
            if before is not None:
                before(fuzzed)
            for found in tally.add(fuzzed, self.run_one(fuzzed)):
                if on_failure is not None:
                    on_failure(*found)
        tally.elapsed += time.monotonic() - started
        return tally
