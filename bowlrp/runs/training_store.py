"""The training store: a data set's float32 feature vectors in one Zarr array, written in blocks by tasks.

Training on Dask (:mod:`bowlrp.runs.train_dask`) encodes images as tasks; each
task writes its block of rows itself, so the driver never holds more than the
run's bookkeeping and a run killed at any moment resumes where it stopped::

    <store>/zarr.json           attributes: format, version, fingerprint, rows_per_block
    <store>/vocabularies.skops  the fitted stages before the features (a bowlrp model file)
    <store>/features            (n, d) float32, chunks (rows_per_block, d): one block per task
    <store>/done                (n_blocks,) uint8, chunks (1,): 1 once a block's rows are written

A training fills it in three steps. :func:`claim_training_store` checks the run's
``config`` (the pipeline's channels and seed) and ``images`` against the store
*before anything is fitted*, and starts a new store with them. The vocabularies are
fitted once: :func:`save_vocabularies` writes the pipeline with its fitted
extractors and vocabularies (no classifier) with :func:`bowlrp.save` (skops, the
exact type allowlist of :mod:`bowlrp.model_files`, never a pickle), and
:func:`record_vocabularies` creates the arrays and completes the fingerprint with
the stages' hash (``stages``) and the feature size ``d``. A rerun into the same store
finds ``stages`` recorded and reads the vocabularies back (:func:`load_vocabularies`:
an allowlisted load, a fitted :class:`~bowlrp.pipeline.Pipeline` whose stages hash
to ``stages``, else a one-line :class:`TrainingStoreError`) instead of fitting them
again: a refit that differed in the last bits would no longer match the features
already written.

Writing a block: its rows (exactly one chunk, so one writer per chunk), then its
``done`` element (its own chunk). zarr's local store writes every chunk to a
temporary file and renames it, so a block is either absent, or whole; a block
without its marker is computed again by the next run.

A store belongs to one training: the ``fingerprint`` (the config, the fitted
extractors and vocabularies, the images' paths, sizes and modification times, the shape)
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
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from .._utils.atomic import leftover_temporaries
from .._utils.validation import display_path
from ..exceptions import BowlrpError, ModelFileError
from ..model_files import load, save
from ..pipeline import Pipeline
from .store import StoreError, StoreMismatch, check_store_tree, is_local
from .store_arrays import StoreArrayError, checked_array

FORMAT = "bowlrp-training-store"
#: 2: the store keeps its vocabularies (``vocabularies.skops``) and the config's hash
VERSION = 2
FEATURES, DONE = "features", "done"
#: the fitted stages before the features, a bowlrp model file (:func:`save_vocabularies`)
VOCABULARIES = "vocabularies.skops"
#: the names a training store consists of (all :func:`remove_training_store` removes)
OWN_NAMES = ("zarr.json", FEATURES, DONE, VOCABULARIES)
#: what a training is known by before anything is fitted (:func:`claim_training_store`)
RUN_KEYS = ("config", "images", "n")
#: the fitted attributes :meth:`Pipeline.fit_vocabularies` sets (what a stored vocabulary restores)
VOCABULARY_ATTRIBUTES = (
    "channel_names_",
    "extractors_",
    "encoders_",
    "channel_sizes_",
    "n_descriptors_sampled_",
)


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


def config_fingerprint(pipe: Pipeline) -> str:
    """Hash of what fixes a pipeline's vocabularies and features: its channels and its seed.

    Not the classifier: features of one config serve any classifier. The number of images
    described for the vocabularies counts when it is set (stores of pipelines without it
    keep their fingerprints).
    """
    cap = getattr(pipe, "vocabulary_images", None)
    if cap is None:
        return joblib.hash((pipe.channels, pipe.random_state))
    return joblib.hash((pipe.channels, pipe.random_state, int(cap)))


def stages_fingerprint(pipe: Pipeline) -> str:
    """Hash of a pipeline's fitted extractors and encoders (with their vocabularies)."""
    return joblib.hash((pipe.extractors_, pipe.encoders_))


def _mismatch(location, old: dict, key: dict, keys, rows: tuple[int, int] | None) -> TrainingStoreMismatch:
    changed = sorted(k for k in keys if old.get(k) != key.get(k))
    if rows is not None and rows[0] != rows[1]:
        changed.append("rows_per_block")
    return TrainingStoreMismatch(
        f"{display_path(location)} holds the features of another training (differs in {', '.join(changed)}); "
        "choose another --store, or remove that store if it is yours"
    )


def _open_root(location, mode: str = "a"):
    import zarr  # only for stores: zarr and its codecs load in ~0.5 s

    path = _local(location)
    if path is not None:
        check_store_tree(path)
    return zarr.open_group(str(path) if path is not None else str(location), mode=mode)


def _refuse_foreign(root, location) -> None:
    """Refuse a Zarr store that is not a training store (anything but the run's lock in it)."""
    with warnings.catch_warnings():  # the run's lock file is no Zarr node: not news
        warnings.filterwarnings("ignore", message="Object at .* is not recognized")
        members = any(True for _ in root.keys())
    if dict(root.attrs) or members:
        raise TrainingStoreError(
            f"{display_path(location)} is a Zarr store but not a bowlrp training store; "
            "choose another --store (e.g. model.pkl.features.zarr)"
        )


def _check_version(attrs: dict, location) -> None:
    if attrs.get("version") != VERSION:
        raise TrainingStoreMismatch(
            f"{display_path(location)} is a training store of another bowlrp version "
            f"(format {attrs.get('version')!r}, this one writes {VERSION}); "
            "choose another --store, or remove that store if it is yours"
        )


def claim_training_store(location, run: dict, n: int, rows_per_block: int) -> str | None:
    """Open the store at ``location`` for the training ``run``, before anything is fitted.

    Call it holding :func:`~bowlrp.runs.store.store_lock`. A new (or empty) store gets
    the format and ``run`` (``{"config", "images"}``, with ``n``), and so does a store
    claimed by a run that stopped before its vocabularies were recorded (it holds
    nothing); a store with vocabularies must have been started for the same ``run``,
    ``n`` and ``rows_per_block``.

    Parameters
    ----------
    location : path or URL
    run : dict
        ``{"config": config_fingerprint(pipe), "images": images_fingerprint(images)}``.
    n : int
        Images (rows).
    rows_per_block : int

    Returns
    -------
    str or None
        The stages' hash of the vocabularies the store keeps (read them with
        :func:`load_vocabularies`), or None: fit them, then :func:`save_vocabularies`
        and :func:`record_vocabularies`.

    Raises
    ------
    TrainingStoreMismatch
        Another config, other images, another shape or another store version (nothing changed).
    TrainingStoreError
        A Zarr store of something else.
    """
    key = json.loads(json.dumps({**run, "n": int(n)}, default=str))
    root = _open_root(location)
    attrs = dict(root.attrs)
    if attrs.get("format") != FORMAT:
        _refuse_foreign(root, location)
        root.update_attributes(
            {"format": FORMAT, "version": VERSION, "fingerprint": key, "rows_per_block": int(rows_per_block)}
        )
        return None
    _check_version(attrs, location)
    old = attrs.get("fingerprint") or {}
    if "stages" not in old:  # claimed by a run stopped before its vocabularies were saved: empty
        root.update_attributes({"fingerprint": key, "rows_per_block": int(rows_per_block)})
        return None
    if any(old.get(k) != key.get(k) for k in RUN_KEYS) or attrs.get("rows_per_block") != rows_per_block:
        raise _mismatch(location, old, key, RUN_KEYS, (attrs.get("rows_per_block"), rows_per_block))
    return old["stages"]


def _vocabulary_path(location) -> Path | None:
    path = _local(location)
    return None if path is None else path / VOCABULARIES


def save_vocabularies(location, pipe: Pipeline) -> Pipeline:
    """Write ``pipe``'s fitted stages into the store (``vocabularies.skops``) and read them back.

    The pipeline goes through :func:`bowlrp.save` (skops, atomic: the file is whole or
    absent; a leftover temporary of an interrupted write is removed first) without a
    classifier. The copy read back (:func:`load_vocabularies`) is what the run goes on
    with, so a first run and its resumes use the same objects.

    Returns
    -------
    Pipeline
        The stored pipeline, read back.
    """
    unfitted = Pipeline(**pipe.get_params(deep=False))
    for name in VOCABULARY_ATTRIBUTES:
        setattr(unfitted, name, getattr(pipe, name))
    path = _vocabulary_path(location)
    if path is not None:
        for leftover in leftover_temporaries([path]):
            leftover.unlink(missing_ok=True)
        save(unfitted, path)
        return load_vocabularies(location)
    import fsspec  # a store behind a URL: zarr's own file-system layer

    with tempfile.TemporaryDirectory() as scratch:
        local = save(unfitted, Path(scratch) / VOCABULARIES)
        with fsspec.open(f"{str(location).rstrip('/')}/{VOCABULARIES}", "wb") as fh:
            fh.write(local.read_bytes())
    return load_vocabularies(location)


def load_vocabularies(location, stages: str | None = None) -> Pipeline:
    """The fitted stages the store keeps: a :class:`Pipeline` without classifier.

    Read with :func:`bowlrp.load` (the exact type allowlist; nothing is unpickled), then
    checked: a fitted Pipeline (every attribute :data:`VOCABULARY_ATTRIBUTES`) whose
    stages hash to ``stages`` when given (the hash recorded with the features).

    Raises
    ------
    TrainingStoreError
        One line naming the file: missing, not a bowlrp model file, a type outside the
        allowlist, not a fitted pipeline, or other stages than the features were made with.
    """
    path = _vocabulary_path(location)
    shown = display_path(path) if path is not None else f"{str(location).rstrip('/')}/{VOCABULARIES}"
    fix = "remove the training store (it is only a cache of this training) and train again"
    try:
        if path is not None:
            if not path.is_file() or path.is_symlink():
                raise TrainingStoreError(f"{shown} is missing or not a file; {fix}")
            model = load(path)
        else:
            import fsspec  # a store behind a URL: zarr's own file-system layer

            with tempfile.TemporaryDirectory() as scratch:
                local = Path(scratch) / VOCABULARIES
                try:
                    with fsspec.open(shown, "rb") as fh:
                        local.write_bytes(fh.read())
                except (OSError, FileNotFoundError) as exc:
                    raise TrainingStoreError(f"{shown} cannot be read ({exc}); {fix}") from None
                try:
                    model = load(local)
                except ModelFileError as exc:
                    raise ModelFileError(str(exc).replace(display_path(local), shown)) from None
    except ModelFileError as exc:  # its advice is for model files; a store is removed instead
        reason = str(exc).splitlines()[0].split("; ")[0]
        raise TrainingStoreError(f"{reason}; {fix}") from None
    if type(model) is not Pipeline or any(name not in model.__dict__ for name in VOCABULARY_ATTRIBUTES):
        raise TrainingStoreError(
            f"{shown} holds a {type(model).__name__}, not the fitted vocabularies of a training; {fix}"
        )
    if stages is not None and stages_fingerprint(model) != stages:
        raise TrainingStoreError(f"{shown} holds other vocabularies than the features were made with; {fix}")
    return model


def record_vocabularies(location, stages: str, d: int) -> None:
    """Complete a claimed store: create its arrays for ``d`` features, add ``stages`` and ``d``.

    The fingerprint is written last: until then a rerun fits the vocabularies again
    (arrays an interrupted call created are replaced, they hold nothing yet).
    """
    root = _open_root(location)
    attrs = dict(root.attrs)
    key = {**attrs["fingerprint"], "stages": stages, "d": int(d)}
    rows, n = int(attrs["rows_per_block"]), int(key["n"])
    _create_arrays(root, n, int(d), rows)
    root.update_attributes({"fingerprint": key})


def _create_arrays(root, n: int, d: int, rows_per_block: int) -> None:
    root.create_array(
        FEATURES, shape=(n, d), dtype="float32", chunks=(rows_per_block, d), fill_value=0.0, overwrite=True
    )
    root.create_array(
        DONE, shape=(-(-n // rows_per_block),), dtype="uint8", chunks=(1,), fill_value=0, overwrite=True
    )


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
        key = json.loads(json.dumps({**fingerprint, "n": int(n), "d": int(d)}, default=str))
        root = _open_root(location)
        attrs = dict(root.attrs)
        if attrs.get("format") != FORMAT:
            _refuse_foreign(root, location)
            _create_arrays(root, int(n), int(d), int(rows_per_block))
            root.update_attributes(
                {"format": FORMAT, "version": VERSION, "fingerprint": key, "rows_per_block": rows_per_block}
            )
        else:
            _check_version(attrs, location)
            old = attrs.get("fingerprint") or {}
            if old != key or attrs.get("rows_per_block") != rows_per_block:
                keys = set(old) | set(key)
                raise _mismatch(location, old, key, keys, (attrs.get("rows_per_block"), rows_per_block))
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
    """Remove a local training store's own names (:data:`OWN_NAMES`), then its folder.

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
    for leftover in leftover_temporaries([path / VOCABULARIES]):
        leftover.unlink(missing_ok=True)
    if (path / VOCABULARIES).is_file():
        (path / VOCABULARIES).unlink()
    (path / "zarr.json").unlink(missing_ok=True)
    try:
        path.rmdir()
    except OSError:
        return False
    return True
