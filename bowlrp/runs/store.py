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
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._utils.lock import FolderLock
from .._utils.validation import display_path
from ..exceptions import BowlrpError
from ..image import pool_maps
from .inputs import ImageInput
from .step import SettingsMismatch

FORMAT = "bowlrp-relevance-store"
VERSION = 1
DEFAULT_GRID = 32
IMAGES, FAILURES, EVALUATION = "images", "failures", "evaluation"
_KEEP = re.compile(r"[A-Za-z0-9-]")
_MAX_KEY = 180


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
    """

    def __init__(self, location, root):
        self.location = str(os.fspath(location))
        self.root = root

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, location, mode: str = "r", storage_options: dict | None = None) -> RelevanceStore:
        import zarr  # only for stores: zarr and its codecs load in ~0.5 s

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
            ``location`` exists and is not a relevance store.
        """
        import zarr  # only for stores: zarr and its codecs load in ~0.5 s

        if is_local(location):
            path = _local_path(location)
            if path.exists() and not path.is_dir():
                raise StoreError(f"{display_path(location)} is a file, not a relevance store")
            if (
                path.is_dir()
                and any(p.name != ".bowlrp.lock" for p in path.iterdir())
                and not (path / "zarr.json").is_file()
            ):
                raise StoreError(
                    f"{display_path(location)} is a folder but not a Zarr store; "
                    "choose a new store path (e.g. out.zarr)"
                )
        root = zarr.open_group(_store_arg(location), mode="a", storage_options=storage_options)
        attrs = dict(root.attrs)
        key = _json(run_key)
        if attrs and attrs.get("format") != FORMAT:
            raise StoreError(f"{display_path(location)} is a Zarr store but not a bowlrp relevance store")
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
        if overwrite:
            for name in (IMAGES, FAILURES, EVALUATION):
                if name in root:
                    del root[name]
        root.update_attributes({"format": FORMAT, "version": VERSION, "grid": int(grid), "run_key": key})
        root.require_group(IMAGES)
        root.require_group(FAILURES)
        return cls(location, root)

    # -- reading -------------------------------------------------------------------------------
    @property
    def grid(self) -> int:
        return int(self.root.attrs.get("grid", DEFAULT_GRID))

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
        parent = self._group(name)
        key = id_to_key(image_id)
        if parent is None or key not in parent:
            return None
        try:
            g = parent[key]
            return g if g.attrs.get("done") is True and g.attrs.get("id") == image_id else None
        except Exception:  # noqa: BLE001
            return None

    def __contains__(self, image_id) -> bool:
        return isinstance(image_id, str) and bool(image_id) and self._done(IMAGES, image_id) is not None

    def __getitem__(self, image_id: str) -> StoreRecord:
        g = self._done(IMAGES, image_id)
        if g is None:
            raise KeyError(f"no finished record of image {image_id!r} in {display_path(self.location)}")
        a = dict(g.attrs)
        return StoreRecord(
            id=a["id"],
            path=a.get("path", ""),
            targets=list(a["targets"]),
            heatmaps=np.asarray(g["heatmap"][...]),
            pooled=np.asarray(g["pooled"][...]),
            scores=np.asarray(a["scores"], dtype=np.float64),
            bias_relevances=np.asarray(a["bias_relevance"], dtype=np.float64),
            absorbeds=np.asarray(a["absorbed"], dtype=np.float64),
            residuals=np.asarray(a["residual"], dtype=np.float64),
            model_hash=a.get("model_hash", ""),
            rules=a.get("rules", {}),
            settings=a.get("settings", {}),
            meta=a,
        )

    def pooled_maps(self, target=None) -> tuple[list[str], np.ndarray]:
        """Ids and pooled maps (n, g, g) float64 of every finished image explained for ``target``.

        ``target=None``: each image's first target (its predicted class when
        the run named none).
        """
        ids, maps = [], []
        for _, g in self._done_groups():
            targets = [str(t) for t in g.attrs["targets"]]
            if target is None:
                i = 0
            elif str(target) in targets:
                i = targets.index(str(target))
            else:
                continue
            ids.append(str(g.attrs["id"]))
            maps.append(np.asarray(g["pooled"][i]))
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
        parent = self.root.require_group(name)
        key = id_to_key(item.id)
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
        parent = self.root.require_group(FAILURES)
        parent.create_group(
            id_to_key(item.id),
            overwrite=True,
            attributes={"id": item.id, "path": display_path(item.path), "error": error, "done": True},
        )

    def clear_failure(self, image_id: str) -> None:
        parent = self._group(FAILURES)
        key = id_to_key(image_id)
        if parent is not None and key in parent:
            try:
                del parent[key]
            except (KeyError, FileNotFoundError):  # a concurrent writer removed it
                pass

    # -- perturbation curves (bowlrp-evaluate --store) ----------------------------------------
    def write_curves(self, item: ImageInput, result: dict) -> None:
        """One image's curves ``{method: (repeats, steps + 1)}`` and numbers, ``done`` last."""
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
        failures = self._group(EVALUATION_FAILURES)
        if failures is not None and id_to_key(item.id) in failures:
            try:
                del failures[id_to_key(item.id)]
            except (KeyError, FileNotFoundError):
                pass

    def write_curves_failure(self, item: ImageInput, error: str) -> None:
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
        out["curves"] = {m: np.asarray(g[m][...]).tolist() for m in g.attrs["methods"]}
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

    root = zarr.open_group(_store_arg(location), mode="a", storage_options=storage_options)
    attrs = dict(root.attrs)
    if attrs and attrs.get("format") != FORMAT:
        raise StoreError(f"{display_path(location)} is a Zarr store but not a bowlrp relevance store")
    if not attrs:
        root.update_attributes({"format": FORMAT, "version": VERSION, "grid": DEFAULT_GRID})
    key = _json(key)
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
            if name in root:
                del root[name]
        group = root.require_group(EVALUATION)
    group.update_attributes({"key": key})
    root.require_group(EVALUATION_FAILURES)
    return RelevanceStore(location, root)


def store_lock(location, program: str):
    """A context manager holding the run lock of the store at ``location``.

    Local stores: :class:`bowlrp._utils.lock.FolderLock` on the store folder (created
    if needed), so a second run is refused with one line naming the pid.
    Stores behind URLs: no lock (a no-op; see the module docstring).
    """
    if is_local(location):
        path = _local_path(location)
        if path.exists() and not path.is_dir():
            raise StoreError(f"{display_path(location)} is a file, not a relevance store")
        path.mkdir(parents=True, exist_ok=True)
        return _locked_and_swept(path, program)
    return contextlib.nullcontext()


# zarr's LocalStore writes every file as "<name>.<32 hex digits>.partial" and renames it
_PARTIAL_WRITE = re.compile(r"\.[0-9a-f]{32}\.partial$")


@contextlib.contextmanager
def _locked_and_swept(path: Path, program: str):
    """Hold the run lock; then remove the temporaries of writes a killed run left behind.

    Under the lock no other run writes, so every ``*.<uuid>.partial`` file is an orphan
    (zarr renames a temporary into place only when its write is complete; a record
    counts only once its ``done`` attribute is written, so no record depends on one).
    """
    with FolderLock(path, program):
        sweep_partial_writes(path)
        yield


def sweep_partial_writes(path) -> int:
    """Delete zarr's leftover temporary files under a local store; returns how many."""
    removed = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            if _PARTIAL_WRITE.search(name):
                Path(dirpath, name).unlink(missing_ok=True)
                removed += 1
    return removed


def _store_arg(location):
    text = str(os.fspath(location))
    return str(_local_path(text)) if is_local(text) else text


def open(location, storage_options: dict | None = None) -> RelevanceStore:  # noqa: A001
    """Open a relevance store for reading (a path or an fsspec URL).

    Examples
    --------
    >>> store = bowlrp.runs.store.open("out.zarr")              # doctest: +SKIP
    >>> len(store), store.ids()[:3]                        # doctest: +SKIP
    >>> ids, pooled = store.pooled_maps("horse")           # (n, 32, 32) for SpRAy  # doctest: +SKIP
    """
    return RelevanceStore.open(location, "r", storage_options)
