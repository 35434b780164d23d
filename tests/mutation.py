"""Support of ``make mutation``: the staged configuration, and a pytest plugin for mutmut.

``python -m tests.mutation PYPROJECT MODULE...`` points ``only_mutate`` in the
``[tool.mutmut]`` section of a staged copy of ``pyproject.toml`` at the given modules
(a directory stands for every file in it), so that only they carry mutmut's trampolines and
the tests run at full speed elsewhere. ``python -m tests.mutation --summary`` reads the output
of ``mutmut results --all true`` and counts each module's mutants by status.
``-p tests.mutation`` (``pytest_add_cli_args``) loads
the plugin: mutmut 3.7, the newest release that installs beside faust-streaming (both pin
click), reads ``item._nodeid``, which pytest 9 no longer sets. The plugin also empties the
``functools`` caches of canarystream and of the tests when a session starts: mutmut forks each
mutant's process after its clean run, whose cached values (the shared ratio grids, the rollouts
``tests/engine/test_state.py`` builds once) would otherwise hide the mutants of the code that
computes them, and runs its clean session in the process of its statistics session, whose
cached rollouts hold grids the clean session's cache no longer has. (Not before every test:
restored rollouts are checked to share the grids of rollouts built by earlier tests.) Only the
first test of a session to need a cached value reaches the code that computes it, so mutmut
runs only such tests on those mutants.

>>> only_mutate_line(["canarystream/engine/*", "canarystream/contracts/signing.py"])
'only_mutate = ["canarystream/engine/*", "canarystream/contracts/signing.py"]'
>>> lines = ["  canarystream.a.x_f__mutmut_1: killed", "  canarystream.a.x_f__mutmut_2: survived"]
>>> print(summary(lines))
module          killed  survived  timeout  no tests  other  score
canarystream.a       1         1        0         0      0  50.0%
"""

from __future__ import annotations

import functools
import json
import re
import sys
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_ONLY_MUTATE = re.compile(r"^only_mutate = \[[^\]]*\]", re.MULTILINE)


def pytest_sessionstart(session: Any) -> None:
    """Empty every module-level ``functools`` cache of canarystream and of the tests (see the
    module doc)."""
    for name, module in list(sys.modules.items()):
        if name.startswith(("canarystream", "tests")) and module is not None:
            for value in list(vars(module).values()):
                if isinstance(value, functools._lru_cache_wrapper):
                    value.cache_clear()


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Give each item the ``_nodeid`` that mutmut's statistics hook reads."""
    for item in items:
        if not hasattr(item, "_nodeid"):
            item._nodeid = item.nodeid


def only_mutate_line(globs: list[str]) -> str:
    """The TOML line that sets ``only_mutate``."""
    return f"only_mutate = [{', '.join(json.dumps(glob) for glob in globs)}]"


def configure(pyproject: Path, modules: list[str]) -> list[str]:
    """Set ``only_mutate`` in ``pyproject`` (a staged copy) to ``modules``; return the globs."""
    root = pyproject.parent
    globs = []
    for module in modules:
        path = root / module
        if not path.exists() or not module.startswith("canarystream/"):
            raise SystemExit(f"mutation: {module!r} is not a module or package of canarystream/")
        globs.append(module.rstrip("/") + "/*" if path.is_dir() else module)
    text, count = _ONLY_MUTATE.subn(only_mutate_line(globs), pyproject.read_text(), count=1)
    if count != 1:
        raise SystemExit(f"mutation: no only_mutate in the [tool.mutmut] section of {pyproject}")
    pyproject.write_text(text)
    assert tomllib.loads(text)["tool"]["mutmut"]["only_mutate"] == globs
    return globs


_COLUMNS = ("killed", "survived", "timeout", "no tests")


def summary(lines: Iterable[str]) -> str:
    """Mutants by module and status from ``mutmut results --all true``; the score is killed
    (timeouts included) over those tests reached."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for line in lines:
        name, _, status = line.strip().rpartition(": ")
        if "__mutmut_" in name:
            module = name.split(".x", 1)[0]
            counts[module][status if status in _COLUMNS else "other"] += 1
    width = max([len("module"), *map(len, counts)])
    rows = [f"{'module':<{width}}  killed  survived  timeout  no tests  other  score"]
    for module, count in sorted(counts.items()):
        caught = count["killed"] + count["timeout"]
        reached = caught + count["survived"]
        score = f"{100 * caught / reached:.1f}%" if reached else "-"
        rows.append(
            f"{module:<{width}}  {count['killed']:>6}  {count['survived']:>8}  "
            f"{count['timeout']:>7}  {count['no tests']:>8}  {count['other']:>5}  {score:>5}"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        print(summary(sys.stdin))
    elif len(sys.argv) >= 3:
        print("mutating:", " ".join(configure(Path(sys.argv[1]), sys.argv[2:])))
    else:
        raise SystemExit("usage: python -m tests.mutation PYPROJECT MODULE... | --summary")
