"""The training store: a data set's float32 feature vectors in one Zarr array, written in blocks by tasks.

Training on Dask (:mod:`bowlrp.runs.train_dask`) encodes images as tasks; each
task writes its block of rows itself, so the driver never holds more than the
run's bookkeeping and a run killed at any moment resumes where it stopped::

    <store>/zarr.json     attributes: format, version, fingerprint, rows_per_block
    <store>/features      (n, d) float32, chunks (rows_per_block, d): one block per task
    <store>/done          (n_blocks,) uint8, chunks (1,): 1 once a block's rows are written

Writing a block: its rows (exactly one chunk, so one writer per chunk), then its
``done`` element (its own chunk). zarr's local store writes every chunk to a
temporary file and renames it, so a block is either absent, or whole; a block
without its marker is computed again by the next run.

A store belongs to one training: the ``fingerprint`` (the fitted extractors and
vocabularies, the images' paths, sizes and modification times, the shape)
must match or the run is refused (:class:`TrainingStoreMismatch`): features of
another config or data set are never reused or overwritten. The conventions
of :mod:`bowlrp.runs.store` hold: a local store is locked for the run
(:func:`~bowlrp.runs.store.store_lock`), holds only its own files (no link, no
special file: :func:`~bowlrp.runs.store.check_store_tree`), a folder that is
not a Zarr store or a Zarr store of something else is refused, and the arrays'
metadata are checked (:func:`~bowlrp.runs.store_arrays.checked_array`) before
they are read. :func:`remove_training_store` removes only the store's own names.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._utils.validation import display_path
from ..exceptions import BowlrpError
from .store import StoreError, StoreMismatch, check_store_tree, is_local
from .store_arrays import StoreArrayError, checked_array

FORMAT = "bowlrp-training-store"
VERSION = 1
FEATURES, DONE = "features", "done"
#: the names a training store consists of (all :func:`remove_training_store` removes)
OWN_NAMES = ("zarr.json", FEATURES, DONE)


class TrainingStoreMismatch(StoreMismatch):
    """A training store holds the features of another training (config, images or vocabularies)."""


class TrainingStoreError(StoreError):
    """A training store cannot be used (not one, or its arrays are not what bowlrp writes)."""


def _local(location) -> Path | None:
    text = str(os.fspath(location))
    if not is_local(text):
        return None
    return Path(os.path.realpath(text[len("file://") :] if text.startswith("file://") else text))


def images_fingerprint(images) -> str:
    """SHA-256 over the images' paths, sizes and modification times (in order); arrays by content."""
    digest = hashlib.sha256()
    for image in images:
        if isinstance(image, (str, os.PathLike)):
            st = os.stat(image)
            digest.update(json.dumps([os.fspath(image), st.st_size, st.st_mtime_ns]).encode())
        else:
            array = np.ascontiguousarray(image)
            digest.update(json.dumps([array.shape, str(array.dtype)]).encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


@dataclass
class TrainingStore:
    """A training store opened by :meth:`create` (the driver) or :meth:`open` (a task).

    Attributes
    ----------
    location : str
    root : zarr.Group
    n, d : int
        Rows (images) and columns (features).
    rows_per_block : int
    """

    location: str
    root: object
    n: int
    d: int
    rows_per_block: int

    @property
    def n_blocks(self) -> int:
        return -(-self.n // self.rows_per_block)

    def block_rows(self, block: int) -> tuple[int, int]:
        """``(start, stop)`` of block ``block``."""
        start = block * self.rows_per_block
        return start, min(self.n, start + self.rows_per_block)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def create(cls, location, fingerprint: dict, n: int, d: int, rows_per_block: int) -> TrainingStore:
        """Open ``location`` for a training with ``fingerprint``, creating it if needed.

        Call it holding :func:`~bowlrp.runs.store.store_lock` (which refuses a file, a
        folder that is not a Zarr store, and links among the store's own entries).

        Raises
        ------
        TrainingStoreMismatch
            The store holds the features of another training (nothing is changed).
        TrainingStoreError
            ``location`` is a Zarr store of something else, or its arrays are not
            what bowlrp writes.
        """
        import zarr  # only for stores: zarr and its codecs load in ~0.5 s

        path = _local(location)
        if path is not None:
            check_store_tree(path)
        key = json.loads(json.dumps({**fingerprint, "n": int(n), "d": int(d)}, default=str))
        root = zarr.open_group(str(path) if path is not None else str(location), mode="a")
        attrs = dict(root.attrs)
        shown = display_path(location)
        if attrs.get("format") != FORMAT:
            with warnings.catch_warnings():  # the run's lock file is no Zarr node: not news
                warnings.filterwarnings("ignore", message="Object at .* is not recognized")
                members = any(True for _ in root.keys())
            if attrs or members:
                raise TrainingStoreError(
                    f"{shown} is a Zarr store but not a bowlrp training store; "
                    "choose another --store (e.g. model.pkl.features.zarr)"
                )
        elif attrs.get("fingerprint") != key or attrs.get("rows_per_block") != rows_per_block:
            old = attrs.get("fingerprint") or {}
            changed = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
            if attrs.get("rows_per_block") != rows_per_block:
                changed.append("rows_per_block")
            raise TrainingStoreMismatch(
                f"{shown} holds the features of another training (differs in {', '.join(changed)}); "
                "choose another --store, or remove that store if it is yours"
            )
        if attrs.get("format") != FORMAT:
            root.create_array(
                FEATURES, shape=(n, d), dtype="float32", chunks=(rows_per_block, d), fill_value=0.0
            )
            root.create_array(
                DONE, shape=(-(-n // rows_per_block),), dtype="uint8", chunks=(1,), fill_value=0
            )
            root.update_attributes(
                {"format": FORMAT, "version": VERSION, "fingerprint": key, "rows_per_block": rows_per_block}
            )
        store = cls(str(os.fspath(location)), root, int(n), int(d), int(rows_per_block))
        store._check_arrays()
        return store

    @classmethod
    def open(cls, location) -> TrainingStore:
        """Open an existing training store for a task (``r+``): checks its format and arrays."""
        import zarr  # only for stores: zarr and its codecs load in ~0.5 s

        path = _local(location)
        if path is not None:
            check_store_tree(path, deep=False)
        try:
            root = zarr.open_group(str(path) if path is not None else str(location), mode="r+")
            attrs = dict(root.attrs)
        except (FileNotFoundError, KeyError, ValueError, OSError) as exc:
            raise TrainingStoreError(
                f"cannot open training store {display_path(location)}: {str(exc).splitlines()[0]}"
            ) from None
        if attrs.get("format") != FORMAT:
            raise TrainingStoreError(f"{display_path(location)} is not a bowlrp training store")
        fp = attrs.get("fingerprint") or {}
        store = cls(str(os.fspath(location)), root, int(fp["n"]), int(fp["d"]), int(attrs["rows_per_block"]))
        store._check_arrays()
        return store

    def _check_arrays(self) -> None:
        where = display_path(self.location.rstrip("/"))
        try:
            self.features = checked_array(
                self.root,
                FEATURES,
                (self.n, self.d),
                "float32",
                f"{where}/{FEATURES}",
                chunks=(self.rows_per_block, self.d),
            )
            self.done = checked_array(
                self.root, DONE, (self.n_blocks,), "uint8", f"{where}/{DONE}", chunks=(1,)
            )
        except StoreArrayError as exc:
            raise TrainingStoreError(
                str(exc).replace("explain the image again", "remove the store")
            ) from None

    # -- blocks --------------------------------------------------------------------------------
    def done_blocks(self) -> np.ndarray:
        """(n_blocks,) bool: which blocks are written."""
        return np.asarray(self.done[:]) == 1

    def write_block(self, block: int, rows: np.ndarray) -> None:
        """Write block ``block``'s rows (float32), then its ``done`` marker."""
        start, stop = self.block_rows(block)
        rows = np.asarray(rows, dtype=np.float32)
        if rows.shape != (stop - start, self.d):
            raise ValueError(f"block {block} takes rows of shape {(stop - start, self.d)}, got {rows.shape}")
        self.features[start:stop] = rows
        self.done[block] = 1

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` (float32, (stop - start, d)); every one must be written."""
        stop = self.n if stop is None else stop
        first, last = start // self.rows_per_block, -(-stop // self.rows_per_block)
        if not self.done_blocks()[first:last].all():
            raise TrainingStoreError(
                f"{display_path(self.location)}: rows {start}:{stop} are not all written; "
                "train again to finish them"
            )
        return np.asarray(self.features[start:stop])


def remove_training_store(location) -> bool:
    """Remove a local training store's own names (``zarr.json``, ``features``, ``done``), then its folder.

    Call it after the run's lock is released. The store is checked first
    (:func:`~bowlrp.runs.store.check_store_tree`: no link, no special file) and
    must carry the training store's format; anything else in the folder stays,
    and so does the folder then. Stores behind URLs are left alone.

    Returns
    -------
    bool
        True if the folder is gone.
    """
    path = _local(location)
    if path is None or not path.is_dir():
        return False
    check_store_tree(path)
    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    if attrs.get("format") != FORMAT:
        raise BowlrpError(f"{display_path(path)} is not a bowlrp training store; it was left alone")
    for name in (FEATURES, DONE):
        if (path / name).is_dir():
            shutil.rmtree(path / name)
    (path / "zarr.json").unlink(missing_ok=True)
    try:
        path.rmdir()
    except OSError:
        return False
    return True
