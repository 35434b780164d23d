"""What every check kind shares: its policy model's base, one tick, one gate, one evidence.

A check kind is one module (see :mod:`~canarystream.analysis.checks.registry`) holding a
pydantic ``*Check`` (the policy's configuration) and its :class:`Unit` (one sequential test).
A :class:`CheckGroup` holds the units of one policy check: one, or one per breakdown key or
gauge as keys appear, up to :data:`MAX_UNITS_PER_CHECK`, each with an equal, fixed share of
the check's alpha so the budget holds however many keys show up.

Every tick each unit gets :meth:`Unit.update` with one :class:`Tick`; then the engine asks
each unit once, :meth:`Unit.evaluate` with one :class:`Gate`, and builds the decision's action
*and* its reasons from the :class:`Evidence` returned, so a reason shows what decided:

* ``FAIL`` — the change detector against "no regression beyond ``tolerance``" reached
  ``1/alpha`` (anytime-valid: looking every tick does not inflate false rollbacks, and a
  regression that starts late is not held back by the healthy evidence before it);
* ``PASS`` — the stage is ready and the anytime-valid upper confidence bound rules out a
  degradation beyond the tolerance in force (``advance_tolerance``, or the promote tolerance
  when promoting): evidence of no harm, not mere absence of significance;
* ``INCONCLUSIVE`` — neither yet; ``NO_DATA`` — the canary has sent nothing for it;
* ``None`` — not applicable (neither cohort has sent anything this check looks at).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from canarystream.analysis.cohort import CohortBucket, Slice
from canarystream.analysis.state import Key, Reader, State, key_to_state, reader
from canarystream.contracts.decision import CheckReason, Verdict

if TYPE_CHECKING:
    from canarystream.analysis.checks.latency import LatencyTracker

__all__ = [
    "LEANING_E",
    "MAX_DURATION",
    "MAX_RATIO",
    "MAX_UNITS_PER_CHECK",
    "Breakdown",
    "CheckGroup",
    "CheckModel",
    "Duration",
    "Evidence",
    "Gate",
    "StatusRanges",
    "StrictModel",
    "Tick",
    "Trackers",
    "Unit",
    "check_order",
    "leaning",
    "parse_duration",
    "parse_status_set",
    "samples_to_reach",
]

MAX_UNITS_PER_CHECK = 16
"""Units (statistical tests) a check with a breakdown or ``metric: '*'`` may grow to."""
MAX_DURATION = 30 * 86_400.0
"""Longest duration a policy may give (30 days, in s)."""
MAX_RATIO = 50.0  # rate-ratio tolerances: the tests' grid spans ratios up to e^4 = 54.6
_MAX_STATUS_PARTS = 100
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


# --- policy fields every kind may use ------------------------------------------------------


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``"6m"``.

    >>> parse_duration("6m"), parse_duration(90), parse_duration("1.5h")
    (360.0, 90.0, 5400.0)
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '6m'")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError("the duration is too long") from None
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"invalid duration {value!r}: use seconds or a string like '6m'")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def _status(bound: Any, part: Any) -> int:
    """One end of a ``[low, high]`` status range: an int or a string of three digits."""
    if type(bound) is int or (isinstance(bound, str) and re.fullmatch(r"\s*\d{3}\s*", bound)):
        return int(bound)
    raise ValueError(f"invalid status range {part!r}")


def parse_status_set(value: Any) -> tuple[tuple[int, int], ...]:
    """Status ranges from ``"429,500-599"`` (or a list of ints / ``"a-b"`` strings).

    >>> parse_status_set("429,500-599")
    ((429, 429), (500, 599))
    """
    if isinstance(value, str):
        parts: list[Any] = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise ValueError("error_statuses is a string like '500-599' or a list")
    if len(parts) > _MAX_STATUS_PARTS:
        raise ValueError(f"at most {_MAX_STATUS_PARTS} statuses or ranges, got {len(parts)}")
    ranges: list[tuple[int, int]] = []
    for part in parts:
        if isinstance(part, (list, tuple)) and len(part) == 2:
            low, high = _status(part[0], part), _status(part[1], part)
        elif isinstance(part, int) and not isinstance(part, bool):
            low = high = part
        elif isinstance(part, str) and re.fullmatch(r"\d{3}(-\d{3})?", part):
            low_s, _, high_s = part.partition("-")
            low, high = int(low_s), int(high_s or low_s)
        else:
            raise ValueError(f"invalid status or range {part!r}")
        if not 100 <= low <= high <= 599:
            raise ValueError(f"status range {part!r} must lie within 100-599")
        ranges.append((low, high))
    if not ranges:
        raise ValueError("error_statuses must name at least one status")
    return tuple(ranges)


Duration = Annotated[float, BeforeValidator(parse_duration)]
StatusRanges = Annotated[tuple[tuple[int, int], ...], BeforeValidator(parse_status_set)]
Breakdown = Literal["endpoint", "dependency"]


class StrictModel(BaseModel):
    """A frozen policy model that refuses unknown fields and non-finite numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def check_order(tolerance: float, promote: float | None, advance: float) -> None:
    """Refuse tolerances out of order: ``tolerance <= promote <= advance``."""
    if advance < tolerance:
        raise ValueError("advance_tolerance must be at least tolerance")
    if promote is not None and not tolerance <= promote <= advance:
        raise ValueError("need tolerance <= promote_tolerance <= advance_tolerance")


class CheckModel(StrictModel):
    """Policy configuration of one check: the fields and hooks every kind shares.

    A kind sets ``kind`` (its literal), ``unit`` (its :class:`Unit` class) and
    ``promote_default`` when it has a promote tolerance, and overrides the hooks below that
    differ for it; the engine and the policy call only these, never a kind's type.
    """

    unit: ClassVar[type[Unit]]
    promote_default: ClassVar[float | None] = None

    name: str | None = Field(
        default=None, min_length=1, max_length=128, description="Unique name; derived if absent."
    )
    critical: bool = Field(
        default=True,
        description="A critical regression rolls back at once; a non-critical one holds and "
        "rolls back at the stage deadline.",
    )
    weight: float = Field(
        default=1.0,
        ge=0.001,
        le=1000,
        description="Share of the rollout's alpha given to this check (relative weight).",
    )

    def promote_bound(self) -> float:
        """The promote tolerance in force: the policy's, else the kind's default kept within
        ``[tolerance, advance_tolerance]``."""
        given = getattr(self, "promote_tolerance", None)
        if given is not None:
            return float(given)
        tolerance = float(getattr(self, "tolerance", 0.0))
        advance = float(getattr(self, "advance_tolerance", tolerance))
        default = tolerance if self.promote_default is None else self.promote_default
        return min(max(default, tolerance), advance)

    def default_name(self) -> str:
        """The name derived from the kind and its parameters when ``name`` is absent."""
        return str(getattr(self, "kind"))  # noqa: B009 (each kind declares it)

    def breakdown_field(self) -> str | None:
        """The request field this check is also run per value of (a breakdown), if any."""
        return None

    def unit_dimension(self) -> str:
        """What a unit is made per: ``""`` (one unit), ``"metric"`` or a breakdown field."""
        return self.breakdown_field() or ""

    def fixed_key(self) -> Key:
        """The key of the only unit of a check without a dimension."""
        return None

    def windows(self) -> list[tuple[str, float]]:
        """``(field, seconds)`` of the check's windows, which must fit the policy's tick."""
        return []

    def error_statuses_for_recovery(self) -> tuple[tuple[int, int], ...] | None:
        """Statuses the rollback verification should count as errors, if this check says."""
        return None

    def make_unit(self, name: str, key: Key, alpha: float, trackers: Trackers) -> Unit:
        """A new unit of this check for ``key``."""
        raise NotImplementedError


# --- one tick, one gate, one evidence ------------------------------------------------------


Trackers = dict[Any, "LatencyTracker"]
"""The rollout's latency trackers by slice key (None: all requests)."""


@dataclass(frozen=True, slots=True)
class Tick:
    """One closed tick: both cohorts' buckets, the rollout's latency trackers, its end."""

    canary: CohortBucket
    baseline: CohortBucket
    trackers: Trackers
    now: float


@dataclass(frozen=True, slots=True)
class Gate:
    """What a verdict is asked against at one evaluation.

    ``ready``: the stage's minimum duration and samples are met, so PASS may be tested;
    ``next_share``: the traffic share the canary would get next (the no-harm test weighs a
    possible degradation by the traffic it would reach); ``promoting``: the next step is
    promotion, so the upper bound must lie within the promote tolerance rather than the
    looser advance tolerance; ``alpha``: one minus the confidence in force for that bound.
    """

    ready: bool
    next_share: float
    promoting: bool
    alpha: float

    def in_force(self, advance: float, promote: float) -> float:
        """The bound the upper confidence limit is compared with at this gate."""
        return promote if self.promoting else advance


class Evidence:
    """One unit's answer at one gate: the verdict and the numbers that decided it.

    ``e_value`` is the one compared with ``threshold`` (``None`` if the unit had no data);
    ``upper`` the bound compared with ``bound`` (``None`` when no PASS was tested: stage not
    ready, a FAIL first, no data). When the gate is promoting and a PASS was tested,
    ``ruled_out`` is the guarantee a promotion would rest on: the largest regression not yet
    ruled out at the promote confidence, in the tolerance's units (``None`` if none is).
    ``more`` estimates, for an INCONCLUSIVE verdict whose bound was tested, the further canary
    samples its bound needs to reach the one in force (:func:`samples_to_reach`). ``leaning``
    says why an INCONCLUSIVE verdict that a blast-radius margin would have passed leans toward
    harm (:func:`leaning`); ``None`` otherwise. The full
    account (:meth:`reason`) is built on first use from the same numbers, within the same
    tick, so it cannot disagree with the verdict.
    """

    __slots__ = (
        "_reason",
        "bound",
        "e_value",
        "explain",
        "gate",
        "leaning",
        "more",
        "note",
        "risk",
        "ruled_out",
        "severe",
        "unit",
        "upper",
        "verdict",
    )

    def __init__(  # noqa: PLR0913 -- one argument per field of the evidence
        self,
        unit: Unit,
        gate: Gate,
        verdict: Verdict | None,
        *,
        e_value: float | None = None,
        upper: float | None = None,
        bound: float | None = None,
        ruled_out: float | None = None,
        more: int | None = None,
        severe: bool = False,
        leaning: str | None = None,
    ) -> None:
        self.unit, self.gate, self.verdict = unit, gate, verdict
        self.e_value, self.upper, self.bound = e_value, upper, bound
        self.ruled_out, self.more = ruled_out, more
        self.severe, self.leaning = severe, leaning
        self.risk: str | None = None  # how the low-traffic rule took it (CheckReason.risk)
        # appended to the reason's message: what the rule says of it, or why it leans
        self.note = _margin_barred(leaning) if leaning is not None else ""
        self._reason: CheckReason | None = None

    def under_rule(self, risk: str, note: str) -> Evidence:
        """This evidence as the low-traffic rule takes it (``risk``), with why (``note``)."""
        self.risk, self.note, self._reason = risk, note, None
        return self

    @property
    def name(self) -> str:
        """The unit's name."""
        return self.unit.name

    @property
    def critical(self) -> bool:
        """Whether this evidence rolls back at once if it fails: the unit's check is
        critical, or the failure is ``severe`` (far past the tolerance: a gauge's
        ``critical_margin``)."""
        return self.unit.critical or self.severe

    def reason(self) -> CheckReason:
        """The readable account of this evidence (built once)."""
        if self._reason is None:
            self._reason = self.unit.explain(self)
        return self._reason


def samples_to_reach(samples: int, estimate: float, upper: float, bound: float) -> int | None:
    """Further samples before an upper bound at ``upper`` reaches ``bound`` (an estimate).

    The bound's distance from the estimate is taken to shrink as ``1/sqrt(n)`` (an
    anytime-valid bound shrinks a little slower, so this is a floor more than a promise); all
    three on a scale where that holds (a log ratio, a mean). None when it cannot be said: no
    samples yet, a non-finite number, or the estimate itself at or beyond ``bound``.

    >>> samples_to_reach(1000, 0.0, 0.2, 0.1)  # half the width: four times the samples
    3000
    >>> samples_to_reach(1000, 0.0, 0.05, 0.1)
    0
    >>> samples_to_reach(1000, 0.12, 0.3, 0.1) is None
    True
    """
    numbers = (estimate, upper, bound)
    if samples <= 0 or not all(math.isfinite(x) for x in numbers) or estimate >= bound:
        return None
    if upper <= bound:
        return 0
    total = samples * ((upper - estimate) / (bound - estimate)) ** 2
    return max(0, math.ceil(min(total, 1e15) - samples))


LEANING_E = 2.0
"""E-value against the tolerance at which a ratio test leans toward harm on its own (under the
tolerance, the chance it ever gets there is at most 1/2, by Ville's inequality)."""


def leaning(detector: float, gate: Gate, against: float, beyond: str | None) -> str | None:
    """Why a ratio test's evidence leans toward harm (None: nothing points to a regression).

    It leans when its change detector (``detector``) has reached the gate's level
    ``1 / gate.alpha``; when its e-process against the tolerance (``against``) has reached
    :data:`LEANING_E`; or when that e-process is above 1 and the point estimate lies beyond the
    bound in force (``beyond`` says how, None if it does not). Evidence that leans cannot pass
    on a blast-radius margin: the rollout waits at its stage until it settles either way.

    >>> gate = Gate(True, 0.05, False, 0.1)
    >>> leaning(12.0, gate, 1.0, None)
    'change detector at e = 12 ≥ 10'
    >>> leaning(1.0, gate, 2.5, None)
    'evidence against the tolerance at e = 2.5'
    >>> leaning(1.0, gate, 1.2, "estimate ×2 beyond ×1.5")
    'estimate ×2 beyond ×1.5 with evidence against the tolerance at e = 1.2'
    >>> leaning(1.0, gate, 0.9, "estimate ×2 beyond ×1.5") is None
    True
    """
    if detector * gate.alpha >= 1.0:
        return f"change detector at e = {detector:.3g} ≥ {1.0 / gate.alpha:g}"
    if against >= LEANING_E:
        return f"evidence against the tolerance at e = {against:.3g}"
    if against > 1.0 and beyond is not None:
        return f"{beyond} with evidence against the tolerance at e = {against:.3g}"
    return None


def _margin_barred(why: str) -> str:
    """The note of evidence that a blast-radius margin would pass but that leans (``why``)."""
    return f"leans toward harm ({why}): the blast-radius margin does not apply"


# --- units -----------------------------------------------------------------------------------


class Unit:
    """One sequential test inside a check (one breakdown key, one gauge, or the whole check)."""

    kind: ClassVar[str]
    counts: ClassVar[str] = "request"
    """What the unit's samples are: ``request``, ``metric`` or ``probe`` events."""
    name: str
    critical: bool
    alpha: float

    def unestimated(self) -> str | None:
        """Why the unit has no bound to estimate from yet, if it can say (else None)."""
        return None

    def bound_text(self, value: float) -> str:
        """A bound in the tolerance's units as a person reads it: ``<= 0.02`` for a gauge."""
        return f"≤ {value:+.3g}"

    def update(self, tick: Tick) -> None:
        """Add one tick of both cohorts."""
        raise NotImplementedError

    def evaluate(self, gate: Gate) -> Evidence:
        """The verdict at ``gate`` with the numbers that decided it."""
        raise NotImplementedError

    def explain(self, evidence: Evidence) -> CheckReason:
        """The full account of ``evidence``, which this unit gave in the same tick."""
        raise NotImplementedError

    def risk_evidence(self, evidence: Evidence, error_ratio: float) -> Evidence | None:
        """The evidence at ``evidence``'s gate against the wider bound the low-traffic rule
        asks at promotion (PASS: ruled out; ``ruled_out`` set), or None: never relaxed."""
        return None

    def leans(self, evidence: Evidence, e_level: float, error_ratio: float) -> str | None:
        """Why this unit leans toward harm (None: it does not): the evidence did at its own
        gate (``evidence.leaning``), or its change detector's evidence against the tolerance
        has reached ``e_level``."""
        if evidence.leaning is not None:
            return evidence.leaning
        e_value = evidence.e_value
        if e_value is not None and e_value >= e_level:
            return f"evidence against it at e = {e_value:.3g} ≥ {e_level:g}"
        return None

    def latency_quantile(self) -> tuple[Key, float] | None:
        """``(slice key, quantile)`` for a latency quantile unit, else None."""
        return None

    def interval_upper(self, evidence: Evidence) -> float | None:
        """The upper confidence bound at the gate's confidence, in the tolerance's units,
        whether or not a PASS was tested (the reason's ``upper`` is only the one tested).

        None when the unit has none on that scale (or no data yet). The lower bound and the
        estimate are the reason's.
        """
        return None

    def account(self, evidence: Evidence, **fields: Any) -> CheckReason:
        """A :class:`CheckReason` with what every unit reports, from ``evidence``."""
        if evidence.severe:
            fields["message"] = f"{fields.get('message', '')}; {self.severe_text()}"
        if evidence.note:
            fields["message"] = f"{fields.get('message', '')}; {evidence.note}"
        return CheckReason(
            check=self.name,
            kind=self.kind,
            verdict=evidence.verdict or Verdict.NO_DATA,
            critical=evidence.critical,
            ruled_out=evidence.ruled_out,
            more_samples=evidence.more,
            risk=evidence.risk,
            **fields,
        )

    def severe_text(self) -> str:
        """Why a severe failure rolls back at once, for a person."""
        return "far past the tolerance: rolls back at once"

    def to_state(self) -> State:
        """The unit as plain data; ``kind`` names its class."""
        return {
            "kind": self.kind,
            "name": self.name,
            "critical": self.critical,
            "alpha": self.alpha,
        }

    @classmethod
    def from_state(cls, state: State | Reader, check: CheckModel, trackers: Trackers) -> Unit:
        """The unit :meth:`to_state` described, for policy check ``check``.

        ``trackers`` are the rollout's latency trackers, restored first (a latency unit
        reports from its tracker's sketches).
        """
        r = reader(state, "Unit")
        kind = r.text("kind")
        unit_class = check.unit
        if kind != unit_class.kind:
            raise r.fail("kind", f"unknown unit kind {kind!r} for a {unit_class.kind} check")
        unit = unit_class.__new__(unit_class)
        unit.name = r.text("name")
        unit.critical, unit.alpha = r.flag("critical"), r.real("alpha")
        unit.restore(r, check, trackers)
        return unit

    def restore(self, r: Reader, check: CheckModel, trackers: Trackers) -> None:
        """Set what the subclass's :meth:`to_state` adds to the base's."""
        raise NotImplementedError


def slice_of(bucket: CohortBucket, key: Any) -> Slice | None:
    """All requests of ``bucket`` (key None) or one breakdown slice."""
    return bucket.requests if key is None else bucket.slices.get(key)


# --- the units of one check ----------------------------------------------------------------


class CheckGroup:
    """The units of one policy check, created as breakdown keys or gauges appear."""

    def __init__(self, check: CheckModel, alpha: float, trackers: Trackers) -> None:
        self.check = check
        self.name = check.name or check.default_name()
        self.alpha = alpha
        self.dynamic = check.unit_dimension()
        self.units: dict[Key, Unit] = {}
        self.overflow = 0  # keys seen beyond the cap, reported but untested
        if not self.dynamic:
            key = check.fixed_key()
            self.units[key] = self._make(key, trackers)

    def unit_alpha(self) -> float:
        """Alpha of each unit: the check's, split over the most units it may ever hold."""
        return self.alpha / (MAX_UNITS_PER_CHECK if self.dynamic else 1)

    def _make(self, key: Key, trackers: Trackers) -> Unit:
        if not self.dynamic:
            name = self.name
        elif isinstance(key, tuple):
            name = f"{self.name}[{key[0]}={key[1]}]"
        else:
            name = f"{self.name}[{key}]"
        return self.check.make_unit(name, key, self.unit_alpha(), trackers)

    def keys_in(self, *buckets: CohortBucket) -> Sequence[Key]:
        """Keys present in the buckets for this group's dimension, sorted."""
        if self.dynamic == "metric":
            names: set[str] = set()
            for bucket in buckets:
                names.update(bucket.metrics)
            return sorted(names)
        if self.dynamic:
            keys = {key for bucket in buckets for key in bucket.slices if key[0] == self.dynamic}
            return sorted(keys)
        return []

    def update(self, tick: Tick) -> None:
        """Add one tick to every unit, creating units for new keys first."""
        if self.dynamic:
            for key in self.keys_in(tick.canary, tick.baseline):
                if key not in self.units:
                    if len(self.units) >= MAX_UNITS_PER_CHECK:
                        self.overflow += 1
                        continue
                    self.units[key] = self._make(key, tick.trackers)
        for unit in self.units.values():
            unit.update(tick)

    def evaluate(self, gate: Gate) -> list[Evidence]:
        """Every unit's evidence at ``gate``."""
        return [unit.evaluate(gate) for unit in self.units.values()]

    def to_state(self) -> State:
        """The group as plain data; its check is the policy's."""
        return {
            "name": self.name,
            "alpha": self.alpha,
            "dynamic": self.dynamic,
            "overflow": self.overflow,
            "units": [
                {"key": key_to_state(key), "unit": unit.to_state()}
                for key, unit in self.units.items()
            ],
        }

    @classmethod
    def from_state(cls, state: State | Reader, check: CheckModel, trackers: Trackers) -> CheckGroup:
        """The group :meth:`to_state` described, for policy check ``check``."""
        r = reader(state, "CheckGroup")
        group = cls.__new__(cls)
        group.check, group.name = check, r.text("name")
        expected = check.name or check.default_name()
        if group.name != expected:
            raise r.fail("name", f"{group.name!r} is not the policy's check {expected!r}")
        group.alpha, group.dynamic = r.real("alpha"), r.text("dynamic")
        group.overflow = r.integer("overflow")
        group.units = {
            item.key("key"): Unit.from_state(item.child("unit"), check, trackers)
            for item in r.children("units")
        }
        return group
