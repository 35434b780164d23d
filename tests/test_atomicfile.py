"""One atomic write: a reader sees the old file or the new one, never a part of either."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from canarystream.atomicfile import AtomicFile, write_atomically


def test_write_atomically_creates_the_folder_and_sets_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "flags.json"
    write_atomically(path, b"{}", mode=0o644)
    assert path.read_bytes() == b"{}"
    assert path.stat().st_mode & 0o777 == 0o644
    write_atomically(path, b"[]", mode=0o600)
    assert path.read_bytes() == b"[]"
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(path.parent) == ["flags.json"]  # no temporary file left


def test_write_atomically_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "upstream.conf"
    path.write_bytes(b"old")
    path.chmod(0o640)
    write_atomically(path, b"new")
    assert (path.read_bytes(), path.stat().st_mode & 0o777) == (b"new", 0o640)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "route.yaml"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomically(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["route.yaml"]


def test_an_explicit_mode_applies_to_a_streamed_file(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    with AtomicFile(path, mode=0o600) as out:
        out.write(b"{}\n")
        out.commit()
    assert path.stat().st_mode & 0o777 == 0o600
