"""Every exported metric follows Prometheus's naming conventions and the README lists it,
with its type and labels."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from canarystream.streaming.sensors import PREFIX, FaustSensors
from tests.ops.catalog import README, Family, families

_ROW = re.compile(r"^\| `(canarystream_\w+)` \| (\w+) \|([^|]*)\|", re.MULTILINE)


def _readme_rows() -> dict[str, tuple[str, tuple[str, ...]]]:
    return {
        name: (kind, tuple(re.findall(r"`(\w+)`", labels)))
        for name, kind, labels in _ROW.findall(README.read_text())
    }


def _by_name() -> dict[str, Family]:
    found: dict[str, Family] = {}
    for family in families():
        seen = found.setdefault(family.name, family)
        assert (seen.type, seen.labels) == (family.type, family.labels), family.name
    return found


def test_names_carry_the_prefix_base_units_and_type_suffixes() -> None:
    for family in families():
        name = family.name
        assert re.fullmatch(r"canarystream_[a-z0-9_]+", name), name
        assert not re.search(r"_(ms|milliseconds|percent|pct|kb|mb)(_|$)", name), name
        if family.type == "counter":
            assert name.endswith("_total") and not name.endswith("_total_total"), name
        else:
            assert not name.endswith("_total"), name
        if family.type == "histogram":
            assert name.endswith(("_seconds", "_bytes")), name


def test_faust_sensors_have_a_prefix_of_their_own() -> None:
    registry = CollectorRegistry()
    FaustSensors(registry)
    faust = {name for names in registry._collector_to_names.values() for name in names}
    assert faust and all(name.startswith(PREFIX) for name in faust)
    ours = [f.name for f in families() if f.name not in faust and not f.name.endswith("_created")]
    assert not [name for name in ours if name.startswith(PREFIX)]


def test_the_readme_lists_every_metric_with_its_type_and_labels() -> None:
    rows = _readme_rows()
    exported = _by_name()
    assert set(rows) == set(exported), (
        f"missing from README: {sorted(set(exported) - set(rows))}; "
        f"listed but not exported: {sorted(set(rows) - set(exported))}"
    )
    for name, family in exported.items():
        assert rows[name] == (family.type, family.labels), name


def test_the_readme_names_no_metric_that_does_not_exist() -> None:
    exported = {s for f in families() for s in f.series} | {f.name for f in families()}
    mentioned = set(re.findall(r"\bcanarystream_[a-z0-9_]*[a-z0-9]\b", README.read_text()))
    commands = {"canarystream_demo"}  # not a metric
    assert mentioned - exported - commands == set()
