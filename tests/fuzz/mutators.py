"""Fuzzed messages: one per input, generated from the base stream's context at a position.

Every input is drawn from its own seeded generator (``seed`` and ``index``), so input 73,512
of seed 1 is the same message on every machine and in every run. A mutator returns a
:class:`Draft` (events to serialise, or raw bytes) with what each driver must do with it:

``valid``
    Well-formed and in range: it may be applied and may change decisions (counted apart).
``reject``
    Invalid, out of range, a duplicate announcement, a redelivered offset or (for the worker)
    keyed by another service: nothing of it may be applied, and no decision may change.
``any``
    No expectation (byte-level damage, values at a boundary): if it is rejected entirely it
    must change nothing; if it is applied, changes are allowed.

The envelope then picks the key, the topic and the offset (the free offset right after the
message the input follows), and whether replay reads it through the merge of several files.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from canarystream.contracts.events import MAX_LATENCY_MS, MAX_METRIC_ABS, MAX_TS, MIN_TS
from tests.fuzz.base import (
    DEPLOYMENTS_TOPIC,
    GRACE,
    MAX_SKEW,
    PARTITIONS,
    SERVICES,
    TELEMETRY_TOPIC,
    TICK,
    BaseStream,
    Site,
    fuzz_policy,
)

__all__ = ["ANY", "MUTATORS", "REJECT", "VALID", "Draft", "Fuzzed", "generate"]

VALID, REJECT, ANY = "valid", "reject", "any"
_TELEMETRY = ("request", "metric", "probe")
_CONTROLS = ("aborted", "paused", "resumed", "approved")
_CONTROL_TYPES = tuple(f"deployment_{kind}" for kind in _CONTROLS)
_YEAR = 365.0 * 86_400.0


@dataclass
class Draft:
    """What a mutator made: events (serialised by the envelope) or raw bytes."""

    events: list[Any] | None = None
    raw: bytes | None = None
    expect: str = REJECT
    service: str | None = None  # whose key the message carries by default
    control: bool = False  # deployments topic by default
    single: bool = True  # one event: may be sent bare
    splices: dict[str, bytes] = field(default_factory=dict)  # placeholder -> raw JSON text
    expect_processor: str | None = None  # overrides expect for the worker only
    offset: int | None = None  # a redelivery's offset
    keep_key: bool = False  # the envelope must not draw another key
    note: str = ""


@dataclass(frozen=True)
class Fuzzed:
    """One generated input, ready for both drivers."""

    seed: int
    index: int
    mutator: str
    position: int
    payload: bytes
    key: bytes | None
    topic: str
    partition: int
    offset: int
    expect: dict[str, str]
    merge: bool
    note: str = ""

    def describe(self, limit: int = 300) -> str:
        """One line for reports: where, how, and the start of the payload."""
        shown = self.payload[:limit]
        more = f"... ({len(self.payload):,} bytes)" if len(self.payload) > limit else ""
        return (
            f"input {self.index} [{self.mutator}{': ' + self.note if self.note else ''}] at "
            f"message {self.position}, {self.topic}/{self.partition}@{self.offset} "
            f"key={self.key!r}: {shown!r}{more}"
        )


# -------------------------------------------------------------------- context helpers


def _services(site: Site) -> list[str]:
    """Services that have a rollout by this position (else every base service)."""
    return sorted(site.current) or list(SERVICES)


def _versions(site: Site, service: str) -> tuple[str, str]:
    started = site.current.get(service)
    if started is None:
        return "v1", "v2"
    return started["baseline_version"], started["canary_version"]


def _now(site: Site, service: str) -> float:
    started = site.current.get(service)
    floor = started["ts"] if started is not None else site.now
    return max(site.last_ts.get(service, floor), floor)


def telemetry(
    rng: random.Random, site: Site, kind: str | None = None, service: str | None = None
) -> dict[str, Any]:
    """A valid telemetry event of a service under rollout, stamped at its latest time."""
    service = service or rng.choice(_services(site))
    kind = kind or rng.choices(_TELEMETRY, (8, 2, 1))[0]
    baseline, canary = _versions(site, service)
    template = site.templates.get((service, kind))
    event = dict(template) if template is not None else _synthetic(kind, service, baseline)
    event["ts"] = _now(site, service)
    event["version"] = rng.choice((baseline, canary))
    return event


def _synthetic(kind: str, service: str, version: str) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "ts": 0.0, "service": service, "version": version}
    if kind == "request":
        event.update(latency_ms=42.5, status=200)
    elif kind == "metric":
        event.update(name="cpu_utilization", value=0.45)
    else:
        event.update(probe="health", ok=True)
    return event


def canary_errors(
    site: Site, service: str, count: int, ts: Callable[[int], float]
) -> list[dict[str, Any]]:
    """``count`` failed canary requests of one instance (what a broken producer would send)."""
    _, canary = _versions(site, service)
    return [
        {
            "type": "request",
            "ts": ts(i),
            "service": service,
            "version": canary,
            "instance": f"{service}-canary-0",
            "latency_ms": 30.0 + (i % 7),
            "status": 503,
        }
        for i in range(count)
    ]


def announcement(rng: random.Random, site: Site, index: int) -> dict[str, Any]:
    """A valid announcement of a new deployment, for a base service or a new one."""
    service = rng.choice((*SERVICES, "ghost"))
    return {
        "type": "deployment_started",
        "ts": _now(site, service) if service in site.current else site.now,
        "deployment": f"{service}-fuzz-{index}",
        "service": service,
        "baseline_version": "v1",
        "canary_version": rng.choice(("v2", "v3")),
        "policy": rng.choice((fuzz_policy(), fuzz_policy(), None, "default")),
    }


def control(rng: random.Random, site: Site) -> dict[str, Any] | None:
    """A valid control event for a deployment already announced, at its service's time."""
    if not site.announced:
        return None
    deployment = rng.choice(sorted(site.announced))
    service = site.announced[deployment]["service"]
    event = {
        "type": f"deployment_{rng.choice(_CONTROLS)}",
        "ts": _now(site, service),
        "deployment": deployment,
        "actor": rng.choice(("alice", "deploy-bot")),
    }
    if rng.random() < 0.5:
        event["service"] = service
    if rng.random() < 0.3:
        event["reason"] = "fuzz"
    return event


def any_event(rng: random.Random, site: Site, index: int) -> tuple[dict[str, Any], bool]:
    """A valid event of any kind, and whether it goes on the deployments topic."""
    roll = rng.random()
    if roll < 0.15:
        return announcement(rng, site, index), True
    if roll < 0.3:
        made = control(rng, site)
        if made is not None:
            return made, True
    return telemetry(rng, site), False


# -------------------------------------------------------------------- field catalogue

# Per field: what it holds. Wrong values below are wrong for that kind whatever the model's
# details (strict types: no numbers in strings, no bool as int, no float as int).
_KIND = {
    "type": "name",
    "ts": "number",
    "service": "name",
    "version": "name",
    "latency_ms": "number",
    "status": "int",
    "instance": "opt_name",
    "endpoint": "opt_name",
    "dependency": "opt_name",
    "zone": "opt_name",
    "name": "name",
    "value": "number",
    "probe": "name",
    "ok": "bool",
    "deployment": "name",
    "baseline_version": "name",
    "canary_version": "name",
    "actor": "name",
    "reason": "opt_text",
    "policy": "policy",
    "rollback_unsafe_from_stage": "opt_count",
    "compensation": "list",
}
_WRONG: dict[str, tuple[Any, ...]] = {
    "number": ("12.5", True, False, None, [], [1.5], {}, {"v": 1}, "", "NaN", "1e3"),
    "int": (200.0, "200", True, None, [200], {"code": 200}, 200.5, "5xx"),
    "bool": (1, 0, "true", "false", None, [], {}, [True], "yes"),
    "name": (1, 0.5, True, None, [], ["x"], {}, {"a": "b"}, "", ["request"], {"request": 1}),
    "opt_name": (1, True, [], ["x"], {}, "", {"zone": "a"}),
    "opt_number": ("1", True, [], {}, "fast"),
    "opt_text": (1, True, [], {}, ["why"]),
    "policy": (1, 1.5, True, [], ["fast"], "", "no-such-policy", [{"tick": 5}]),
    "opt_count": (-1, "1", 1.5, True, [], {}),
    "list": ("x", 1, {}, [1], [{}], [{"name": "x"}], [{"name": "x", "url": "ftp://x"}]),
}
_REQUIRED = {
    "request": ("type", "ts", "service", "version", "latency_ms", "status"),
    "metric": ("type", "ts", "service", "version", "name", "value"),
    "probe": ("type", "ts", "service", "version", "probe", "ok"),
    "deployment_started": (
        "type",
        "ts",
        "deployment",
        "service",
        "baseline_version",
        "canary_version",
    ),
    "control": ("type", "ts", "deployment", "actor"),
}
_ABSURD: dict[str, tuple[Any, ...]] = {
    "ts": (0, -1, 1e20, MIN_TS - 1.0, MAX_TS + 1.0, -1e300, 1.7976931348623157e308, 2**63),
    "latency_ms": (-1, -1e-9, MAX_LATENCY_MS + 1.0, 1e300, -(2**63)),
    "value": (MAX_METRIC_ABS * 10, -MAX_METRIC_ABS * 10, 1e300, -1e300),
    "status": (0, 99, 600, -200, 2**63 - 1, 10**19, 1000),
    "rollback_unsafe_from_stage": (-1, -(2**63)),
}
_UNKNOWN_TYPES = (
    "Request",
    "REQUEST",
    "requests",
    "request ",
    "",
    "deployment",
    "deployment_start",
    "telemetry",
    "metric\x00",
    "\U0001f680",
    "x" * 300,
    "__proto__",
    "dead_letter",
    "decision",
    "deployment_rolled_back",
)


def _kind_of(event: dict[str, Any], name: str) -> str:
    kind = event.get("type")
    if name == "latency_ms" and kind == "probe":
        return "opt_number"
    if name == "service" and kind not in ("deployment_started", *_TELEMETRY):
        return "opt_name"  # optional on control events
    return _KIND.get(name, "opt_text")


def _required(event: dict[str, Any]) -> tuple[str, ...]:
    kind = event.get("type", "")
    if kind in _REQUIRED:
        return _REQUIRED[kind]
    return _REQUIRED["control"]


def _event(rng: random.Random, site: Site, index: int) -> tuple[dict[str, Any], bool]:
    event, is_control = any_event(rng, site, index)
    return copy.deepcopy(event), is_control


def _draft(event: Any, is_control: bool, expect: str, **more: Any) -> Draft:
    service = event.get("service") if isinstance(event, dict) else None
    return Draft(
        events=[event],
        expect=expect,
        service=service if isinstance(service, str) else None,
        control=is_control,
        **more,
    )


# -------------------------------------------------------------------- structure-aware


def wrong_type(rng: random.Random, site: Site, index: int) -> Draft:
    event, is_control = _event(rng, site, index)
    name = rng.choice([n for n in event if n in _KIND] + ["type"] * 2)
    event[name] = copy.deepcopy(rng.choice(_WRONG[_kind_of(event, name)]))
    return _draft(event, is_control, REJECT, note=f"{name}={event[name]!r}"[:60])


def nan_token(rng: random.Random, site: Site, index: int) -> Draft:
    event = telemetry(rng, site)
    name = rng.choice([n for n in ("ts", "latency_ms", "value") if n in event])
    token = rng.choice((b"NaN", b"Infinity", b"-Infinity", b"nan", b"1e999", b"-1e999", b"inf"))
    event[name] = "@@token@@"
    return _draft(
        event, False, REJECT, splices={'"@@token@@"': token}, note=f"{name}={token.decode()}"
    )


def absurd_number(rng: random.Random, site: Site, index: int) -> Draft:
    event, is_control = _event(rng, site, index)
    name = rng.choice([n for n in _ABSURD if n in event])
    event[name] = rng.choice(_ABSURD[name])  # every one lies outside the contract's range
    return _draft(event, is_control, REJECT, note=f"{name}={event[name]!r}")


def unknown_type(rng: random.Random, site: Site, index: int) -> Draft:
    event, is_control = _event(rng, site, index)
    event["type"] = rng.choice(_UNKNOWN_TYPES)
    return _draft(event, is_control, REJECT, note=repr(event["type"])[:40])


def unknown_version(rng: random.Random, site: Site, index: int) -> Draft:
    event = telemetry(rng, site)
    event["version"] = rng.choice(("v3", "V2", "v2 ", "canary", "v" * 256, "v1.0", "\u00e9"))
    return _draft(event, False, REJECT, note=repr(event["version"])[:40])


def missing_field(rng: random.Random, site: Site, index: int) -> Draft:
    event, is_control = _event(rng, site, index)
    name = rng.choice(_required(event))
    del event[name]
    return _draft(event, is_control, REJECT, note=name)


def extra_fields(rng: random.Random, site: Site, index: int) -> Draft:
    event, is_control = _event(rng, site, index)
    for number in range(rng.randint(1, 20)):
        event[f"x_{number}_{rng.randrange(10**6)}"] = rng.choice(
            (None, 1, -1.5, "s" * rng.randint(0, 5000), [1, [2, {"a": None}]], {"k": "v"}, True)
        )
    return _draft(event, is_control, VALID)


def long_string(rng: random.Random, site: Site, index: int) -> Draft:
    event, is_control = _event(rng, site, index)
    length = rng.choice((257, 1000, 65_537, 600_000))
    text = rng.choice(("a", "\u00e9", "\U0001f680") if length < 1000 else ("a",)) * length
    if rng.random() < 0.3:
        event[f"x_long_{rng.randrange(100)}"] = text  # an extra field: allowed
        return _draft(event, is_control, VALID, note=f"extra of {length}")
    names = [n for n in event if _KIND.get(n) in ("name", "opt_name")]
    if event["type"] in _CONTROL_TYPES and rng.random() < 0.5:
        event["reason"] = "r" * rng.choice((2049, 100_000))
        return _draft(event, is_control, REJECT, note="reason")
    name = rng.choice(names)
    event[name] = text
    return _draft(event, is_control, REJECT, note=f"{name} of {len(text)}")


def _nested(depth: int, as_object: bool) -> bytes:
    if as_object:
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth + b"]" * depth


def _nested_expect(depth: int) -> str:
    # JSON deeper than 1024 levels does not parse; the envelope may add a level or two.
    if depth < 1022:
        return VALID
    return ANY if depth <= 1024 else REJECT


def deep_nesting(rng: random.Random, site: Site, index: int) -> Draft:
    depth = rng.choice((10, 100, 253, 254, 255, 256, 300, 1000, 1022, 1023, 1024, 1025, 5000))
    nested = _nested(depth, rng.random() < 0.3)
    where = rng.choice(("message", "sibling", "field", "extra"))
    if where == "message":
        return Draft(raw=nested, expect=REJECT, service=rng.choice(SERVICES), note=f"{depth}")
    event, is_control = _event(rng, site, index)
    if where == "sibling":
        return Draft(
            events=[event, "@@deep@@"],
            expect=_nested_expect(depth),
            service=event.get("service"),
            control=is_control,
            single=False,
            splices={'"@@deep@@"': nested},
            note=f"{depth} beside an event",
        )
    if where == "field":
        name = rng.choice([n for n in event if n in _KIND])
        event[name] = "@@deep@@"
        expect = REJECT
    else:
        name = "x_nested"
        event[name] = "@@deep@@"
        expect = _nested_expect(depth)
    return _draft(
        event, is_control, expect, splices={'"@@deep@@"': nested}, note=f"{depth} in {name}"
    )


def big_array(rng: random.Random, site: Site, index: int) -> Draft:
    count = int(10 ** rng.uniform(2, 5))  # elements, within about 1 MB (a producer's limit)
    element = rng.choice(("number", "object", "invalid", "valid") * 3 + ("huge",))
    service = rng.choice(_services(site))
    if element == "huge":
        return Draft(raw=b"[" + b"1," * 500_000 + b"1]", service=service, note="500k numbers")
    if element == "number":
        return Draft(raw=b"[" + b"1," * (count - 1) + b"1]", service=service, note=f"{count}")
    if element == "object":
        return Draft(events=[{}] * count, service=service, single=False, note=f"{count} {{}}")
    event = telemetry(rng, site)
    count = min(count, 1_000_000 // len(orjson.dumps(event)))
    if element == "invalid":
        event["status"] = "oops"
        return Draft(
            events=[event] * count, service=event["service"], single=False, note=f"{count} bad"
        )
    return Draft(
        events=[event] * count,
        expect=VALID,
        service=event["service"],
        single=False,
        note=f"{count} valid",
    )


def mixed_array(rng: random.Random, site: Site, index: int) -> Draft:
    service = rng.choice(_services(site))
    events: list[Any] = []
    valid = 0
    splices: dict[str, bytes] = {}
    for number in range(rng.randint(2, 40)):
        event = telemetry(rng, site, service=service)
        roll = rng.random()
        if roll < 0.4:
            valid += 1
        elif roll < 0.6:
            event[rng.choice(("latency_ms", "ts", "status"))] = rng.choice(_WRONG["number"])
        elif roll < 0.7:
            event["type"] = rng.choice((["request"], {"request": True}, 7, None))
        elif roll < 0.8:
            event = rng.choice((5, "x", None, [1, 2], True))
        elif roll < 0.9:
            event = f"@@deep{number}@@"
            splices[f'"@@deep{number}@@"'] = _nested(rng.choice((3, 260, 600)), False)
        else:
            event["ts"] = event["ts"] + rng.choice((3 * 86_400.0, -11 * 86_400.0))
        events.append(event)
    return Draft(
        events=events,
        expect=VALID if valid else REJECT,
        service=service,
        single=False,
        splices=splices,
        note=f"{valid}/{len(events)} valid",
    )


def invalid_utf8(rng: random.Random, site: Site, index: int) -> Draft:
    event, is_control = _event(rng, site, index)
    name = rng.choice([n for n in event if isinstance(event[n], str)])
    bad = rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"))
    event[name] = "@@utf8@@"
    return _draft(event, is_control, REJECT, splices={"@@utf8@@": bad}, note=name)


def truncated_json(rng: random.Random, site: Site, index: int) -> Draft:
    event, is_control = _event(rng, site, index)
    text = orjson.dumps(event if rng.random() < 0.7 else [event, event])
    return Draft(
        raw=text[: rng.randrange(len(text))],
        expect=REJECT,
        service=event.get("service"),
        control=is_control,
        note="truncated",
    )


def ts_future(rng: random.Random, site: Site, index: int) -> Draft:
    event, is_control = _event(rng, site, index)
    ahead = rng.choice(
        (70 * _YEAR, 10 * _YEAR, _YEAR, 3 * 86_400.0, 86_400.0, 6 * 3600.0, 3600.0, 3 * MAX_SKEW)
    )
    base = _now(site, event["service"]) if "service" in event else site.now
    event["ts"] = min(base + ahead, MAX_TS)
    # Only telemetry has a rule; control events and announcements have none of their own.
    expect = REJECT if event["type"] in _TELEMETRY else ANY
    return _draft(event, is_control, expect, note=f"+{ahead:,.0f} s")


def ts_past(rng: random.Random, site: Site, index: int) -> Draft:
    event = telemetry(rng, site)
    started = site.current.get(event["service"])
    start = started["ts"] if started is not None else site.now
    before = rng.choice((11 * 86_400.0, 86_400.0, 3600.0, TICK, 1.0))  # before start - grace
    event["ts"] = max(start - GRACE - before, MIN_TS)
    return _draft(event, False, REJECT, note=f"{before:,.0f} s before start - grace")


def ts_late(rng: random.Random, site: Site, index: int) -> Draft:
    event = telemetry(rng, site)
    started = site.current.get(event["service"])
    start = started["ts"] if started is not None else site.now
    event["ts"] = rng.uniform(start, event["ts"])
    return _draft(event, False, VALID, note="late, in range")


def ts_boundary(rng: random.Random, site: Site, index: int) -> Draft:
    event = telemetry(rng, site)
    started = site.current.get(event["service"])
    start = started["ts"] if started is not None else site.now
    now = event["ts"]
    tick = (math.floor((now - start) / TICK) + 1) * TICK + start
    choices: list[tuple[str, float, str]] = [
        ("MIN_TS", MIN_TS, REJECT),
        ("MAX_TS", MAX_TS, REJECT),
        ("below MIN_TS", math.nextafter(MIN_TS, 0.0), REJECT),
        ("above MAX_TS", math.nextafter(MAX_TS, math.inf), REJECT),
        ("start", start, VALID),
        ("start - grace", start - GRACE, ANY),
        ("start - grace - 1 ms", start - GRACE - 0.001, REJECT if started else ANY),
        ("next tick", tick, VALID),
        ("now + max_skew", now + MAX_SKEW, ANY),
        ("now + max_skew + 2 ticks", now + MAX_SKEW + 2 * TICK, REJECT),
    ]
    label, ts, expect = rng.choice(choices)
    event["ts"] = ts
    return _draft(event, False, expect, note=label)


def burst_past(rng: random.Random, site: Site, index: int) -> Draft:
    count = rng.choice((5, 60, 200))
    shift = rng.choice((11 * 86_400.0, 86_400.0, 3600.0))
    service = rng.choice(_services(site))
    started = site.current.get(service)
    floor = (started["ts"] if started is not None else site.now) - GRACE
    events = canary_errors(site, service, count, lambda i: max(floor - shift + i * 0.01, MIN_TS))
    return Draft(
        events=events,
        service=events[0]["service"],
        single=False,
        note=f"{count} canary errors {shift:,.0f} s before",
    )


def burst_future(rng: random.Random, site: Site, index: int) -> Draft:
    count = rng.choice((1, 5, 60, 200))
    ahead = rng.choice((10 * _YEAR, 3 * 86_400.0, 3600.0))
    service = rng.choice(_services(site))
    now = _now(site, service)
    events = canary_errors(site, service, count, lambda i: min(now + ahead + i * 0.01, MAX_TS))
    return Draft(
        events=events,
        service=events[0]["service"],
        single=count == 1,
        note=f"{count} canary errors +{ahead:,.0f} s from one instance",
    )


def burst_valid(rng: random.Random, site: Site, index: int) -> Draft:
    service = rng.choice(_services(site))
    now = _now(site, service)
    events = canary_errors(site, service, rng.choice((5, 60)), lambda i: now)
    return Draft(events=events, expect=VALID, service=service, single=False)


def key_mismatch(rng: random.Random, site: Site, index: int) -> Draft:
    service = rng.choice(_services(site))
    if rng.random() < 0.5:
        events = [telemetry(rng, site, service=service)]
    else:
        now = _now(site, service)
        events = canary_errors(site, service, 60, lambda i: now)
    other = rng.choice([s for s in (*SERVICES, "ghost") if s != service])
    return Draft(
        events=events,
        expect=VALID,  # the key makes it a rejection for the worker (see the envelope)
        service=other,
        keep_key=True,
        single=len(events) == 1,
        note=f"{service} events keyed {other}",
    )


def resent_announcement(rng: random.Random, site: Site, index: int) -> Draft:
    if not site.announced:
        return control_unknown(rng, site, index)
    event = copy.deepcopy(site.announced[rng.choice(sorted(site.announced))])
    variant = rng.choice(("same", "now", "versions", "policy", "service"))
    if variant == "now":
        event["ts"] = _now(site, event["service"])
    elif variant == "versions":
        event["canary_version"] = "v9"
    elif variant == "policy":
        event["policy"] = None
    elif variant == "service":
        event["service"] = rng.choice([s for s in (*SERVICES, "ghost") if s != event["service"]])
        event["ts"] = site.now
    return _draft(event, True, REJECT, note=f"{event['deployment']} ({variant})")


def control_unknown(rng: random.Random, site: Site, index: int) -> Draft:
    service = rng.choice(SERVICES)
    event = {
        "type": f"deployment_{rng.choice(_CONTROLS)}",
        "ts": _now(site, service),
        "deployment": rng.choice((f"ghost-{index}", "checkout-8", "checkout-7 ", "CHECKOUT-7")),
        "actor": "mallory",
    }
    if rng.random() < 0.5:
        event["service"] = service
    return Draft(events=[event], service=service, control=True, note=event["deployment"])


def control_known(rng: random.Random, site: Site, index: int) -> Draft:
    event = control(rng, site)
    if event is None:
        return control_unknown(rng, site, index)
    service = site.announced[event["deployment"]]["service"]
    return Draft(events=[event], expect=VALID, service=service, control=True, note=event["type"])


def _absurd_policy(rng: random.Random) -> tuple[Any, str, str]:
    policy = fuzz_policy()
    choice = rng.randrange(12)
    if choice == 0:
        policy["tick"] = rng.choice((1e-12, 1e-9, 1e-6, 1e-4))
        return policy, REJECT, f"tick {policy['tick']}"
    if choice == 1:
        policy["checks"][2]["window"] = rng.choice((1e-12, 1e-9, 1e-6))
        return policy, REJECT, f"window {policy['checks'][2]['window']}"
    if choice == 2:
        count = rng.choice((1000, 10_000))
        policy["stages"] = [
            {"traffic_percent": 100.0 * (i + 1) / count, "min_duration": 1} for i in range(count)
        ]
        return policy, REJECT, f"{count} stages"
    if choice == 3:
        policy["stages"][0]["min_duration"] = rng.choice((1e15, 1e300))
        return policy, REJECT, "min_duration"
    if choice == 4:
        policy["stages"][1]["max_duration"] = 1e300
        return policy, REJECT, "max_duration"
    if choice == 5:
        policy["deadline"] = 1e300
        return policy, REJECT, "deadline"
    if choice == 6:
        policy["stages"][0]["min_samples"] = 10**18
        return policy, REJECT, "min_samples"
    if choice == 7:
        policy["checks"][2]["min_windows"] = 10**12
        return policy, REJECT, "min_windows"
    if choice == 8:
        policy["guards"] = {"baseline_drift": {"cooldown": 1e15}}
        return policy, REJECT, "cooldown"
    if choice == 9:
        field_, value, expect = rng.choice(
            (
                ("alpha", 1e-300, REJECT),
                ("description", "d" * 10**5, REJECT),
                ("advance_confidence", 0.5 + 1e-16, ANY),
            )
        )
        policy[field_] = value
        return policy, expect, field_
    if choice == 10:
        policy["checks"][0]["tolerance"] = "@@inf@@"
        return policy, REJECT, "tolerance Infinity"
    policy["checks"][1].update(quantile=1e-12, weight=1e-300)
    return policy, ANY, "quantile and weight"


def absurd_policy(rng: random.Random, site: Site, index: int) -> Draft:
    event = announcement(rng, site, index)
    event["policy"], expect, label = _absurd_policy(rng)
    splices = {'"@@inf@@"': rng.choice((b"Infinity", b"1e999"))}
    return _draft(event, True, expect, splices=splices, note=label)


def new_announcement(rng: random.Random, site: Site, index: int) -> Draft:
    event = announcement(rng, site, index)
    return _draft(event, True, VALID, note=event["service"])


def heartbeat(rng: random.Random, site: Site, index: int) -> Draft:
    service = rng.choice(SERVICES)
    event: dict[str, Any] = {"type": "heartbeat", "ts": _now(site, service), "service": service}
    roll = rng.random()
    if roll < 0.5:
        return _draft(event, True, VALID, note="now")
    if roll < 0.75:
        event["ts"] += rng.choice((MAX_SKEW, 3 * 86_400.0, 10 * _YEAR))
        return _draft(event, True, ANY, note="ahead")
    event[rng.choice(("ts", "service"))] = rng.choice(_WRONG["name"])
    return _draft(event, True, REJECT, note="wrong field")


def redelivery(rng: random.Random, site: Site, index: int) -> Draft:
    if not site.applied:
        return random_json(rng, site, index)
    service, topic = rng.choice(sorted(site.applied))
    offset = rng.randint(9, site.applied[(service, topic)])
    # The worker applied that offset already, so it must skip the message whatever it holds;
    # replay has no offsets and reads a line like any other.
    if rng.random() < 0.5:
        events = [telemetry(rng, site, service=service)]
    else:
        events = canary_errors(site, service, 20, lambda i: site.now)
    return Draft(
        events=events,
        expect=ANY,
        expect_processor=REJECT,
        service=service,
        keep_key=True,
        control=topic == DEPLOYMENTS_TOPIC,
        single=len(events) == 1,
        offset=offset,
        note=f"offset {offset} again",
    )


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice(
            (0, -1, 2**53 + 1, 1.5e-300, "", "request", "\u0000", True, None, rng.random())
        )
    if roll < 0.75:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ("type", "ts", "service", "version", "deployment", "k", "")
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def random_json(rng: random.Random, site: Site, index: int) -> Draft:
    value = _random_value(rng)
    return Draft(events=[value], service=rng.choice(SERVICES), single=True, note="random")


# -------------------------------------------------------------------- byte-level


def _valid_bytes(rng: random.Random, site: Site, base: BaseStream, index: int) -> bytes:
    if rng.random() < 0.5:
        return rng.choice(base.messages).value
    event, _ = any_event(rng, site, index)
    return orjson.dumps(event)


def bit_flip(rng: random.Random, site: Site, index: int, base: BaseStream) -> Draft:
    data = bytearray(_valid_bytes(rng, site, base, index))
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(data))
        data[position] ^= 1 << rng.randrange(8)
    return Draft(raw=bytes(data), expect=ANY, service=rng.choice(SERVICES))


def truncate_bytes(rng: random.Random, site: Site, index: int, base: BaseStream) -> Draft:
    data = _valid_bytes(rng, site, base, index)
    return Draft(raw=data[: rng.randrange(len(data))], expect=ANY, service=rng.choice(SERVICES))


def splice(rng: random.Random, site: Site, index: int, base: BaseStream) -> Draft:
    first = _valid_bytes(rng, site, base, index)
    second = _valid_bytes(rng, site, base, index)
    data = first[: rng.randrange(len(first) + 1)] + second[rng.randrange(len(second)) :]
    return Draft(raw=data, expect=ANY, service=rng.choice(SERVICES))


def byte_noise(rng: random.Random, site: Site, index: int, base: BaseStream) -> Draft:
    data = bytearray(_valid_bytes(rng, site, base, index))
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        roll = rng.random()
        if roll < 0.4:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif roll < 0.7:
            del data[at : at + rng.randint(1, 16)]
        else:
            data[at:at] = data[at : at + rng.randint(1, 64)] * rng.randint(1, 3)
    return Draft(raw=bytes(data), expect=ANY, service=rng.choice(SERVICES))


# -------------------------------------------------------------------- registry

_Structured = Callable[[random.Random, Site, int], Draft]
_Bytes = Callable[[random.Random, Site, int, BaseStream], Draft]

# name -> (relative weight, mutator, works on bytes). Heavy inputs (big arrays, 600 kB
# strings) are rare so that a run's time goes to variety rather than to a few giants.
MUTATORS: dict[str, tuple[float, _Structured | _Bytes, bool]] = {
    "wrong_type": (10, wrong_type, False),
    "nan_token": (3, nan_token, False),
    "absurd_number": (6, absurd_number, False),
    "unknown_type": (3, unknown_type, False),
    "unknown_version": (3, unknown_version, False),
    "missing_field": (5, missing_field, False),
    "extra_fields": (3, extra_fields, False),
    "long_string": (1.5, long_string, False),
    "deep_nesting": (2, deep_nesting, False),
    "big_array": (0.4, big_array, False),
    "mixed_array": (4, mixed_array, False),
    "invalid_utf8": (2, invalid_utf8, False),
    "truncated_json": (3, truncated_json, False),
    "ts_future": (5, ts_future, False),
    "ts_past": (3, ts_past, False),
    "ts_late": (2, ts_late, False),
    "ts_boundary": (3, ts_boundary, False),
    "burst_past": (2, burst_past, False),
    "burst_future": (2, burst_future, False),
    "burst_valid": (1, burst_valid, False),
    "key_mismatch": (3, key_mismatch, False),
    "resent_announcement": (3, resent_announcement, False),
    "control_unknown": (2, control_unknown, False),
    "control_known": (1.5, control_known, False),
    "absurd_policy": (2, absurd_policy, False),
    "new_announcement": (1, new_announcement, False),
    "heartbeat": (1.5, heartbeat, False),
    "redelivery": (2, redelivery, False),
    "random_json": (2, random_json, False),
    "bit_flip": (5, bit_flip, True),
    "truncate_bytes": (2, truncate_bytes, True),
    "splice": (2, splice, True),
    "byte_noise": (3, byte_noise, True),
}
_NAMES = list(MUTATORS)
_WEIGHTS = [MUTATORS[name][0] for name in _NAMES]


# -------------------------------------------------------------------- envelope


def _serialise(draft: Draft, rng: random.Random) -> tuple[bytes, str]:
    """The message bytes, and the expectation once wrapped (a sibling can change it)."""
    if draft.raw is not None:
        return draft.raw, draft.expect
    events = draft.events or []
    expect = draft.expect
    if draft.single and len(events) == 1:
        roll = rng.random()
        if roll < 0.65:
            value: Any = events[0]
        elif roll < 0.85:
            value = events
        else:
            value = [events[0], copy.deepcopy(events[0])]  # a sibling: per-element handling
    else:
        value = events
    data = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    for placeholder, text in draft.splices.items():
        data = data.replace(placeholder.encode(), text)
    return data, expect


def _key(rng: random.Random, draft: Draft, expect: str) -> tuple[bytes | None, str]:
    """The message key, and the worker's expectation once keyed."""
    service = draft.service
    drawn = not draft.keep_key and (service is None or rng.random() < 0.12)
    if drawn:
        choice = rng.choice(("none", "empty", "other", "ghost", "bytes", "long", "upper"))
        key = {
            "none": None,
            "empty": b"",
            "other": rng.choice(SERVICES).encode(),
            "ghost": b"ghost",
            "bytes": b"\xff\xfe",
            "long": b"k" * 300,
            "upper": (service or "checkout").upper().encode(),
        }[choice]
    else:
        key = service.encode()
    if key is None or key == b"":
        return key, expect
    try:
        keyed = key.decode("utf-8")
    except UnicodeDecodeError:
        return key, REJECT  # the worker cannot tell whose it is
    named = [e.get("service") for e in draft.events or [] if isinstance(e, dict)]
    named = [name for name in named if isinstance(name, str)]
    if named and keyed not in named:
        return key, REJECT  # only events of other services than its key's
    if drawn and expect == VALID:
        return key, ANY  # a control event naming no service, under a stranger's key
    return key, expect


def generate(base: BaseStream, seed: int, index: int) -> Fuzzed:
    """Input ``index`` of run ``seed``: the same bytes, key and position on every call."""
    rng = random.Random(f"canarystream-fuzz:{seed}:{index}")
    position = rng.randrange(len(base.messages) + 1)
    site = base.sites[position]
    name = rng.choices(_NAMES, _WEIGHTS)[0]
    _, mutate, on_bytes = MUTATORS[name]
    draft = mutate(rng, site, index, base) if on_bytes else mutate(rng, site, index)  # type: ignore[call-arg]
    payload, expect = _serialise(draft, rng)
    key, expect_processor = _key(rng, draft, expect)
    if draft.expect_processor is not None:
        expect_processor = draft.expect_processor
    topic = DEPLOYMENTS_TOPIC if draft.control else TELEMETRY_TOPIC
    if rng.random() < 0.15:
        topic = TELEMETRY_TOPIC if topic == DEPLOYMENTS_TOPIC else DEPLOYMENTS_TOPIC
    if draft.offset is not None:
        offset = draft.offset
        topic = DEPLOYMENTS_TOPIC if draft.control else TELEMETRY_TOPIC
    else:
        offset = site.offsets.get(topic, 8) + 1
    keyed = key.decode("utf-8", "replace") if key else ""
    partition = PARTITIONS.get(keyed, rng.randrange(12))
    return Fuzzed(
        seed=seed,
        index=index,
        mutator=name,
        position=position,
        payload=payload,
        key=key,
        topic=topic,
        partition=partition,
        offset=offset,
        expect={"processor": expect_processor, "replay": expect},
        merge=rng.random() < 0.25,
        note=draft.note,
    )
