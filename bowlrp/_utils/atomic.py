"""Atomic file writes that honour the umask: a file appears complete or not at all.

Every output bowlrp writes goes through this module::

    atomic_write_bytes("out/a_heatmap.png", png_bytes)

    with atomic_writer("out/curves.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)

The data goes to a temporary file in the destination's directory (same file
system, so the final rename is atomic), is flushed and ``fsync``-ed, gets the
mode a plain ``open(path, "w")`` would give (``0o666 & ~umask``, i.e. 0644
under the usual umask 022; :func:`tempfile.mkstemp` alone would leave 0600),
and is renamed over ``path`` with :func:`os.replace`. If anything fails
(including Ctrl-C) the temporary file is removed and ``path`` is untouched.
Temporary names are ``.<name>.bowlrp-<8 random characters>.tmp`` beside
``<name>`` (:func:`temporary_prefix`, :func:`is_temporary`): a pattern no other
program makes, so that a run killed mid-write can remove its own leftovers
(:func:`leftover_temporaries`, given the files it writes) and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "atomic_write_bytes", "atomic_writer", "file_mode", "is_temporary", "leftover_temporaries",
    "temporary_prefix",
]  # fmt: skip

TEMP_SUFFIX = ".tmp"
TEMP_MARK = ".bowlrp-"
# .<name>.bowlrp-XXXXXXXX.tmp: tempfile's random part is 8 characters of [a-z0-9_]
_TEMPORARY = re.compile(r"\.(?P<target>.+)" + re.escape(TEMP_MARK) + r"[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX))


def file_mode() -> int:
    """Mode of a new regular file under the current umask: ``0o666 & ~umask``.

    The umask can only be read by setting it, so it is set and restored at
    once (the process-wide value is unchanged when this returns).
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temporary_prefix(path: str | os.PathLike) -> str:
    """The ``prefix`` for :func:`tempfile.mkstemp` of a temporary for ``path``
    (``suffix=TEMP_SUFFIX``): ``.<name>.bowlrp-``."""
    return f".{Path(os.fsdecode(path)).name}{TEMP_MARK}"


def temporary_target(path: str | os.PathLike) -> str | None:
    """The name of the file a bowlrp temporary was written for, or None for any other name."""
    match = _TEMPORARY.fullmatch(os.fsdecode(os.path.basename(os.fspath(path))))
    return match.group("target") if match else None


def is_temporary(path: str | os.PathLike) -> bool:
    """True for a name :func:`atomic_writer` (or a multi-file publish) gives its temporary files."""
    return temporary_target(path) is not None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike,
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    fsync: bool = True,
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    Parameters
    ----------
    path : str or PathLike (bytes paths and non-UTF-8 names work)
        The final file. Its directory must exist.
    mode : {"wb", "w"}
        Binary or text.
    encoding, newline : str or None
        Passed to :func:`open` in text mode (``encoding`` defaults to UTF-8).
    fsync : bool
        Flush the data to disk before the rename (default), so a power cut
        leaves either the old or the new file, never a truncated one.

    Yields
    ------
    file object
        Write to it; do not close it.

    Raises
    ------
    OSError
        From creating, writing or renaming; ``path`` is then unchanged and
        no temporary file is left.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(os.fsdecode(path))
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=TEMP_SUFFIX, dir=directory)
    try:
        if mode == "w":
            fh = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        else:
            fh = os.fdopen(fd, "wb")
        with fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
            os.chmod(fh.fileno(), file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_dir(directory)


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes | bytearray | memoryview, *, fsync: bool = True
) -> Path:
    """Write ``data`` to ``path`` atomically with mode ``0o666 & ~umask``; return ``path``."""
    with atomic_writer(path, "wb", fsync=fsync) as fh:
        fh.write(data)
    return Path(os.fsdecode(path))


def leftover_temporaries(outputs) -> list[Path]:
    """bowlrp's temporaries of the files ``outputs`` that an interrupted write left beside them.

    Only names of the pattern :func:`is_temporary` accepts, in the folders of
    ``outputs``, written for one of ``outputs`` (``.a.json.bowlrp-k3j9_x2q.tmp`` for
    ``a.json``) count: no other file is ever returned, and nothing is searched
    recursively or through a symbolic link.

    Parameters
    ----------
    outputs : iterable of path
        The files a run writes (or may write).

    Returns
    -------
    list of Path, sorted
    """
    wanted: dict[Path, set[str]] = {}
    for path in outputs:
        path = Path(os.fsdecode(path))
        wanted.setdefault(path.parent, set()).add(path.name)
    found = []
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if temporary_target(entry.name) in names and entry.is_file(follow_symlinks=False):
                found.append(Path(entry.path))
    return sorted(found)
