"""Find and read the relevance maps ``bowlrp explain --out DIR`` writes (:mod:`bowlrp.runs.folder_layout`).

``bowlrp-explain`` writes, per image, ``<stem>_relevance.npy`` (H x W float64)
beside ``<stem>.json`` (with the explained ``"target"`` and the ``"image"``
path); the files may sit in subdirectories of ``DIR`` (outputs mirror the
input tree) next to other JSON files (a run summary), which are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._utils.validation import IMAGE_SUFFIXES
from ..exceptions import BowlrpError
from ..runs.folder_layout import RELEVANCE_SUFFIX as SUFFIX
from ..runs.folder_layout import record_path


class HeatmapFileError(BowlrpError, ValueError):
    """A heatmap file or its companion is missing, unreadable or inconsistent."""


@dataclass
class HeatmapRecord:
    """One explained image on disk.

    Attributes
    ----------
    npy : Path
        ``<stem>_relevance.npy``.
    json : Path
        ``<stem>.json`` beside it.
    stem : str
        Path of the stem relative to the heatmap root, with ``/`` separators.
    target : str
        The explained class, as text (the JSON's ``"target"``).
    meta : dict
        The whole JSON.
    shape : tuple (H, W)
    image : Path or None
        The image the map belongs to, once resolved (see :func:`attach_images`).
    loader : callable or None
        Reads the map when it is not an ``.npy`` file (a relevance store record).
    """

    npy: Path
    json: Path
    stem: str
    target: str
    meta: dict = field(repr=False)
    shape: tuple[int, int]
    image: Path | None = None
    loader: Callable[[], np.ndarray] | None = field(default=None, repr=False)  # maps kept elsewhere


def _read_shape(npy: Path) -> tuple[int, int]:
    try:
        arr = np.load(npy, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any reading problem is reported the same way
        raise HeatmapFileError(
            f"cannot read {npy}: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
            f"re-create it with bowlrp-explain"
        ) from None
    if arr.ndim != 2 or arr.size == 0:
        raise HeatmapFileError(f"{npy} holds an array of shape {arr.shape}, not a 2-D heatmap")
    return int(arr.shape[0]), int(arr.shape[1])


def find_heatmaps(root) -> list[HeatmapRecord]:
    """All ``*_relevance.npy`` under ``root`` (recursively, sorted) with their JSON.

    Raises
    ------
    HeatmapFileError
        ``root`` is not a directory, holds no heatmaps, a heatmap has no JSON
        beside it, or a JSON is unreadable or has no ``"target"``.
    """
    root = Path(root)
    if not root.is_dir():
        raise HeatmapFileError(f"heatmap directory not found (or not a directory): {root}")
    found = sorted(
        p for p in root.rglob("*" + SUFFIX) if p.is_file() and not p.name.startswith(".")
    )  # skip temporaries
    if not found:
        raise HeatmapFileError(
            f"no *{SUFFIX} files under {root}; write them with bowlrp-explain --out {root}"
        )
    records = []
    for npy in found:
        js = record_path(npy)
        if not js.is_file():
            raise HeatmapFileError(
                f"{npy} has no {js.name} beside it; keep the files bowlrp-explain writes together"
            )
        try:
            meta = json.loads(js.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HeatmapFileError(f"cannot read {js}: {exc}") from None
        if not isinstance(meta, dict) or "target" not in meta:
            raise HeatmapFileError(f'{js} has no "target" field; was it written by bowlrp-explain?')
        stem = npy.relative_to(root).as_posix()[: -len(SUFFIX)]
        records.append(HeatmapRecord(npy, js, stem, str(meta["target"]), meta, _read_shape(npy)))
    return records


def group_by_target(records: list[HeatmapRecord]) -> dict[str, list[HeatmapRecord]]:
    """Records per explained class, classes in order of first appearance."""
    groups: dict[str, list[HeatmapRecord]] = {}
    for r in records:
        groups.setdefault(r.target, []).append(r)
    return groups


def load_map(record: HeatmapRecord) -> np.ndarray:
    """The heatmap (H, W) float64; a clear error if it is not finite."""
    m = record.loader() if record.loader is not None else np.load(record.npy, allow_pickle=False)
    m = np.asarray(m).astype(np.float64, copy=False)
    if not np.all(np.isfinite(m)):
        raise HeatmapFileError(f"{record.npy} contains NaN or infinite values")
    return m


def _candidates(record: HeatmapRecord, images_dir: Path) -> list[Path]:
    out = []
    field_value = record.meta.get("image")
    if isinstance(field_value, str) and field_value:
        p = Path(field_value)
        if p.is_absolute():
            out.append(p)
        else:
            out += [images_dir / p, Path.cwd() / p]
    out += [images_dir / (record.stem + s) for s in IMAGE_SUFFIXES]
    out += [images_dir / (record.stem + s.upper()) for s in IMAGE_SUFFIXES]
    return out


def find_image(record: HeatmapRecord, images_dir) -> Path:
    """The image a heatmap belongs to.

    Tried in order: the JSON's ``"image"`` path (absolute; or relative to
    ``images_dir``, then to the working directory), then the heatmap's stem
    relative to the heatmap root under ``images_dir`` with any image suffix.
    """
    images_dir = Path(images_dir)
    for p in _candidates(record, images_dir):
        if p.is_file():
            return p
    hint = record.meta.get("image")
    raise HeatmapFileError(
        f"no image for {record.npy} under {images_dir} (JSON image field: {hint!r}, "
        f"stem {record.stem!r}); pass the folder the images were explained from"
    )


def attach_images(records: list[HeatmapRecord], images_dir) -> None:
    """Set ``record.image`` for every record (raises on the first that has none)."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise HeatmapFileError(f"image directory not found (or not a directory): {images_dir}")
    for r in records:
        r.image = find_image(r, images_dir)
