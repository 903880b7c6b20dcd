"""Atomic file output: a temporary file in the target's folder, fsync, then rename.

A reader never sees a half-written file, and a killed writer leaves at most a
hidden ``.<name>.*.tmp`` file, never a truncated result. Files get the mode a
plain ``open()`` would give them (``0666 & ~umask``), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Context manager yielding a binary file; on success it replaces ``path`` atomically.

    On any exception (including KeyboardInterrupt) the temporary file is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_writer(path) as fh:
        fh.write(data)
    return Path(path)


def leftover_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files an interrupted atomic write may have left in ``folder`` (recursive)."""
    return sorted(p for p in Path(folder).rglob(f".*{TMP_SUFFIX}") if p.is_file())
