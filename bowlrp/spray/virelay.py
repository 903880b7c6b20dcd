"""SpRAy results as a ViRelAy project: ``bowlrp-spray ... --export-virelay DIR``.

ViRelAy (``pip install 'bowlrp[virelay]'``, then ``virelay DIR/project.yaml``) is the
interactive viewer of the SpRAy authors. :func:`export_virelay` writes, from the
:class:`~bowlrp.spray.report.ClassAnalysis` list of
:func:`~bowlrp.spray.report.analyse_heatmaps` or
:func:`~bowlrp.spray.report.analyse_store`, a directory that ViRelAy 0.6's loader
(``virelay.model.Project``) opens as it is::

    DIR/project.yaml        the project: name, model, and the four files below
    DIR/label-map.json      [{"index": i, "word_net_id": "n0000000i", "name": class name}, ...]
    DIR/dataset.h5          data (N, H, W, 3) uint8, label (N,) uint32
    DIR/attribution.h5      attribution (N, H, W, 3) float32, label (N,), prediction (N, C), index (N,)
                            (``index`` up to INDEX_LIMIT maps: row i is sample i either way)
    DIR/analysis.h5         per category: index, embedding/<name>, cluster/<name>
    DIR/index.csv           index,id,path,class: ViRelAy's sample index -> bowlrp's image id and file
    DIR/bowlrp-virelay.json what bowlrp wrote here (a later export replaces only such a directory)

One sample per analysed map: sample ``i`` of the dataset, attribution ``i`` and
the ``index`` entries of the analysis database are the same map, so an image
explained for two classes is two samples. The layout follows what
``virelay/model.py`` reads where ViRelAy's documentation differs from it:

- an attribution is (H, W, 3): the loader moves axes of 3-D arrays only and its
  colour maps sum the last axis, so each pixel's relevance ``R`` is written as
  ``R/3`` on each of three channels (their sum is ``R``, in float32);
- a category is an HDF5 group named by its label's ``word_net_id`` (that is how
  the loader finds the category's human-readable name); ``cluster/<name>`` holds
  the cluster of each map (attribute ``k``, the number of clusters),
  ``embedding/<name>`` the coordinates (attribute ``eigenvalue`` on the spectral
  embedding, the eigenvalues its columns belong to); ViRelAy draws two columns of
  an embedding (chosen on its page) and opens the first one listed (t-SNE, when there is one);
- ViRelAy lists the clusterings and embeddings of the *first* category only,
  so only the names every category has are written (a warning names the others).

Images and maps are written at one shape, the most common one (``common_shape``),
scaled down to ``max_side`` pixels at most: a map of another shape is resized
(:func:`_resized_map`) so that its sum is kept. An image that is not known (a
heatmap folder analysed without ``--images``) or cannot be read is replaced by its
heatmap drawn in the ``bwr`` colour map.
``label`` is the class the map explains (bowlrp's records do not hold the true
label); ``prediction`` holds the decision values the record holds (the explained
class's score; a store record's score for each of its targets), 0 elsewhere.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm.auto import tqdm

from .._utils.atomic import atomic_write_bytes
from .._utils.csv_cells import csv_cell
from .._utils.signals import deferred_signals
from .._utils.validation import as_float_image, display_path
from ..exceptions import BowlrpError
from ..image import colorize, common_shape
from .heatmap_files import HeatmapFileError, load_map, skip_or_raise
from .spectral import knn_affinity, laplacian_eigenvalues, normalize_pooled

__all__ = [
    "ANALYSIS_METHOD", "MANIFEST", "VirelayExport", "VirelayExportError", "check_destination",
    "clusterings", "embeddings", "export_virelay", "label_map", "require_h5py", "spectral_embedding",
]  # fmt: skip

#: the name ViRelAy shows for the analysis (its server maps "_" and "-" into each other: neither is used)
ANALYSIS_METHOD = "SpRAy"
#: the file that marks a directory as a bowlrp ViRelAy export, listing what was written
MANIFEST = "bowlrp-virelay.json"
FORMAT = "bowlrp-virelay-export"
PROJECT, LABEL_MAP, DATASET, ATTRIBUTION, ANALYSIS, INDEX = (
    "project.yaml", "label-map.json", "dataset.h5", "attribution.h5", "analysis.h5", "index.csv",
)  # fmt: skip
FILES = (PROJECT, LABEL_MAP, DATASET, ATTRIBUTION, ANALYSIS, INDEX, MANIFEST)
#: attribution.h5 holds ``index`` up to this many maps: ViRelAy 0.6 tests ``i in index`` by
#: reading the dataset row by row for every attribution it shows (0.7 s for 10,000 rows on a
#: busy 2-core machine); without ``index`` it takes row ``i`` as sample ``i``, which it is here
INDEX_LIMIT = 1000
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


class VirelayExportError(BowlrpError, ValueError):
    """The export cannot be written: a destination that is not ours, classes that do not fit."""


@dataclass(frozen=True)
class VirelayExport:
    """What :func:`export_virelay` wrote.

    Attributes
    ----------
    path : Path
        The project directory.
    project : Path
        ``path / "project.yaml"``: open it with ``virelay``.
    n_samples : int
        Maps written (samples of the dataset).
    categories : dict
        Category (HDF5 group, a ``word_net_id``) -> the class name it stands for.
    clusterings, embeddings : list of str
        The names written for every category.
    dropped : list of str
        Clusterings or embeddings left out because some category lacks them.
    """

    path: Path
    project: Path
    n_samples: int
    categories: dict[str, str]
    clusterings: list[str]
    embeddings: list[str]
    dropped: list[str] = field(default_factory=list)


def label_map(names: Sequence[str]) -> list[dict]:
    """ViRelAy's label map: one entry per class of the model, in the order of its outputs.

    ``word_net_id`` is WordNet-style (``"n"`` and eight digits: the class index), so
    ViRelAy's lookups by id work; the ids are not WordNet synsets.
    """
    return [{"index": i, "word_net_id": f"n{i:08d}", "name": str(name)} for i, name in enumerate(names)]


def _n_clusters(labels: np.ndarray) -> int:
    """Clusters in a labelling; -1 (noise of DBSCAN-like methods) is not a cluster."""
    return int(len(np.unique(labels[labels >= 0])))


def clusterings(sp) -> dict[str, tuple[np.ndarray, dict]]:
    """Every clustering a fitted SpRAy carries: name -> (labels (n,) int64, HDF5 attributes).

    First ``labels_`` as ``"eigengap"`` (the clustering SpRAy picked, with its
    ``eigengap``; the same name for every class, whatever its number of clusters)
    or, with a fixed ``n_clusters``, as ``"spectral-k<k>"``; then every entry of
    ``clusterings_`` when the estimator has one. Attributes: ``k`` (clusters; -1,
    the noise of DBSCAN-like methods, is not one) and, where the estimator has
    them, ``score`` (``clustering_scores_``) and ``eigengap`` (``clustering_eigengaps_``).
    """
    out: dict[str, tuple[np.ndarray, dict]] = {}
    labels = np.asarray(sp.labels_, dtype=np.int64)
    if isinstance(sp.n_clusters, str):
        out["eigengap"] = (labels, {"k": _n_clusters(labels), "eigengap": float(sp.eigengap_)})
    else:
        out[f"spectral-k{int(sp.n_clusters_)}"] = (labels, {"k": _n_clusters(labels)})
    scores = getattr(sp, "clustering_scores_", None) or {}
    gaps = getattr(sp, "clustering_eigengaps_", None) or {}
    for name, values in (getattr(sp, "clusterings_", None) or {}).items():
        values = np.asarray(values, dtype=np.int64)
        attrs = {"k": _n_clusters(values)}
        for key, table in (("score", scores), ("eigengap", gaps)):
            if name in table:
                attrs[key] = float(table[name])
        out[str(name)] = (values, attrs)
    return out


def spectral_embedding(sp, pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The spectral embedding of a SpRAy that carries none: eigenvalues (m,) and coordinates (n, m).

    The ``m = len(sp.eigenvalues_)`` eigenvectors ``u_i`` of ``L_sym = I - D^-1/2 W D^-1/2``
    with the smallest eigenvalues, on the same graph as ``sp`` (pooled maps normalised
    with ``sp.normalize``, kNN with ``k = sp.n_neighbors_``), as ``D^-1/2 U`` (the
    coordinates spectral clustering runs k-means on): row ``j`` places map ``j``.
    """
    X = normalize_pooled(np.asarray(pooled, dtype=np.float64), sp.normalize)
    W = knn_affinity(X, sp.n_neighbors_)
    values, vectors = laplacian_eigenvalues(W, len(sp.eigenvalues_))
    degree = np.asarray(W.sum(axis=1), dtype=np.float64).ravel()
    return values, vectors / np.sqrt(degree)[:, None]


def embeddings(sp, pooled: np.ndarray | None) -> dict[str, tuple[np.ndarray, dict]]:
    """Every embedding of a fitted SpRAy: name -> (coordinates (n, d) float, HDF5 attributes).

    The entries of ``embeddings_`` when the estimator has one, ``"tsne"``
    (``embedding_``) when computed, and ``"spectral"`` (from ``embeddings_``, else
    computed by :func:`spectral_embedding` from ``pooled``) with the attribute
    ``eigenvalue``: the eigenvalues of its columns. 2-D embeddings come first
    (``"tsne"`` leading): ViRelAy opens the first one.
    """
    found: dict[str, np.ndarray] = {}
    for name, values in (getattr(sp, "embeddings_", None) or {}).items():
        found[str(name)] = np.asarray(values, dtype=np.float64)
    if "tsne" not in found and getattr(sp, "embedding_", None) is not None:
        found["tsne"] = np.asarray(sp.embedding_, dtype=np.float64)
    attrs: dict[str, dict] = {name: {} for name in found}
    if "spectral" in found:
        values = getattr(sp, "spectral_eigenvalues_", None)
        values = sp.eigenvalues_ if values is None else values
        attrs["spectral"] = {"eigenvalue": np.asarray(values, dtype=np.float64)[: found["spectral"].shape[1]]}
    elif pooled is not None:
        values, coordinates = spectral_embedding(sp, pooled)
        found["spectral"], attrs["spectral"] = coordinates, {"eigenvalue": values}
    order = sorted(found, key=lambda name: (found[name].shape[1] != 2, name != "tsne"))
    return {name: (found[name], attrs[name]) for name in order}


# -- where the project goes ------------------------------------------------------------
def _manifest_files(out: Path) -> list[str] | None:
    """The files a bowlrp export's manifest lists, or None when ``out`` holds no such manifest."""
    path = out / MANIFEST
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > 1 << 20:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) and data.get("format") == FORMAT else None
    if not isinstance(files, list) or not all(isinstance(f, str) and f in FILES for f in files):
        return None
    return files


def check_destination(out: str | os.PathLike) -> bool:
    """Whether ``out`` can take an export; True when it holds an earlier bowlrp export to replace.

    ``out`` may be missing or an empty directory (False), or a directory holding
    exactly the files an earlier export listed in its manifest, all regular files
    (True). Anything else raises: a link, a file, a directory with other files in it.

    Raises
    ------
    VirelayExportError
        One line naming ``out`` and what to do.
    """
    out = Path(out)
    shown = display_path(out)
    if out.is_symlink():
        raise VirelayExportError(f"{shown} is a symbolic link; give a directory path for the ViRelAy project")
    if not out.exists():
        return False
    if not out.is_dir():
        raise VirelayExportError(
            f"{shown} exists and is not a directory; choose a new one for the ViRelAy project"
        )
    entries = sorted(os.scandir(out), key=lambda e: e.name)
    if not entries:
        return False
    files = _manifest_files(out)
    if files is None:
        raise VirelayExportError(
            f"{shown} is not empty and is not a ViRelAy project written by bowlrp; choose a new directory"
        )
    for entry in entries:
        if entry.name not in (*files, MANIFEST) or not entry.is_file(follow_symlinks=False):
            raise VirelayExportError(
                f"{shown} holds {entry.name!r}, which bowlrp did not write there; move it away or "
                "choose a new directory for the ViRelAy project"
            )
    return True


def _directory_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o777 & ~mask


def _publish(tmp: Path, out: Path) -> None:
    """Put the finished project ``tmp`` at ``out`` (an earlier export there is replaced whole)."""
    with deferred_signals():
        replace = check_destination(out)  # again: the directory may have changed meanwhile
        if not replace:
            if out.exists():
                out.rmdir()
            tmp.rename(out)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)
            raise
    for name in FILES:  # the earlier export: only the files bowlrp wrote (checked above)
        with contextlib.suppress(FileNotFoundError):
            (old / name).unlink()
    old.rmdir()


# -- the samples -----------------------------------------------------------------------
def _target_name(analysis) -> str:
    """The class name the records of an analysis give (``target_name``), else its target."""
    names = {r.meta.get("target_name") for r in analysis.records}
    name = names.pop() if len(names) == 1 else None
    return name if isinstance(name, str) and name else str(analysis.target)


def _classes(analyses, labels, class_names) -> tuple[list[str], dict[str, int]]:
    """Class names in label order, and target text -> label index."""
    if labels is None:
        labels = [a.target for a in analyses]
        if class_names is None:
            class_names = [_target_name(a) for a in analyses]
    labels = [str(v) for v in labels]
    names = [str(v) for v in (labels if class_names is None else class_names)]
    if len(names) != len(labels):
        raise VirelayExportError(
            f"{len(labels)} labels but {len(names)} class names; give one name per label"
        )
    if len(set(labels)) != len(labels):
        raise VirelayExportError(f"the labels {labels} repeat a label; give each class once")
    index = {label: i for i, label in enumerate(labels)}
    targets = [str(a.target) for a in analyses]
    missing = [t for t in targets if t not in index]
    if missing:
        raise VirelayExportError(
            f"class {missing[0]!r} of the analysis is none of the model's labels {labels}; "
            "give the labels of the model that was explained"
        )
    if len(set(targets)) != len(targets):
        raise VirelayExportError(f"the analyses repeat a class ({targets}); give each class once")
    return names, index


def _export_shape(records, max_side: int | None) -> tuple[int, int]:
    h, w = common_shape(r.shape for r in records)
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
    return int(h), int(w)


def _resized_map(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``m`` at ``shape``, its sum kept.

    Area interpolation (linear when enlarged) times ``m.size / out.size``; then, when
    the sum is not near zero (``|sum| > 10^-3 sum |x|``, same sign), scaled to ``m.sum()``
    exactly (a near-zero sum would make that factor arbitrary).
    """
    if m.shape == shape:
        return m
    smaller = shape[0] * shape[1] < m.shape[0] * m.shape[1]
    out = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_LINEAR)
    out = out * (m.size / out.size)
    total, target = float(out.sum()), float(m.sum())
    if total * target > 0 and abs(total) > 1e-3 * float(np.abs(out).sum()):
        out = out * (target / total)
    return out


def _picture(record, heatmap: np.ndarray, shape: tuple[int, int], on_skip) -> np.ndarray:
    """The image of a record as (H, W, 3) uint8 at ``shape``; its heatmap when there is none."""
    picture = None
    if record.image is not None:
        try:
            image = as_float_image(record.image)
            if image.ndim == 2:
                image = np.repeat(image[:, :, None], 3, axis=2)
            picture = (image * 255).round().astype(np.uint8)
        except (BowlrpError, OSError) as exc:
            skip_or_raise(on_skip, record.image, exc, stage="picture")
    if picture is None:
        scale = float(np.abs(heatmap).max())
        picture = colorize(heatmap / scale if scale > 0 else heatmap, "bwr")
    if picture.shape[:2] != shape:
        picture = cv2.resize(picture, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return picture


def _prediction(record, index: dict[str, int], label: int, n_classes: int) -> np.ndarray:
    """Decision values the record holds at their class index; 0 for the others."""
    out = np.zeros(n_classes, dtype=np.float32)
    meta = record.meta
    pairs = []
    if isinstance(meta.get("targets"), list) and isinstance(meta.get("scores"), list):
        pairs = [(str(t), s) for t, s in zip(meta["targets"], meta["scores"])]
    elif "score" in meta:
        pairs = [(None, meta["score"])]
    for target, score in pairs:
        try:
            value = float(score)
        except (TypeError, ValueError):
            continue
        if np.isfinite(value) and (target is None or target in index):
            out[label if target is None else index[target]] = value
    return out


def _load_map(record, on_skip) -> np.ndarray:
    """The record's map (H, W) float64; with ``on_skip``, zeros (reported) when it cannot be read."""
    try:
        return load_map(record)
    except HeatmapFileError as exc:
        skip_or_raise(on_skip, record.npy, exc, stage="picture")
        return np.zeros(record.shape, dtype=np.float64)


def _write_samples(h5py, tmp: Path, analyses, index, shape, n_classes: int, quiet: bool, on_skip) -> list:
    """dataset.h5 and attribution.h5, one map at a time; the rows of index.csv."""
    pairs = [(a, r) for a in analyses for r in a.records]
    n, (h, w) = len(pairs), shape
    labels = np.array([index[str(a.target)] for a, _ in pairs], dtype=np.uint32)
    predictions = np.zeros((n, n_classes), dtype=np.float32)
    rows = []
    with h5py.File(tmp / DATASET, "w") as ds, h5py.File(tmp / ATTRIBUTION, "w") as at:
        data = ds.create_dataset("data", (n, h, w, 3), dtype="uint8", chunks=(1, h, w, 3), **_COMPRESSION)
        ds.create_dataset("label", data=labels)
        relevance = at.create_dataset(
            "attribution", (n, h, w, 3), dtype="float32", chunks=(1, h, w, 3), **_COMPRESSION
        )
        progress = tqdm(
            pairs, desc="writing the ViRelAy project", unit="map", leave=False, disable=quiet or n < 20
        )
        for i, (a, r) in enumerate(progress):
            m = _load_map(r, on_skip)
            relevance[i] = np.repeat((_resized_map(m, shape) / 3.0)[:, :, None], 3, axis=2)
            data[i] = _picture(r, m, shape, on_skip)
            predictions[i] = _prediction(r, index, int(labels[i]), n_classes)
            path = r.image if r.image is not None else r.meta.get("image", "")
            rows.append(
                [i, csv_cell(display_path(r.stem)), csv_cell(display_path(path)), csv_cell(str(a.target))]
            )
        at.create_dataset("label", data=labels)
        at.create_dataset("prediction", data=predictions)
        if n <= INDEX_LIMIT:  # ViRelAy searches it row by row per lookup; without it: row i is sample i
            at.create_dataset("index", data=np.arange(n, dtype=np.uint32))
    return rows


def _write_analysis(h5py, path: Path, analyses, categories, found_c, found_e, keep_c, keep_e) -> None:
    """analysis.h5: per category its sample indices, embeddings and clusterings (creation order kept)."""
    offset = 0
    with h5py.File(path, "w", track_order=True) as f:
        for a, category, cl, em in zip(analyses, categories, found_c, found_e):
            n = len(a.records)
            g = f.create_group(category, track_order=True)
            g.create_dataset("index", data=np.arange(offset, offset + n, dtype=np.uint32))
            offset += n
            group = g.create_group("embedding", track_order=True)
            for name in keep_e:
                values, attrs = em[name]
                group.create_dataset(name, data=np.asarray(values, dtype=np.float32))
                for key, value in attrs.items():
                    group[name].attrs[key] = np.asarray(value, dtype=np.float32)
            group = g.create_group("cluster", track_order=True)
            for name in keep_c:
                labels, attrs = cl[name]
                group.create_dataset(name, data=np.asarray(labels, dtype=np.int64))
                for key, value in attrs.items():
                    group[name].attrs[key] = value


def require_h5py():
    """The ``h5py`` module; a one-line error saying how to install it when it is missing."""
    try:
        import h5py  # optional dependency: the virelay extra
    except ImportError:
        raise VirelayExportError("a ViRelAy project needs h5py: pip install 'bowlrp[virelay]'") from None
    return h5py


def _common_names(found: list[dict]) -> tuple[list[str], list[str]]:
    """Names every class has (the first class's order), and the others."""
    keep = [name for name in found[0] if all(name in f for f in found[1:])]
    dropped = sorted({name for f in found for name in f} - set(keep))
    return keep, dropped


def export_virelay(
    analyses,
    out_dir: str | os.PathLike,
    *,
    labels: Sequence | None = None,
    class_names: Sequence[str] | None = None,
    project_name: str = "bowlrp SpRAy",
    model_name: str = "bowlrp model",
    dataset_name: str = "explained images",
    attribution_method: str = "LRP (bowlrp)",
    max_side: int | None = 256,
    quiet: bool = False,
    on_skip=None,
) -> VirelayExport:
    """Write SpRAy results as a ViRelAy project into ``out_dir`` (see the module's docstring).

    Parameters
    ----------
    analyses : list of ClassAnalysis
        From :func:`~bowlrp.spray.report.analyse_heatmaps` or
        :func:`~bowlrp.spray.report.analyse_store`, one per class (at least one).
    out_dir : path
        A new or empty directory, or an earlier export of bowlrp (replaced whole).
        The project is built beside it and renamed into place: it appears complete
        or not at all.
    labels : sequence or None
        The model's class labels in the order of its outputs (``model.classes_``);
        every analysed class must be one of them (compared as text). None: the
        analysed classes.
    class_names : sequence of str or None
        The display name of each label (``model.class_names_``). None: the labels as
        text (without ``labels``: the ``target_name`` the records hold).
    project_name, model_name, dataset_name, attribution_method : str
        Shown by ViRelAy.
    max_side : int or None, default 256
        Images and maps larger than this (their common shape) are scaled down for the
        viewer; None keeps them.
    quiet : bool
        No progress bar.
    on_skip : callable or None
        Called with a :class:`~bowlrp.spray.heatmap_files.SkippedRecord` for an image
        that cannot be read (its heatmap is drawn instead) or a map that cannot be
        read any more (written as zeros); None: these raise.

    Returns
    -------
    VirelayExport

    Raises
    ------
    VirelayExportError
        ``out_dir`` holds anything but an earlier bowlrp export, h5py is missing, or
        the classes do not fit ``labels``.
    """
    h5py = require_h5py()
    analyses = list(analyses)
    if not analyses:
        raise VirelayExportError("nothing to export to ViRelAy: no class was analysed")
    if max_side is not None and int(max_side) < 1:
        raise VirelayExportError(f"max_side must be positive, got {max_side}")
    out = Path(out_dir)
    check_destination(out)
    names, index = _classes(analyses, labels, class_names)
    entries = label_map(names)
    categories = [entries[index[str(a.target)]]["word_net_id"] for a in analyses]
    found_c = [clusterings(a.spray) for a in analyses]
    found_e = [embeddings(a.spray, a.pooled) for a in analyses]
    keep_c, dropped_c = _common_names(found_c)
    keep_e, dropped_e = _common_names(found_e)
    if dropped_c or dropped_e:
        warnings.warn(
            f"ViRelAy shows the clusterings and embeddings every class has; left out: "
            f"{', '.join(dropped_c + dropped_e)}",
            UserWarning,
            stacklevel=2,
        )
    shape = _export_shape([r for a in analyses for r in a.records], max_side)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, _directory_mode())
        rows = _write_samples(h5py, tmp, analyses, index, shape, len(names), quiet, on_skip)
        _write_analysis(h5py, tmp / ANALYSIS, analyses, categories, found_c, found_e, keep_c, keep_e)
        atomic_write_bytes(tmp / LABEL_MAP, json.dumps(entries, indent=2).encode("utf-8"))
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["index", "id", "path", "class"])
        writer.writerows(rows)
        atomic_write_bytes(tmp / INDEX, text.getvalue().encode("utf-8"))
        project = {
            "project": {
                "name": str(project_name),
                "model": str(model_name),
                "label_map": LABEL_MAP,
                "dataset": {
                    "name": str(dataset_name),
                    "type": "hdf5",
                    "path": DATASET,
                    "input_width": shape[1],
                    "input_height": shape[0],
                    "down_sampling_method": "none",
                    "up_sampling_method": "none",
                },
                "attributions": {
                    "attribution_method": str(attribution_method),
                    "attribution_strategy": "true_label",
                    "sources": [ATTRIBUTION],
                },
                "analyses": [{"analysis_method": ANALYSIS_METHOD, "sources": [ANALYSIS]}],
            }
        }
        atomic_write_bytes(
            tmp / PROJECT, yaml.safe_dump(project, sort_keys=False, allow_unicode=True).encode("utf-8")
        )
        manifest = {
            "format": FORMAT,
            "version": 1,
            "files": [f for f in FILES if f != MANIFEST],
            "samples": len(rows),
            "shape": list(shape),
            "categories": dict(zip(categories, (names[index[str(a.target)]] for a in analyses))),
            "clusterings": keep_c,
            "embeddings": keep_e,
        }
        atomic_write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=2).encode("utf-8"))
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return VirelayExport(
        path=out,
        project=out / PROJECT,
        n_samples=len(rows),
        categories=manifest["categories"],
        clusterings=keep_c,
        embeddings=keep_e,
        dropped=dropped_c + dropped_e,
    )
