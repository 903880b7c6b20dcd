"""The relevance store: every explanation of a run in one Zarr store, written per image atomically.

A store is a Zarr v3 hierarchy at a local path or an fsspec URL (``s3://``,
``gs://``, ``file://`` ...), so many Dask workers can write it at once, each
its own images::

    <store>/zarr.json                    attributes: format, version, grid, run_key, last run
    <store>/images/<key>/                one group per image (``<key>``: the escaped id)
        heatmap   (T, H, W) float32      one map per target, in the image's own shape
        pooled    (T, g, g) float64      the map sum-pooled onto g x g cells (SpRAy)
        attributes: id, path, targets, scores, bias_relevance, absorbed, residual,
                    model_hash, rules, settings, ..., and ``done: true``
    <store>/failures/<key>/              attributes: id, path, error (one line)
    <store>/evaluation/<key>/            per-image perturbation curves (bowlrp-evaluate --store)

Writing one image: its group is (re)created empty, the arrays are written,
then all attributes including ``"done": true`` are written in one last,
atomic metadata write. Readers and resumed runs ignore groups without the
marker, and a rerun recreates them, so a run killed at any moment leaves
no half-written record anybody uses.

Pooling (for SpRAy): ``P[t, a, b] = sum_{h,w} Pr[a, h] R[t, h, w] Pc[b, w]`` with the
overlap weights of :func:`bowlrp.image.pool_maps` applied to the map in its own
shape, so every cell holds the summed relevance of the pixels it covers and
``P[t].sum() == R[t].sum()`` (in float64, from the float64 map before the
float32 cast of ``heatmap``).

Image ids are the image paths relative to the input folder without their
extension (:func:`bowlrp.runs.inputs.collect_inputs`); :func:`id_to_key` escapes
them into flat, reversible Zarr names (no ``/``, never ``.`` or ``..``).

A store is written by one run at a time: a local store holds the lock file
``.bowlrp.lock`` (:class:`bowlrp._utils.lock.FolderLock`) for the run; stores behind
URLs cannot be locked that way, so two runs on one remote store must be
avoided by the user. A run with another model or other settings into a store
that holds results is refused (:class:`StoreMismatch`) unless ``overwrite``.

A local store holds only its own files and folders (issue 24): a symbolic link
anywhere inside it, or anything that is neither a regular file nor a folder
(FIFO, socket, device), is refused with one :class:`StoreError` naming it
before the store is read or anything in it is created, overwritten or removed
(:func:`check_store_tree`), so no write follows a link out of the store and no
reader blocks on a pipe or reads ``/dev/zero``. The store's own path may be a
link: it is resolved once, when the store is opened, and only the folder it
names is the store (a link to nothing is refused). Stores behind URLs
(fsspec) have no links to check.

Reading costs what a record is, not what its metadata declares (issue 24):
a record holds at most ``BOWLRP_MAX_IMAGE_PIXELS`` heatmap values, the grid is
at most :data:`MAX_GRID`, and every array is checked against what :meth:`write`
makes — shape, type, chunks, ``bytes`` + ``zstd`` codecs, each chunk's size and
the raw size its zstd frame declares — before it is read
(:mod:`bowlrp.runs.store_arrays`), for local stores and URLs alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._utils.lock import LOCK_NAME, FolderLock
from .._utils.validation import display_path, image_limits
from ..exceptions import BowlrpError
from ..image import pool_maps
from .inputs import ImageInput
from .step import SettingsMismatch
from .store_arrays import StoreArrayError, check_chunks, checked_array, read_checked

FORMAT = "bowlrp-relevance-store"
VERSION = 1
DEFAULT_GRID = 32
IMAGES, FAILURES, EVALUATION = "images", "failures", "evaluation"
_KEEP = re.compile(r"[A-Za-z0-9-]")
_MAX_KEY = 180
# zarr's LocalStore writes every file as "<name>.<32 hex digits>.partial" and renames it
_PARTIAL_WRITE = re.compile(r"\.[0-9a-f]{32}\.partial$")
#: largest pooling grid a store may declare (pooled maps are (targets, grid, grid) float64)
MAX_GRID = 1024
#: largest number of values in one record's evaluation curve (repeats x (steps + 1))
MAX_CURVE_VALUES = 1 << 22


class StoreError(BowlrpError, ValueError):
    """A relevance store is missing, unreadable or not a bowlrp store."""


class StoreMismatch(SettingsMismatch):
    """A store holds results made with another model or other settings."""


def id_to_key(image_id: str) -> str:
    """A flat Zarr node name for an image id; injective, no ``/``, never ``.``/``..``.

    Letters, digits and ``-`` are kept; every other byte (UTF-8, undecodable
    bytes kept by ``surrogateescape``) becomes ``_xx`` (two hex digits), so
    ``d1/a.b`` -> ``d1_2fa_2eb`` and ``../x`` -> ``_2e_2e_2fx``. Keys longer
    than 180 characters are cut and end in ``_zz`` + a SHA-256 digest of the
    id (``_zz`` never occurs in a short key).
    """
    if not isinstance(image_id, str) or not image_id:
        raise StoreError(f"an image id must be a non-empty string, got {image_id!r}")
    raw = image_id.encode("utf-8", "surrogateescape")
    key = "".join(chr(b) if _KEEP.fullmatch(chr(b)) else f"_{b:02x}" for b in raw)
    if len(key) > _MAX_KEY:
        key = key[:140] + "_zz" + hashlib.sha256(raw).hexdigest()[:32]
    return key


def is_local(location) -> bool:
    """True for a plain path or a ``file://`` URL (a store that can be locked)."""
    text = os.fspath(location) if not isinstance(location, str) else location
    return "://" not in str(text) or str(text).startswith("file://")


def _local_path(location) -> Path:
    text = str(os.fspath(location))
    return Path(text[len("file://") :] if text.startswith("file://") else text)


# -- what a local store may hold: its own files and folders, no links, no special files ---------
_FOREIGN = "a relevance store holds only its own files and folders: move it away or choose another store"


def _kind(mode: int) -> str | None:
    """What an entry is, for a message; None for a regular file or a folder."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "neither a file nor a folder"


def _refuse(path, kind: str) -> StoreError:
    return StoreError(f"{display_path(path)} is {kind}; {_FOREIGN}")


def _unreadable(path, exc: OSError) -> StoreError:
    return StoreError(f"cannot read {display_path(path)} ({exc.strerror or type(exc).__name__}); {_FOREIGN}")


def _lstat_mode(path) -> int | None:
    """``st_mode`` of ``path`` itself (a link is not followed); None if it does not exist."""
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _resolved_root(location) -> Path:
    """The folder of a local store, its path's symbolic links resolved once.

    The store's own path may be a link (``out.zarr -> /scratch/run1.zarr``):
    the folder it names is the store. A link to nothing is refused: following
    it would create a store wherever it points.
    """
    path = _local_path(location)
    mode = _lstat_mode(path)
    if mode is not None and stat.S_ISLNK(mode) and not path.exists():
        raise StoreError(
            f"{display_path(path)} is a symbolic link to nothing; "
            "give the store's own path or remove the link"
        )
    return Path(os.path.realpath(path))


def _check_entry(entry: os.DirEntry) -> str:
    """``"dir"`` or ``"file"`` for a folder or a regular file; refuses anything else; ``""`` if gone."""
    if entry.is_symlink():
        raise _refuse(entry.path, "a symbolic link")
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    if entry.is_file(follow_symlinks=False):
        return "file"
    mode = _lstat_mode(entry.path)  # a special file, or an entry removed since it was listed
    if mode is None:
        return ""
    kind = _kind(mode)
    if kind is not None:
        raise _refuse(entry.path, kind)
    return "dir" if stat.S_ISDIR(mode) else "file"


def _scan(folder: Path, *, deep: bool = True) -> list[Path]:
    """Check every entry under ``folder`` (only its own entries if not ``deep``); zarr's temporaries."""
    partials, todo = [], [folder]
    while todo:
        current = todo.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    what = _check_entry(entry)
                    if what == "dir" and deep:
                        todo.append(Path(entry.path))
                    elif what == "file" and _PARTIAL_WRITE.search(entry.name):
                        partials.append(Path(entry.path))
        except FileNotFoundError:  # removed by a writer since it was listed
            continue
        except OSError as exc:
            raise _unreadable(current, exc) from None
    return partials


def check_store_tree(path, *, deep: bool = True) -> list[Path]:
    """Refuse a local store that holds a symbolic link or a special file anywhere in it.

    One ``os.scandir`` walk that never follows a link (the entries' types come
    from the directory listing, so it costs about one system call per folder);
    a store's path is given resolved (:func:`_resolved_root`), so ``path``
    itself must not be a link either. Only for local stores: a URL has no
    links to check.

    Parameters
    ----------
    path : path-like
        The store folder; a missing folder passes (there is nothing in it).
    deep : bool
        False: check only the entries of ``path`` itself (cheap; what a Dask
        task checks when it opens the store, before every record it writes is
        checked on its own).

    Returns
    -------
    list of Path
        The regular files named like zarr's temporaries (``*.<32 hex>.partial``).

    Raises
    ------
    StoreError
        One line naming the first link, FIFO, socket or device found.
    """
    root = Path(path)
    return _scan(root, deep=deep) if _check_root_node(root) else []


def _check_root_node(path: Path) -> bool:
    """True if the store folder exists; refuses a file, a link or a special file in its place."""
    mode = _lstat_mode(path)
    if mode is None:
        return False
    if stat.S_ISREG(mode):
        raise StoreError(f"{display_path(path)} is a file, not a relevance store")
    kind = _kind(mode)
    if kind is not None:
        raise _refuse(path, kind)
    return True


def _check_folder_is_store(path: Path) -> None:
    """Refuse a folder that holds anything but is not a Zarr store (no ``zarr.json`` file)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if any(n != LOCK_NAME for n in names) and "zarr.json" not in names:
        raise StoreError(
            f"{display_path(path)} is a folder but not a Zarr store; choose a new store path (e.g. out.zarr)"
        )


def _holds_only_a_new_store(path: Path) -> bool:
    """True if a local store folder holds nothing but what opening it creates (a run killed at once)."""
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return all(n in ("zarr.json", LOCK_NAME) or _PARTIAL_WRITE.search(n) for n in names)


def _json(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return str(value)


@dataclass
class StoreRecord:
    """One explained image read from a store; the plain attributes describe the first target.

    Attributes
    ----------
    id, path : str
    targets : list
        Every explained target (one heatmap each).
    heatmaps : ndarray (T, H, W) float32
    pooled : ndarray (T, g, g) float64
    scores, bias_relevances, absorbeds, residuals : ndarray (T,) float64
    model_hash : str
    rules : dict
    settings : dict (the store's run key)
    meta : dict (all attributes)
    """

    id: str
    path: str
    targets: list
    heatmaps: np.ndarray = field(repr=False)
    pooled: np.ndarray = field(repr=False)
    scores: np.ndarray
    bias_relevances: np.ndarray
    absorbeds: np.ndarray
    residuals: np.ndarray
    model_hash: str
    rules: dict
    settings: dict
    meta: dict = field(repr=False, default_factory=dict)

    def index(self, target) -> int:
        """Position of ``target`` (label or its text) in :attr:`targets`."""
        for i, t in enumerate(self.targets):
            if t == target or str(t) == str(target):
                return i
        raise KeyError(
            f"image {self.id!r} was not explained for target {target!r}; its targets are {self.targets}"
        )

    @property
    def target(self):
        return self.targets[0]

    @property
    def heatmap(self) -> np.ndarray:
        """(H, W) float32 relevance of the first target."""
        return self.heatmaps[0]

    @property
    def score(self) -> float:
        return float(self.scores[0])

    @property
    def bias_relevance(self) -> float:
        return float(self.bias_relevances[0])

    @property
    def absorbed(self) -> float:
        return float(self.absorbeds[0])

    @property
    def residual(self) -> float:
        return float(self.residuals[0])


class RelevanceStore:
    """A relevance store opened for reading (:func:`open`) or by a run (:meth:`create`).

    ``len(store)``, ``store.ids()``, ``image_id in store``, ``store[image_id]``
    (a :class:`StoreRecord`), ``store.pooled_maps(target)``, ``store.failures()``
    only see finished images (those with the ``done`` marker).

    A local store is checked for links and special files (:func:`check_store_tree`)
    as a whole when it is opened for reading, created or opened by a run, and
    record by record before each record is written, replaced, removed or read
    (a Dask task opening it with ``"r+"`` checks only the store's own entries).
    """

    def __init__(self, location, root):
        self.location = str(os.fspath(location))
        self.root = root
        self._path = _resolved_root(location) if is_local(self.location) else None

    def _guard(self, *parts: str) -> None:
        """Refuse before touching ``<store>/<parts>``: no link or special file on the way or under it.

        Every folder from the store's own down to the node is checked with
        ``lstat``; a node that exists is walked (a record: a few folders). A
        no-op for stores behind URLs.
        """
        if self._path is None:
            return
        path = self._path
        for depth in range(len(parts) + 1):
            if depth:
                path = path / parts[depth - 1]
            mode = _lstat_mode(path)
            if mode is None:
                return  # created by zarr, below a checked folder
            kind = _kind(mode)
            if kind is not None:
                raise _refuse(path, kind)
            if depth < len(parts) and not stat.S_ISDIR(mode):
                raise StoreError(f"{display_path(path)} is a file, not a group of a store; {_FOREIGN}")
        if stat.S_ISDIR(mode):
            _scan(path)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, location, mode: str = "r", storage_options: dict | None = None) -> RelevanceStore:
        """Open an existing store: ``"r"`` to read it, ``"r+"`` for a Dask task writing records.

        A local store is checked first: ``"r"`` walks the whole store, ``"r+"``
        its own entries (each record is checked before it is written).
        Creating stores is :meth:`create`'s; a mode that could create or
        clear one (``"a"``, ``"w"``) is refused.
        """
        import zarr  # only for stores: zarr and its codecs load in ~0.5 s

        if mode not in ("r", "r+"):
            raise StoreError(
                f"a relevance store is opened with mode 'r' or 'r+', not {mode!r}; "
                "RelevanceStore.create makes or replaces one"
            )
        path = _resolved_root(location) if is_local(location) else None
        if path is not None:
            if not _check_root_node(path):
                raise StoreError(
                    f"cannot open relevance store {display_path(location)}: no such folder; "
                    "write one with bowlrp-explain --store"
                )
            check_store_tree(path, deep=False)  # the store's own entries, before zarr reads zarr.json
        try:
            root = zarr.open_group(_store_arg(location), mode=mode, storage_options=storage_options)
            attrs = dict(root.attrs)
        except (FileNotFoundError, KeyError, ValueError, OSError) as exc:
            raise StoreError(
                f"cannot open relevance store {display_path(location)}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                "write one with bowlrp-explain --store"
            ) from None
        if attrs.get("format") != FORMAT:
            raise StoreError(
                f"{display_path(location)} is not a bowlrp relevance store "
                "(no format attribute); write one with bowlrp-explain --store"
            )
        if path is not None and mode == "r":
            check_store_tree(path)  # a reader reads every record: all of it
        return cls(location, root)

    @classmethod
    def create(
        cls,
        location,
        run_key: dict,
        *,
        grid: int = DEFAULT_GRID,
        overwrite: bool = False,
        storage_options: dict | None = None,
    ) -> RelevanceStore:
        """Open ``location`` for a run with ``run_key``, creating the store if needed.

        Raises
        ------
        StoreMismatch
            The store holds results of another model or other settings (and
            not ``overwrite``); with ``overwrite`` all results are deleted first.
        StoreError
            ``location`` exists and is not a relevance store (a folder or a Zarr
            store of something else is never written to, let alone overwritten),
            or a local store holds a link or a special file (:func:`check_store_tree`).
        """
        import zarr  # only for stores: zarr and its codecs load in ~0.5 s

        _check_before_opening(location)
        root = zarr.open_group(_store_arg(location), mode="a", storage_options=storage_options)
        attrs = dict(root.attrs)
        key = _json(run_key)
        _check_is_bowlrp_store(location, root, attrs)
        old = attrs.get("run_key")
        if old is not None and (old != key or attrs.get("grid") != grid):
            if not overwrite:
                changed = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
                if attrs.get("grid") != grid:
                    changed.append("grid")
                raise StoreMismatch(
                    f"{display_path(location)} holds results of another run (differs in "
                    f"{', '.join(changed)}); choose another store, or pass overwrite (--overwrite) "
                    "to replace them"
                )
        store = cls(location, root)
        if overwrite:
            for name in (IMAGES, FAILURES, EVALUATION):
                store._guard(name)
                if name in root:
                    del root[name]
        store._guard("zarr.json")
        root.update_attributes({"format": FORMAT, "version": VERSION, "grid": int(grid), "run_key": key})
        root.require_group(IMAGES)
        root.require_group(FAILURES)
        return store

    # -- reading -------------------------------------------------------------------------------
    @property
    def grid(self) -> int:
        """The pooling grid side the store declares, checked to lie in [1, :data:`MAX_GRID`]."""
        grid = self.root.attrs.get("grid", DEFAULT_GRID)
        if not isinstance(grid, int) or isinstance(grid, bool) or not 1 <= grid <= MAX_GRID:
            raise StoreError(
                f"{display_path(self.location)} declares a pooling grid of {grid!r}, not a whole number "
                f"in [1, {MAX_GRID}]; write the store again with bowlrp-explain --store"
            )
        return grid

    @property
    def run_key(self) -> dict:
        return dict(self.root.attrs.get("run_key") or {})

    def _group(self, name: str):
        return self.root[name] if name in self.root else None

    def _done_groups(self, name: str = IMAGES) -> Iterator[tuple[str, object]]:
        parent = self._group(name)
        if parent is None:
            return
        for key in sorted(parent.group_keys()):
            try:
                g = parent[key]
                if g.attrs.get("done") is True:
                    yield key, g
            except Exception:  # noqa: BLE001 - unreadable metadata: an unfinished record
                continue

    def ids(self) -> list[str]:
        """Ids of every finished image, sorted by key."""
        return [str(g.attrs["id"]) for _, g in self._done_groups()]

    def __len__(self) -> int:
        return sum(1 for _ in self._done_groups())

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def _done(self, name: str, image_id: str):
        key = id_to_key(image_id)
        self._guard(name, key)  # before reading the record's metadata, and its arrays after
        parent = self._group(name)
        if parent is None or key not in parent:
            return None
        try:
            g = parent[key]
            return g if g.attrs.get("done") is True and g.attrs.get("id") == image_id else None
        except Exception:  # noqa: BLE001
            return None

    def __contains__(self, image_id) -> bool:
        return isinstance(image_id, str) and bool(image_id) and self._done(IMAGES, image_id) is not None

    def _where(self, name: str, key: str, array: str = "") -> str:
        return display_path(f"{self.location.rstrip('/')}/{name}/{key}" + (f"/{array}" if array else ""))

    def _record_shape(self, g, key: str) -> tuple[dict, int, int, int]:
        """A finished record's attributes and its heatmaps' shape ``(T, H, W)``, checked against the budget.

        ``T`` is the number of targets, ``(H, W)`` the ``shape`` attribute; the
        record may hold at most ``BOWLRP_MAX_IMAGE_PIXELS`` heatmap values in
        all (the image limit, :func:`bowlrp.image_limits`): a store a stranger
        made cannot make a reader allocate more than an image bowlrp would read.
        """
        a = dict(g.attrs)
        where = self._where(IMAGES, key)
        targets, shape = a.get("targets"), a.get("shape")
        if not isinstance(targets, list) or not targets:
            raise StoreError(f"{where}: no list of targets in its attributes; explain the image again")
        if shape is None and "heatmap" in g:  # a record written before the shape attribute
            shape = list(g["heatmap"].shape[1:])
        if (
            not isinstance(shape, list)
            or len(shape) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
        ):
            raise StoreError(
                f"{where}: its shape attribute {shape!r} is not [height, width]; explain it again"
            )
        T, (H, W) = len(targets), shape
        limit = image_limits()["max_pixels"]
        if limit is not None and T * H * W > limit:
            raise StoreError(
                f"{where}: {T} heatmap(s) of {H} x {W} = {T * H * W:,} values, more than the limit of "
                f"{limit:,} (BOWLRP_MAX_IMAGE_PIXELS); raise it if you trust the store"
            )
        return a, T, H, W

    def record(self, image_id: str, *, heatmaps: bool = True) -> StoreRecord:
        """The finished record of ``image_id``, every array checked before it is read.

        Parameters
        ----------
        image_id : str
        heatmaps : bool
            False: leave the (T, H, W) heatmaps unread (``heatmaps`` is then an
            empty (T, 0, 0) array; read one with :meth:`heatmap`); their
            metadata is still checked.

        Raises
        ------
        KeyError
            No finished record of the image.
        StoreError
            The record's attributes or arrays are not what bowlrp writes
            (:mod:`bowlrp.runs.store_arrays`), or exceed the budget.
        """
        g = self._done(IMAGES, image_id)
        if g is None:
            raise KeyError(f"no finished record of image {image_id!r} in {display_path(self.location)}")
        key = id_to_key(image_id)
        a, T, H, W = self._record_shape(g, key)
        heat_where = self._where(IMAGES, key, "heatmap")
        if heatmaps:
            heat_values = _read(g, "heatmap", (T, H, W), "float32", heat_where, chunks=(1, H, W))
        else:  # the chunks are checked all the same (a few bytes each), their values left unread
            with _as_store_error():
                heat = checked_array(g, "heatmap", (T, H, W), "float32", heat_where, chunks=(1, H, W))
                check_chunks(heat, [(t, 0, 0) for t in range(T)], heat_where)
            heat_values = np.zeros((T, 0, 0), dtype=np.float32)
        pooled_where = self._where(IMAGES, key, "pooled")
        pooled_values = _read(g, "pooled", (T, self.grid, self.grid), "float64", pooled_where)
        return StoreRecord(
            id=a["id"],
            path=a.get("path", ""),
            targets=list(a["targets"]),
            heatmaps=heat_values,
            pooled=pooled_values,
            scores=np.asarray(a["scores"], dtype=np.float64),
            bias_relevances=np.asarray(a["bias_relevance"], dtype=np.float64),
            absorbeds=np.asarray(a["absorbed"], dtype=np.float64),
            residuals=np.asarray(a["residual"], dtype=np.float64),
            model_hash=a.get("model_hash", ""),
            rules=a.get("rules", {}),
            settings=a.get("settings", {}),
            meta=a,
        )

    def __getitem__(self, image_id: str) -> StoreRecord:
        return self.record(image_id)

    def heatmap(self, image_id: str, index: int = 0) -> np.ndarray:
        """(H, W) float32 heatmap of the ``index``-th target of ``image_id``; only that map is read."""
        g = self._done(IMAGES, image_id)
        if g is None:
            raise KeyError(f"no finished record of image {image_id!r} in {display_path(self.location)}")
        key = id_to_key(image_id)
        _, T, H, W = self._record_shape(g, key)
        if not 0 <= index < T:
            raise IndexError(f"image {image_id!r} has {T} target(s), not {index + 1}")
        where = self._where(IMAGES, key, "heatmap")
        return _read(g, "heatmap", (T, H, W), "float32", where, chunks=(1, H, W), index=(index,))

    def pooled_maps(self, target=None) -> tuple[list[str], np.ndarray]:
        """Ids and pooled maps (n, g, g) float64 of every finished image explained for ``target``.

        ``target=None``: each image's first target (its predicted class when
        the run named none).
        """
        ids, maps = [], []
        for key, g in self._done_groups():
            targets = [str(t) for t in g.attrs["targets"]]
            if target is None:
                i = 0
            elif str(target) in targets:
                i = targets.index(str(target))
            else:
                continue
            _, T, _, _ = self._record_shape(g, key)
            where = self._where(IMAGES, key, "pooled")
            maps.append(_read(g, "pooled", (T, self.grid, self.grid), "float64", where, index=(i,)))
            ids.append(str(g.attrs["id"]))
        return ids, (np.stack(maps) if maps else np.zeros((0, self.grid, self.grid)))

    def targets(self) -> list[str]:
        """Every target explained in the store (as text), in order of first appearance."""
        seen: dict[str, None] = {}
        for _, g in self._done_groups():
            for t in g.attrs["targets"]:
                seen.setdefault(str(t), None)
        return list(seen)

    def failures(self) -> list[dict]:
        """``{"id", "path", "error"}`` of every image that failed and has not succeeded since."""
        parent = self._group(FAILURES)
        out = []
        if parent is None:
            return out
        for key in sorted(parent.group_keys()):
            try:
                a = dict(parent[key].attrs)
            except Exception:  # noqa: BLE001
                continue
            if a.get("done") is True and self._done(IMAGES, a.get("id", "")) is None:
                out.append({"id": a.get("id"), "path": a.get("path"), "error": a.get("error")})
        return out

    def heatmap_location(self, image_id: str) -> str:
        """Where an image's heatmap array lives (``<store>/images/<key>/heatmap``)."""
        return f"{self.location.rstrip('/')}/{IMAGES}/{id_to_key(image_id)}/heatmap"

    # -- writing -------------------------------------------------------------------------------
    def write(
        self,
        item: ImageInput,
        explanations,
        *,
        model_hash: str,
        extra: dict | None = None,
        name: str = IMAGES,
    ) -> None:
        """Write one image's explanations (one per target) atomically: arrays first, ``done`` last."""
        heat64 = np.stack([np.asarray(e.heatmap, dtype=np.float64) for e in explanations])
        pooled = pool_maps(list(heat64), self.grid, heat64.shape[1:])
        key = id_to_key(item.id)
        self._guard(name, key)
        parent = self.root.require_group(name)
        g = parent.create_group(key, overwrite=True, attributes={"id": item.id, "done": False})
        T, H, W = heat64.shape
        g.create_array("heatmap", shape=(T, H, W), dtype="float32", chunks=(1, H, W), fill_value=0.0)[...] = (
            heat64.astype(np.float32)
        )
        g.create_array("pooled", shape=pooled.shape, dtype="float64", chunks=pooled.shape, fill_value=0.0)[
            ...
        ] = pooled
        summaries = [e.summary() for e in explanations]
        entered = [e.score - e.bias_relevance - e.residual for e in explanations]
        attrs = {
            "id": item.id,
            "path": display_path(item.path),
            "shape": [int(H), int(W)],
            "targets": [_json(s["target"]) for s in summaries],
            "scores": [float(e.score) for e in explanations],
            "bias_relevance": [float(e.bias_relevance) for e in explanations],
            "absorbed": [float(e.absorbed) for e in explanations],
            "residual": [float(e.residual) for e in explanations],
            "heatmap_sum": [float(h.sum()) for h in heat64],
            "absorbed_fraction": [float(e.absorbed / n) if n else 0.0 for e, n in zip(explanations, entered)],
            "rules": _json(summaries[0]["rules"]),
            "model_hash": model_hash,
            "settings": self.run_key,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **_json(extra or {}),
            "done": True,
        }
        g.update_attributes(attrs)  # one metadata write: the record is complete from here on
        self.clear_failure(item.id)

    def write_failure(self, item: ImageInput, error: str) -> None:
        self._guard(FAILURES, id_to_key(item.id))
        parent = self.root.require_group(FAILURES)
        parent.create_group(
            id_to_key(item.id),
            overwrite=True,
            attributes={"id": item.id, "path": display_path(item.path), "error": error, "done": True},
        )

    def clear_failure(self, image_id: str) -> None:
        key = id_to_key(image_id)
        self._guard(FAILURES, key)
        parent = self._group(FAILURES)
        if parent is not None and key in parent:
            try:
                del parent[key]
            except (KeyError, FileNotFoundError):  # a concurrent writer removed it
                pass

    # -- perturbation curves (bowlrp-evaluate --store) ----------------------------------------
    def write_curves(self, item: ImageInput, result: dict) -> None:
        """One image's curves ``{method: (repeats, steps + 1)}`` and numbers, ``done`` last."""
        self._guard(EVALUATION, id_to_key(item.id))
        parent = self.root.require_group(EVALUATION)
        g = parent.create_group(id_to_key(item.id), overwrite=True, attributes={"id": item.id, "done": False})
        for method, curve in result["curves"].items():
            c = np.asarray(curve, dtype=np.float64)
            g.create_array(method, shape=c.shape, dtype="float64", chunks=c.shape, fill_value=0.0)[...] = c
        meta = {k: v for k, v in result.items() if k != "curves"}
        g.update_attributes(
            {
                **_json(meta),
                "id": item.id,
                "path": display_path(item.path),
                "methods": sorted(result["curves"]),
                "done": True,
            }
        )
        self._guard(EVALUATION_FAILURES, id_to_key(item.id))
        failures = self._group(EVALUATION_FAILURES)
        if failures is not None and id_to_key(item.id) in failures:
            try:
                del failures[id_to_key(item.id)]
            except (KeyError, FileNotFoundError):
                pass

    def write_curves_failure(self, item: ImageInput, error: str) -> None:
        self._guard(EVALUATION_FAILURES, id_to_key(item.id))
        self.root.require_group(EVALUATION_FAILURES).create_group(
            id_to_key(item.id),
            overwrite=True,
            attributes={"id": item.id, "path": display_path(item.path), "error": error, "done": True},
        )

    def curves(self, image_id: str, methods=()) -> dict | None:
        """``{"curves": {method: list of lists}, ...}`` of a finished image having every
        method in ``methods``, or None."""
        g = self._done(EVALUATION, image_id)
        if g is None or not set(methods) <= set(g.attrs.get("methods", [])):
            return None
        out = dict(g.attrs)
        key = id_to_key(image_id)
        curves = {}
        for method in g.attrs["methods"]:
            where = self._where(EVALUATION, key, str(method))
            shape = tuple(g[method].shape) if str(method) in g else ()
            if len(shape) != 2 or math.prod(shape) > MAX_CURVE_VALUES:
                raise StoreError(
                    f"{where}: declared shape {shape}, not (repeats, steps + 1) of at most "
                    f"{MAX_CURVE_VALUES:,} values; evaluate the image again"
                )
            curves[method] = _read(g, str(method), shape, "float64", where).tolist()
        out["curves"] = curves
        return out

    def curve_failures(self) -> list[dict]:
        parent = self._group(EVALUATION_FAILURES)
        out = []
        for key in sorted(parent.group_keys()) if parent is not None else []:
            a = dict(parent[key].attrs)
            if self._done(EVALUATION, a.get("id", "")) is None:
                out.append({"id": a.get("id"), "path": a.get("path"), "error": a.get("error")})
        return out

    def is_done(self, image_id: str) -> bool:
        return self._done(IMAGES, image_id) is not None

    def set_run(self, info: dict) -> None:
        """Record the last run's summary in the store's attributes."""
        self._guard("zarr.json")
        self.root.update_attributes({"last_run": _json(info)})


EVALUATION_FAILURES = "evaluation_failures"


def open_for_evaluation(
    location, key: dict, *, overwrite: bool = False, storage_options: dict | None = None
) -> RelevanceStore:
    """Open (or create) a store for per-image perturbation curves made with settings ``key``.

    The curves live in the ``evaluation`` group beside any explanations; a
    store whose curves were made with other settings is refused
    (:class:`StoreMismatch`) unless ``overwrite`` (which deletes the old curves).
    """
    import zarr  # only for stores: zarr and its codecs load in ~0.5 s

    _check_before_opening(location)
    root = zarr.open_group(_store_arg(location), mode="a", storage_options=storage_options)
    attrs = dict(root.attrs)
    _check_is_bowlrp_store(location, root, attrs)
    store = RelevanceStore(location, root)
    if attrs.get("format") != FORMAT:
        store._guard("zarr.json")
        root.update_attributes({"format": FORMAT, "version": VERSION, "grid": DEFAULT_GRID})
    key = _json(key)
    store._guard(EVALUATION)
    group = root.require_group(EVALUATION)
    old = group.attrs.get("key")
    if old is not None and old != key:
        if not overwrite:
            changed = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
            raise StoreMismatch(
                f"{display_path(location)} holds curves of another evaluation (differs in "
                f"{', '.join(changed)}); choose another store, or pass --overwrite to replace them"
            )
        for name in (EVALUATION, EVALUATION_FAILURES):
            store._guard(name)
            if name in root:
                del root[name]
        group = root.require_group(EVALUATION)
    group.update_attributes({"key": key})
    store._guard(EVALUATION_FAILURES)
    root.require_group(EVALUATION_FAILURES)
    return store


@contextlib.contextmanager
def _as_store_error():
    """A record's array that is not what bowlrp writes is the store's error, said in one line."""
    try:
        yield
    except StoreArrayError as exc:
        raise StoreError(str(exc)) from None


def _read(group, name: str, shape: tuple, dtype: str, where: str, *, chunks=None, index=(slice(None),)):
    """Check the array ``group[name]`` (:func:`checked_array`: shape, dtype, chunks, codecs)
    and read ``array[index]`` with its chunks checked first (:func:`read_checked`).

    Raises
    ------
    StoreError
        Naming ``where`` and what is wrong.
    """
    with _as_store_error():
        return read_checked(checked_array(group, name, shape, dtype, where, chunks=chunks), index, where)


def _check_before_opening(location) -> None:
    """Before a run opens (and perhaps creates) a local store: a store folder, holding only its own.

    Refuses a file, a folder with other contents, a link to nothing, and any
    link or special file inside (:func:`check_store_tree`). Nothing for URLs.
    """
    if not is_local(location):
        return
    path = _resolved_root(location)
    if _check_root_node(path):
        _check_folder_is_store(path)  # before walking it: a folder of something else is not walked
        check_store_tree(path)


def _check_is_bowlrp_store(location, root, attrs: dict) -> None:
    """Refuse a Zarr store that is not a relevance store: a run never writes into, nor clears, one.

    A store without the format attribute passes only if it holds nothing else
    (locally: only ``zarr.json``, the lock and zarr's temporaries; behind a URL:
    no member), as when a run was killed right after creating it.
    """
    if attrs.get("format") == FORMAT:
        return
    if not attrs:
        empty = (
            _holds_only_a_new_store(_resolved_root(location))
            if is_local(location)
            else next(iter(root.keys()), None) is None
        )
        if empty:
            return
    raise StoreError(
        f"{display_path(location)} is a Zarr store but not a bowlrp relevance store; "
        "choose another store path (e.g. out.zarr)"
    )


def store_lock(location, program: str):
    """A context manager holding the run lock of the store at ``location``.

    Local stores: :class:`bowlrp._utils.lock.FolderLock` on the store folder (created
    if needed), so a second run is refused with one line naming the pid. A file,
    a folder that is not a Zarr store, or a store holding a link or a special
    file among its own entries (the lock file included) is refused before the
    lock is taken; the whole store is checked under the lock.
    Stores behind URLs: no lock (a no-op; see the module docstring).
    """
    if is_local(location):
        path = _resolved_root(location)
        if _check_root_node(path):
            _check_folder_is_store(path)
            check_store_tree(path, deep=False)  # its own entries: the lock file is read by FolderLock
        path.mkdir(parents=True, exist_ok=True)
        return _locked_and_swept(path, program)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _locked_and_swept(path: Path, program: str):
    """Hold the run lock; then check the store and remove the temporaries a killed run left behind.

    Under the lock no other run writes, so every ``*.<uuid>.partial`` file is an orphan
    (zarr renames a temporary into place only when its write is complete; a record
    counts only once its ``done`` attribute is written, so no record depends on one).
    """
    with FolderLock(path, program):
        sweep_partial_writes(path)
        yield


def sweep_partial_writes(path) -> int:
    """Delete zarr's leftover temporary files under a local store; returns how many.

    Only regular files named ``*.<32 hex digits>.partial`` inside the store are
    removed, found by the walk of :func:`check_store_tree` (which refuses a
    store holding a link or a special file before anything is removed).
    """
    partials = check_store_tree(path)
    for file in partials:
        file.unlink(missing_ok=True)
    return len(partials)


def _store_arg(location):
    """What zarr opens: a local store's folder resolved once (:func:`_resolved_root`), or the URL."""
    text = str(os.fspath(location))
    return str(_resolved_root(text)) if is_local(text) else text


def open(location, storage_options: dict | None = None) -> RelevanceStore:  # noqa: A001
    """Open a relevance store for reading (a path or an fsspec URL).

    Examples
    --------
    >>> store = bowlrp.runs.store.open("out.zarr")              # doctest: +SKIP
    >>> len(store), store.ids()[:3]                        # doctest: +SKIP
    >>> ids, pooled = store.pooled_maps("horse")           # (n, 32, 32) for SpRAy  # doctest: +SKIP
    """
    return RelevanceStore.open(location, "r", storage_options)
