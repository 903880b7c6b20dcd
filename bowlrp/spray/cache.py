"""An on-disk cache of SpRAy's stages: HDF5 files named by a hash of their inputs.

SpRAy is a chain of stages (pooling -> k-NN affinity -> Laplacian
eigendecomposition -> clusterings / embeddings). Each stage's result depends
only on its input and its parameters, so its **key** is a hash of the key of
the stage before it (or of the input arrays themselves) and of its own
parameters: ``key = sha256(parent key, stage name, JSON of the parameters)``.
Changing a clustering parameter changes only the keys below the
eigendecomposition, so a rerun reads the eigenvectors back instead of solving
the eigenproblem again — the idea of CoRelAy's ``HashedHDF5`` storage.

Layout: one directory; one HDF5 file per stage result, named
``<stage>-<first 40 hex digits of the key>.h5``, holding the result's arrays
as datasets and, as attributes, ``bowlrp_spray_cache`` (the format version),
``stage``, ``key`` (the full hash) and ``params`` (JSON). One file per entry
(rather than one HDF5 file with a group per entry) makes every write atomic
(written beside, renamed into place: :mod:`bowlrp._utils.atomic`), so an
interrupted run or two runs at once never leave a half-written cache that
breaks the next one. No pickles: arrays and JSON only.

Robustness: an entry that cannot be read, or that is not one of ours (no
marker, another key), is ignored with a :class:`CacheWarning` and the stage is
computed again; a file that is not ours is never overwritten or removed (the
result is then simply not cached). A cache path that exists and is not a
directory turns the cache off with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np

from .._utils.atomic import TEMP_SUFFIX, file_mode, temporary_prefix

__all__ = ["CACHE_FORMAT", "CacheWarning", "StageCache", "array_digest", "stage_key"]

CACHE_FORMAT = 1
_MARK = "bowlrp_spray_cache"


class CacheWarning(UserWarning):
    """A cache entry or directory could not be used; the stage is computed instead."""


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 (hex) of arrays' dtypes, shapes and bytes (C order): the key of an input."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def stage_key(parent: str, stage: str, params: dict) -> str:
    """``sha256(parent, stage, JSON(params))``: the key of a stage given its input's key."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(f"{parent}\0{stage}\0{text}".encode()).hexdigest()


class StageCache:
    """A directory of cached stage results (see the module docstring).

    Parameters
    ----------
    directory : path or None
        Created when the first result is written. None: a cache that stores
        nothing (every ``get`` misses).

    Attributes
    ----------
    hits, misses : dict stage -> int
        Counts of this object's look-ups, for reports and tests.
    """

    def __init__(self, directory: str | os.PathLike | None):
        self.directory = None if directory is None else Path(directory)
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}
        if self.directory is not None and self.directory.exists() and not self.directory.is_dir():
            warnings.warn(
                f"SpRAy cache {self.directory} exists and is not a directory: not caching; "
                "give --cache a directory",
                CacheWarning,
                stacklevel=3,
            )
            self.directory = None

    def path(self, stage: str, key: str) -> Path | None:
        """The file of a stage result (None without a directory)."""
        return None if self.directory is None else self.directory / f"{stage}-{key[:40]}.h5"

    def get(self, stage: str, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored for ``(stage, key)``, or None (missing, unreadable, not ours)."""
        path = self.path(stage, key)
        found = None
        if path is not None and path.is_file():
            try:
                with h5py.File(path, "r") as f:
                    if self._owned(f, stage, key):
                        found = {name: f[name][()] for name in f.keys()}
                    else:
                        self._warn(
                            path, "is not a SpRAy cache entry for this input; computing the stage again"
                        )
            except Exception as exc:  # noqa: BLE001 - a corrupt cache never stops an analysis
                self._warn(path, f"cannot be read ({type(exc).__name__}: {exc}); computing the stage again")
        counts = self.hits if found is not None else self.misses
        counts[stage] = counts.get(stage, 0) + 1
        return found

    def put(self, stage: str, key: str, params: dict, arrays: dict[str, np.ndarray]) -> None:
        """Store ``arrays`` for ``(stage, key)`` atomically; never replaces a file that is not ours."""
        path = self.path(stage, key)
        if path is None:
            return
        if path.exists() and not self._is_ours(path):
            self._warn(path, "is not ours: left as it is, the result is not cached")
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
            os.close(fd)
            try:
                with h5py.File(tmp, "w") as f:
                    f.attrs[_MARK] = CACHE_FORMAT
                    f.attrs["stage"] = stage
                    f.attrs["key"] = key
                    f.attrs["params"] = json.dumps(params, sort_keys=True, default=str)
                    for name, value in arrays.items():
                        f.create_dataset(name, data=np.asarray(value))
                os.chmod(tmp, file_mode())
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as exc:  # a read-only or full disk: the analysis goes on uncached
            self._warn(path, f"cannot be written ({exc}); the result is not cached")

    @staticmethod
    def _owned(f: h5py.File, stage: str, key: str) -> bool:
        a = f.attrs
        return (
            int(a.get(_MARK, -1)) == CACHE_FORMAT
            and str(a.get("stage", "")) == stage
            and str(a.get("key", "")) == key
        )

    @staticmethod
    def _is_ours(path: Path) -> bool:
        """True for a readable HDF5 file bearing our marker (ours to replace, e.g. when corrupt data)."""
        try:
            with h5py.File(path, "r") as f:
                return _MARK in f.attrs
        except Exception:  # noqa: BLE001 - unreadable: cannot tell, so not ours
            return False

    @staticmethod
    def _warn(path: Path, what: str) -> None:
        warnings.warn(f"SpRAy cache entry {path} {what}", CacheWarning, stacklevel=4)
