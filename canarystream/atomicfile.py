"""Replacing a file so that it holds its old content or its new one, never a part of either.

The new content is streamed into a temporary file beside the target (same directory, so the
same file system) and renamed over it on :meth:`AtomicFile.commit`; the rename is atomic. An
interrupted or failed write leaves the target as it was and removes the temporary file.
The project's one atomic write: :func:`write_atomically` for whole contents (the backends'
files), :class:`AtomicFile` for streamed ones (replay's output).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = ["AtomicFile", "write_atomically"]


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class AtomicFile:
    """A binary file written beside ``path`` and renamed over it when committed.

    A symbolic link at ``path`` is followed: the file it points to is replaced and the link
    stays. The new file gets ``mode`` if given, else keeps the replaced one's permission bits
    (a new one gets ``0o666`` less the umask). Leaving a ``with`` block without :meth:`commit`
    discards the new content.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with AtomicFile(target) as out:
    ...     _ = out.write(b"new")
    ...     out.commit()
    >>> target.read_bytes()
    b'new'
    """

    def __init__(self, path: str | Path, mode: int | None = None) -> None:
        self.path = Path(os.path.realpath(path))
        if mode is not None:
            self._mode = mode
        else:
            try:
                self._mode = stat.S_IMODE(self.path.stat().st_mode)
            except FileNotFoundError:
                self._mode = _default_mode()
        fd, temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        self.temporary = Path(temporary)
        self.handle: BinaryIO = os.fdopen(fd, "wb")
        self.done = False

    def write(self, data: bytes) -> int:
        """Append ``data`` to the new content."""
        return self.handle.write(data)

    def commit(self) -> None:
        """Make the new content the file's: flush, sync to disk, rename over the target."""
        if self.done:
            return
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.chmod(self.temporary, self._mode)
            os.replace(self.temporary, self.path)
        except BaseException:
            self.discard()
            raise
        self.done = True

    def discard(self) -> None:
        """Drop the new content; the target stays as it was."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(FileNotFoundError):
            self.temporary.unlink()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.discard()  # after a commit, nothing is left to discard


def write_atomically(path: str | Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` through an :class:`AtomicFile`, creating its folder.

    ``mode`` as for :class:`AtomicFile`; raises ``OSError`` (the target is then unchanged).
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(path, mode) as out:
        out.write(data)
        out.commit()
