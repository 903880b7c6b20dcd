"""Memory-mapped feature matrices that do not accumulate in a process's resident memory.

A pass over a memory-mapped ``.npy`` (a data set's float32 features, 6.6 GB for
PASCAL VOC 2007's Fisher vectors) maps every page it reads or writes into the
process: its resident set grows to the whole file, although those pages are file
backed and the kernel may drop them. :func:`release_pages` tells the kernel that
the process is done with the pages it has touched (``madvise(MADV_DONTNEED)``): they
leave the process's resident set at once, their contents stay in the file (and the
page cache), and the next access maps them again. On a shared file mapping this
loses nothing, written pages included (they are flushed first).

Callers release after each block of a blocked pass (:func:`blocks`), so the resident
memory of a pass is one block, not the file::

    for start, stop in blocks(X.shape[0], X.shape[1] * X.itemsize):
        total += X[start:stop].sum()
        release_pages(X)
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np

#: Bytes of a memory-mapped array a blocked pass touches before releasing them.
BLOCK_BYTES = 1 << 27


def _memmap(array) -> np.memmap | None:
    """The :class:`numpy.memmap` that owns ``array``'s mapping (itself or a base), else None."""
    seen = 0
    while array is not None and seen < 64:  # views of views: follow ``.base`` to the memmap
        if isinstance(array, np.memmap) and isinstance(getattr(array, "_mmap", None), mmap.mmap):
            return array
        array = getattr(array, "base", None)
        seen += 1
    return None


def is_mapped(array) -> bool:
    """True when ``array`` is (a view of) a memory-mapped file."""
    return _memmap(array) is not None


def release_pages(array) -> bool:
    """Drop the pages of ``array``'s whole mapping from this process; True if it did.

    Written pages are flushed to the file first (``msync``). A no-op (False) for arrays
    in ordinary memory, for a closed mapping, for a copy-on-write mapping (mode ``"c"``,
    whose changes live only in its pages) and where the platform has no ``MADV_DONTNEED``.
    """
    owner = _memmap(array)
    if owner is None or owner.mode not in ("r", "r+", "w+") or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    found = owner._mmap  # numpy keeps the mmap there; it has no public name
    if found.closed:
        return False
    if owner.mode != "r":
        found.flush()
    found.madvise(mmap.MADV_DONTNEED)
    return True


def blocks(n: int, row_bytes: int, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges of at most ``block_bytes`` (at least one row each)."""
    step = max(1, int(block_bytes) // max(1, int(row_bytes)))
    for start in range(0, int(n), step):
        yield start, min(int(n), start + step)


def all_finite(X: np.ndarray, block_bytes: int = BLOCK_BYTES) -> bool:
    """``np.isfinite(X).all()`` in row blocks, releasing a mapped ``X``'s pages after each."""
    X = np.asarray(X)  # a memmap stays reachable through the view's base
    if X.ndim < 2:
        return bool(np.isfinite(X).all())
    mapped = is_mapped(X)
    row_bytes = X.itemsize * int(np.prod(X.shape[1:]))
    for start, stop in blocks(X.shape[0], row_bytes, block_bytes):
        if not np.isfinite(X[start:stop]).all():
            return False
        if mapped:
            release_pages(X)
    return True
