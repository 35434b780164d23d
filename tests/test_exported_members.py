"""Public API: each package's ``__all__`` is sorted and names exactly its public members."""

from __future__ import annotations

import importlib
import re
from types import ModuleType

import pytest

MODULES = [
    "canarystream.actuators",
    "canarystream.actuators.routers",
    "canarystream.contracts",
    "canarystream.errors",
    "canarystream.ingest",
    "canarystream.kafka",
    "canarystream.policy",
]


def _sort_key(name: str) -> tuple[int, list[str | int]]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions and variables,
    # each group in natural order.
    group = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return group, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _public_names(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)  # submodules
        and type(value).__module__ != "__future__"  # from __future__ import annotations
    }


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted(name: str) -> None:
    exported = importlib.import_module(name).__all__
    assert exported == sorted(exported, key=_sort_key)


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exactly_the_public_members(name: str) -> None:
    module = importlib.import_module(name)
    assert set(module.__all__) == _public_names(module)
    assert len(set(module.__all__)) == len(module.__all__)
