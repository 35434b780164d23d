"""What every check kind shares: durations and status sets as a policy writes them, the order
of tolerances, names, the registry of kinds, and the units a check group grows.

A refusal's text is what the policy's author reads (it reaches them through the policy's
validation error), so each is checked whole.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from canarystream.analysis.checks import (
    KINDS,
    MAX_UNITS_PER_CHECK,
    UNIT_CLASSES,
    CheckGroup,
    CheckKind,
    ErrorRateCheck,
    Gate,
    GaugeCheck,
    LatencyCheck,
    LatencyShiftCheck,
    LatencyTracker,
    ProbeCheck,
    SloErrorRateCheck,
    SloLatencyCheck,
    Tick,
    check_name,
    model_for,
)
from canarystream.analysis.checks.base import check_order, parse_duration, parse_status_set
from canarystream.analysis.cohort import CohortBucket
from canarystream.contracts.decision import Verdict

GATE = Gate(ready=True, next_share=0.5, promoting=False, alpha=0.1)


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("6m", 360.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        (" 30 s ", 30.0),
        ("45", 45.0),
        ("0", 0.0),
        (90, 90.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_durations_in_seconds(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds
    assert type(parse_duration(value)) is float


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "a duration is a number of seconds or a string like '6m'"),
        ("5x", "invalid duration '5x': use seconds or a string like '6m'"),
        ("-5s", "invalid duration '-5s': use seconds or a string like '6m'"),
        (None, "invalid duration None: use seconds or a string like '6m'"),
        (-1, "a duration cannot be negative"),
        (-0.5, "a duration cannot be negative"),
        (10**400, "the duration is too long"),
    ],
)
def test_durations_refused(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_duration(value)


# --- status sets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ranges"),
    [
        ("429,500-599", ((429, 429), (500, 599))),
        (" 429 , ,500-502 ", ((429, 429), (500, 502))),
        ("100-599", ((100, 599),)),
        ([503, 429], ((503, 503), (429, 429))),
        ([[500, 599]], ((500, 599),)),
        ((("500", " 599 "),), ((500, 599),)),
        (["500-504"], ((500, 504),)),
        (["404"], ((404, 404),)),
        (",".join(["500"] * 100), ((500, 500),) * 100),
    ],
)
def test_status_sets(value: Any, ranges: tuple[tuple[int, int], ...]) -> None:
    assert parse_status_set(value) == ranges


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, "error_statuses is a string like '500-599' or a list"),
        ({"500": 599}, "error_statuses is a string like '500-599' or a list"),
        ("", "error_statuses must name at least one status"),
        ([], "error_statuses must name at least one status"),
        (",".join(["500"] * 101), "at most 100 statuses or ranges, got 101"),
        ("5xx", "invalid status or range '5xx'"),
        ("5000", "invalid status or range '5000'"),
        ([True], "invalid status or range True"),
        ([[500, 599, 600]], "invalid status or range [500, 599, 600]"),
        ([["5000", 599]], "invalid status range ['5000', 599]"),
        ([[500, True]], "invalid status range [500, True]"),
        ([[500.0, 599]], "invalid status range [500.0, 599]"),
        ("99", "invalid status or range '99'"),
        ([99], "status range 99 must lie within 100-599"),
        ("600", "status range '600' must lie within 100-599"),
        ("500-600", "status range '500-600' must lie within 100-599"),
        ("599-500", "status range '599-500' must lie within 100-599"),
        ([[99, 200]], "status range [99, 200] must lie within 100-599"),
    ],
)
def test_status_sets_refused(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_status_set(value)


# --- tolerances and names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tolerance", "promote", "advance", "message"),
    [
        (1.0, None, 1.0, None),
        (1.1, 1.1, 1.5, None),
        (1.1, 1.5, 1.5, None),
        (1.5, None, 1.4, "advance_tolerance must be at least tolerance"),
        (1.1, 1.0, 1.5, "need tolerance <= promote_tolerance <= advance_tolerance"),
        (1.1, 1.6, 1.5, "need tolerance <= promote_tolerance <= advance_tolerance"),
    ],
)
def test_tolerances_in_order(
    tolerance: float, promote: float | None, advance: float, message: str | None
) -> None:
    if message is None:
        check_order(tolerance, promote, advance)
    else:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            check_order(tolerance, promote, advance)


def test_the_promote_tolerance_in_force() -> None:
    assert ErrorRateCheck(promote_tolerance=1.2).promote_bound() == 1.2
    assert ErrorRateCheck(tolerance=1.0, advance_tolerance=1.2).promote_bound() == 1.2
    assert ProbeCheck().promote_bound() == 2.0
    assert ProbeCheck(advance_tolerance=1.8).promote_bound() == 1.8
    assert ProbeCheck(tolerance=2.5, advance_tolerance=4).promote_bound() == 2.5
    assert LatencyShiftCheck().promote_bound() == 0.075
    assert LatencyShiftCheck(tolerance=0.0, advance_tolerance=0.05).promote_bound() == 0.05
    assert GaugeCheck(tolerance=0.3, advance_tolerance=0.5).promote_bound() == 0.3  # no default


@pytest.mark.parametrize(
    ("check", "name"),
    [
        (ErrorRateCheck(), "error_rate"),
        (ErrorRateCheck(name="errors"), "errors"),
        (LatencyCheck(), "latency-p99"),
        (LatencyCheck(quantile=0.999), "latency-p99.9"),
        (LatencyCheck(quantile=0.123456), "latency-p12.346"),
        (LatencyShiftCheck(), "latency_shift"),
        (GaugeCheck(), "gauges"),
        (GaugeCheck(metric="cpu"), "gauge-cpu"),
        (ProbeCheck(), "probes"),
        (ProbeCheck(probe="login"), "probe-login"),
        (SloErrorRateCheck(), "slo_error_rate"),
        (SloLatencyCheck(max_ms=300), "slo_latency-p99"),
        (SloLatencyCheck(max_ms=300, quantile=0.5), "slo_latency-p50"),
        (SloLatencyCheck(max_ms=300, quantile=0.987654), "slo_latency-p98.765"),
        (SloLatencyCheck(max_ms=300, name="p99 budget"), "p99 budget"),
    ],
)
def test_check_names(check: Any, name: str) -> None:
    assert check_name(check) == name
    assert CheckGroup(check, alpha=0.01, trackers={None: LatencyTracker(5.0)}).name == name


def test_what_each_kind_declares() -> None:
    assert [model.model_fields["kind"].default for model in KINDS] == [
        "error_rate",
        "latency",
        "latency_shift",
        "gauge",
        "probe",
        "slo_error_rate",
        "slo_latency",
    ]
    assert {kind.value for kind in CheckKind} == set(UNIT_CLASSES)
    for model in KINDS:
        assert model_for(model.model_fields["kind"].default) is model
        assert UNIT_CLASSES[model.unit.kind] is model.unit
    with pytest.raises(KeyError) as raised:
        model_for("apdex")
    assert raised.value.args[0] == (
        "unknown check kind 'apdex'; known: error_rate, latency, latency_shift, gauge, probe, "
        "slo_error_rate, slo_latency"
    )
    assert ErrorRateCheck(error_statuses="429").error_statuses_for_recovery() == ((429, 429),)
    assert LatencyCheck().error_statuses_for_recovery() is None
    assert GaugeCheck(window="2m").windows() == [("window", 120.0)]
    assert ErrorRateCheck().windows() == []
    assert ErrorRateCheck(breakdown="dependency").unit_dimension() == "dependency"
    assert (GaugeCheck().unit_dimension(), GaugeCheck(metric="cpu").unit_dimension()) == (
        "metric",
        "",
    )
    assert (ProbeCheck().unit_dimension(), ProbeCheck().fixed_key()) == ("", None)


# --- check groups -------------------------------------------------------------------------


def _requests(bucket: CohortBucket, field: str, value: str, n: int, status: int = 200) -> None:
    for _ in range(n):
        bucket.requests.add(50.0, status)
        bucket.slice_for(field, value).add(50.0, status)


def test_a_group_without_a_dimension_has_its_one_unit_from_the_start() -> None:
    group = CheckGroup(GaugeCheck(metric="cpu"), alpha=0.02, trackers={})

    assert list(group.units) == ["cpu"]
    assert group.units["cpu"].name == "gauge-cpu"
    assert (group.unit_alpha(), group.units["cpu"].alpha) == (0.02, 0.02)
    assert group.keys_in(CohortBucket()) == []
    assert group.to_state()["dynamic"] == ""


def test_a_breakdown_grows_a_unit_per_value_of_its_own_field() -> None:
    group = CheckGroup(ErrorRateCheck(breakdown="endpoint"), alpha=0.032, trackers={})
    assert group.units == {}
    canary, baseline = CohortBucket(), CohortBucket()
    _requests(canary, "endpoint", "/pay", 10, status=503)
    _requests(baseline, "endpoint", "/cart", 20)
    _requests(baseline, "dependency", "db", 5)

    assert group.keys_in(canary, baseline) == [("endpoint", "/cart"), ("endpoint", "/pay")]
    group.update(Tick(canary, baseline, {}, 5.0))
    assert list(group.units) == [("endpoint", "/cart"), ("endpoint", "/pay")]
    pay = group.units["endpoint", "/pay"]
    assert pay.name == "error_rate[endpoint=/pay]"
    assert pay.alpha == group.unit_alpha() == 0.032 / MAX_UNITS_PER_CHECK
    assert pay.evaluate(GATE).verdict is Verdict.INCONCLUSIVE  # 10 errors, no baseline yet
    assert group.units["endpoint", "/cart"].evaluate(GATE).verdict is Verdict.NO_DATA
    assert [e.name for e in group.evaluate(GATE)] == [
        "error_rate[endpoint=/cart]",
        "error_rate[endpoint=/pay]",
    ]


def test_gauges_grow_a_unit_per_metric_of_either_cohort() -> None:
    group = CheckGroup(GaugeCheck(), alpha=0.016, trackers={})
    canary, baseline = CohortBucket(), CohortBucket()
    canary.add_metric("queue", 3.0)
    baseline.add_metric("cpu", 0.5)
    baseline.add_metric("queue", 2.0)

    assert group.keys_in(canary, baseline) == ["cpu", "queue"]
    group.update(Tick(canary, baseline, {}, 5.0))
    assert [unit.name for unit in group.units.values()] == ["gauges[cpu]", "gauges[queue]"]
    assert group.units["queue"].samples == [1, 1]  # type: ignore[attr-defined]
    assert group.units["cpu"].alpha == 0.001


def test_a_group_stops_growing_at_its_cap_and_counts_what_it_left_out() -> None:
    group = CheckGroup(GaugeCheck(), alpha=0.016, trackers={})
    canary, baseline = CohortBucket(), CohortBucket()
    for index in range(MAX_UNITS_PER_CHECK + 3):
        canary.add_metric(f"m{index:02d}", 1.0)
    group.update(Tick(canary, baseline, {}, 5.0))

    assert list(group.units) == [f"m{index:02d}" for index in range(MAX_UNITS_PER_CHECK)]
    assert group.overflow == 3
    group.update(Tick(canary, baseline, {}, 10.0))  # counted again at every tick they appear
    assert group.overflow == 6
    assert len(group.units) == MAX_UNITS_PER_CHECK


def test_evidence_names_its_unit_and_builds_its_reason_once() -> None:
    group = CheckGroup(ProbeCheck(probe="login", critical=False), alpha=0.05, trackers={})
    (evidence,) = group.evaluate(GATE)

    assert (evidence.name, evidence.critical, evidence.verdict) == ("probe-login", False, None)
    reason = evidence.reason()
    assert evidence.reason() is reason
    assert (reason.verdict, reason.check, reason.kind, reason.critical) == (
        Verdict.NO_DATA,
        "probe-login",
        "probe",
        False,
    )


# --- probes -------------------------------------------------------------------------------


def _probes(results: dict[str, tuple[int, int]]) -> CohortBucket:
    bucket = CohortBucket()
    for probe, (ok, failed) in results.items():
        for _ in range(ok):
            bucket.add_probe(probe, True)
        for _ in range(failed):
            bucket.add_probe(probe, False)
    return bucket


def test_probes_pooled_or_one_by_name() -> None:
    bucket = _probes({"login": (7, 3), "search": (4, 1)})
    pooled = CheckGroup(ProbeCheck(), alpha=0.05, trackers={})
    login = CheckGroup(ProbeCheck(probe="login"), alpha=0.05, trackers={})
    missing = CheckGroup(ProbeCheck(probe="pay"), alpha=0.05, trackers={})
    for group in (pooled, login, missing):
        group.update(Tick(bucket, _probes({"login": (9, 1), "search": (5, 0)}), {}, 5.0))

    units = [next(iter(g.units.values())) for g in (pooled, login, missing)]
    assert [(u.events, u.exposure) for u in units] == [  # type: ignore[attr-defined]
        ([4, 1], [15, 15]),
        ([3, 1], [10, 10]),
        ([0, 0], [0, 0]),
    ]
    assert units[2].evaluate(GATE).verdict is None


def test_a_probe_unit_takes_the_check_s_tolerances() -> None:
    check = ProbeCheck(
        tolerance=1.25, advance_tolerance=5.0, advance_abs_margin=0.03, critical=False
    )
    (unit,) = CheckGroup(check, alpha=0.05, trackers={}).units.values()
    state = unit.to_state()

    assert (state["tolerance"], state["advance_tolerance"]) == (1.25, 5.0)
    assert (state["promote_tolerance"], state["abs_margin"]) == (2.0, 0.03)
    assert (state["critical"], state["alpha"], state["probe"]) == (False, 0.05, "*")
    assert state["test"]["anchors"] == [1.25, 5.0]


def test_failing_probes_fail_the_check() -> None:
    group = CheckGroup(ProbeCheck(), alpha=0.01, trackers={})
    for k in range(30):
        group.update(Tick(_probes({"login": (6, 4)}), _probes({"login": (19, 1)}), {}, 5.0 * k))
    (evidence,) = group.evaluate(GATE)

    assert evidence.verdict is Verdict.FAIL
    assert evidence.e_value is not None and evidence.e_value >= 100.0
    assert math.isclose(evidence.reason().estimate or 0.0, 8.0, rel_tol=0.3)
