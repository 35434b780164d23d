"""The actuators' public API: ``__all__`` sorted as ruff keeps it, naming every public member."""

from __future__ import annotations

import importlib
import re
from types import ModuleType

import pytest

MODULES = [
    "canarystream.actuators",
    "canarystream.actuators.base",
    "canarystream.actuators.executor",
    "canarystream.actuators.fencing",
    "canarystream.actuators.metrics",
    "canarystream.actuators.routers",
    "canarystream.actuators.signing",
]


def _sort_key(name: str) -> tuple[int, list[str | int]]:
    group = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return group, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_exists(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__, key=_sort_key)
    assert all(hasattr(module, member) for member in module.__all__)


@pytest.mark.parametrize("name", ["canarystream.actuators", "canarystream.actuators.routers"])
def test_packages_export_exactly_their_public_members(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        key
        for key, value in vars(module).items()
        if not key.startswith("_")
        and not isinstance(value, ModuleType)
        and type(value).__module__ != "__future__"
    }
    assert set(module.__all__) == public
