"""Find and read the relevance maps ``bowlrp explain --out DIR`` writes (:mod:`bowlrp.runs.folder_layout`).

``bowlrp-explain`` writes, per image, ``<stem>_relevance.npy`` (H x W float64)
beside ``<stem>.json`` (with the explained ``"target"`` and the ``"image"``
path); the files may sit in subdirectories of ``DIR`` (outputs mirror the
input tree) next to other JSON files (a run summary), which are ignored.

A bad record (an unreadable or corrupt file, a name that is not UTF-8, an
image outside the images folder) is skipped and reported through ``on_skip``
when one is given, so one broken file never costs the analysis of the rest.
A record's ``"image"`` field is untrusted: only files inside the images
folder the user names are ever read. The one exception is a relevance store
analysed without an images folder (``bowlrp-spray --store`` without ``--images``,
:func:`attach_recorded_images`): its records' absolute paths are used when they
name a regular image file (by suffix) that exists and can be opened; the image
is then read with the same bounds as every image (``as_float_image``).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._utils.validation import IMAGE_SUFFIXES, display_path
from ..exceptions import BowlrpError
from ..runs.folder_layout import RELEVANCE_SUFFIX as SUFFIX
from ..runs.folder_layout import record_path


class HeatmapFileError(BowlrpError, ValueError):
    """A heatmap file or its companion is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class SkippedRecord:
    """A record left out of the analysis (or drawn without its image), and why.

    Attributes
    ----------
    record : str
        The record as one printable line (its file, or its id in a store).
    reason : str
        What is wrong with it, one printable line.
    stage : str
        ``"record"`` (left out of the analysis) or ``"picture"`` (analysed, but
        its example is drawn without its image).
    """

    record: str
    reason: str
    stage: str = "record"

    def line(self) -> str:
        """One line for people: the record, and why it was skipped."""
        what = "skipped" if self.stage == "record" else "drawn without its image"
        return f"{what} {self.record}: {self.reason}"


OnSkip = Callable[[SkippedRecord], None]


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (no lone surrogates from undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def skip_or_raise(on_skip: OnSkip | None, record: object, exc: Exception, stage: str = "record") -> None:
    """Report ``exc`` about ``record`` through ``on_skip``; without ``on_skip``, raise it."""
    if on_skip is None:
        raise exc
    name, message = display_path(record), display_path(str(exc).splitlines()[0] if str(exc) else repr(exc))
    if message.startswith(name + ": "):  # the reason names the record already
        message = message[len(name) + 2 :]
    on_skip(SkippedRecord(name, message, stage))


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
    pooled: np.ndarray | None = field(default=None, repr=False)  # a store's pooled map, if any


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


def _read_record(root: Path, npy: Path) -> HeatmapRecord:
    rel = npy.relative_to(root).as_posix()
    if not is_utf8(rel):
        raise HeatmapFileError(
            f"{display_path(npy)}: the name is not valid UTF-8; rename it and its .json beside it"
        )
    js = record_path(npy)
    if not js.is_file():
        raise HeatmapFileError(
            f"{npy} has no {js.name} beside it; keep the files bowlrp-explain writes together"
        )
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise HeatmapFileError(f"cannot read {js}: {exc}; re-create it with bowlrp-explain") from None
    if isinstance(meta, dict) and meta.get("complete", True) is not True:
        raise HeatmapFileError(
            f"{js} is the claim of a run stopped while writing this image; run bowlrp-explain again"
        )
    if not isinstance(meta, dict) or "target" not in meta:
        raise HeatmapFileError(f'{js} has no "target" field; was it written by bowlrp-explain?')
    target = str(meta["target"])
    image = meta.get("image")
    if not is_utf8(target) or (isinstance(image, str) and not is_utf8(image)):
        raise HeatmapFileError(f"{js} holds text that is not valid UTF-8; re-create it with bowlrp-explain")
    return HeatmapRecord(npy, js, rel[: -len(SUFFIX)], target, meta, _read_shape(npy))


def find_heatmaps(root, on_skip: OnSkip | None = None) -> list[HeatmapRecord]:
    """All ``*_relevance.npy`` under ``root`` (recursively, sorted) with their JSON.

    Parameters
    ----------
    root : path
        The folder ``bowlrp-explain --out`` wrote.
    on_skip : callable or None
        Called with a :class:`SkippedRecord` for each bad record, which is left
        out (None: the first bad record raises).

    Raises
    ------
    HeatmapFileError
        ``root`` is not a directory or holds no (readable) heatmaps; without
        ``on_skip`` also when a heatmap has no JSON beside it, a file is
        unreadable, a JSON has no ``"target"`` or a name is not UTF-8.
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
        try:
            records.append(_read_record(root, npy))
        except HeatmapFileError as exc:
            skip_or_raise(on_skip, npy, exc)
    if not records:
        raise HeatmapFileError(
            f"none of the {len(found)} heatmap(s) under {root} could be read (see above); "
            "re-create them with bowlrp-explain"
        )
    return records


def group_by_target(records: list[HeatmapRecord]) -> dict[str, list[HeatmapRecord]]:
    """Records per explained class, classes in order of first appearance."""
    groups: dict[str, list[HeatmapRecord]] = {}
    for r in records:
        groups.setdefault(r.target, []).append(r)
    return groups


def load_map(record: HeatmapRecord) -> np.ndarray:
    """The heatmap (H, W) float64; a clear error if it is unreadable, of another shape or not finite."""
    try:
        m = record.loader() if record.loader is not None else np.load(record.npy, allow_pickle=False)
        m = np.asarray(m).astype(np.float64, copy=False)
    except HeatmapFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reading problem is reported the same way
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, BowlrpError):  # a store's own error names the array and what to do
            raise HeatmapFileError(message) from None
        raise HeatmapFileError(
            f"cannot read {record.npy}: {message}; re-create it with bowlrp-explain"
        ) from None
    if m.shape != tuple(record.shape):
        raise HeatmapFileError(f"{record.npy} holds an array of shape {m.shape}, not {tuple(record.shape)}")
    if not np.all(np.isfinite(m)):
        raise HeatmapFileError(f"{record.npy} contains NaN or infinite values")
    return m


def _inside(path: Path, folder: Path) -> Path | None:
    """``path`` with links resolved when it lies inside ``folder`` (resolved), else None."""
    real = Path(os.path.realpath(path))
    return real if real == folder or folder in real.parents else None


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _candidates(record: HeatmapRecord, images_dir: Path) -> tuple[list[Path], list[Path]]:
    """Where the JSON's ``"image"`` field points, and where the stem points, under ``images_dir``."""
    named = []
    field_value = record.meta.get("image")
    if isinstance(field_value, str) and field_value:
        p = Path(field_value)
        named = [p] if p.is_absolute() else [images_dir / p, Path.cwd() / p]
    by_stem = [images_dir / (record.stem + s) for s in IMAGE_SUFFIXES]
    by_stem += [images_dir / (record.stem + s.upper()) for s in IMAGE_SUFFIXES]
    return named, by_stem


def find_image(record: HeatmapRecord, images_dir) -> Path:
    """The image a heatmap belongs to, always a file inside ``images_dir``.

    Tried in order: the JSON's ``"image"`` path (absolute; or relative to
    ``images_dir``, then to the working directory), then the heatmap's stem
    relative to the heatmap root under ``images_dir`` with any image suffix.
    A candidate outside ``images_dir`` (after resolving links) is never read,
    nor even looked at; the ``"image"`` field is untrusted.

    Raises
    ------
    HeatmapFileError
        The ``"image"`` field names a file that is not an image (by its suffix),
        or no candidate is an image file inside ``images_dir``.
    """
    images_dir = Path(images_dir)
    root = Path(os.path.realpath(images_dir))
    hint = record.meta.get("image")
    if isinstance(hint, str) and hint and not _is_image_name(Path(hint)):
        raise HeatmapFileError(
            f"{record.json or record.npy} names {hint!r} as its image, which is not an image file "
            f"({', '.join(IMAGE_SUFFIXES)}); re-create the record with bowlrp-explain"
        )
    named, by_stem = _candidates(record, images_dir)
    inside = [real for real in (_inside(p, root) for p in named + by_stem) if real is not None]
    outside = bool(named) and all(_inside(p, root) is None for p in named)
    for real in inside:
        if real.is_file():
            return real
    where = " (the named image lies outside it and was not read)" if outside else ""
    raise HeatmapFileError(
        f"no image for {record.npy} under {images_dir}{where} (JSON image field: {hint!r}, "
        f"stem {record.stem!r}); pass the folder the images were explained from"
    )


def attach_images(
    records: list[HeatmapRecord], images_dir, on_skip: OnSkip | None = None
) -> list[HeatmapRecord]:
    """Set ``record.image`` for every record; returns the records that have one.

    Without ``on_skip``, raises on the first record that has none (see
    :func:`find_image`); with it, such records are reported and left out.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise HeatmapFileError(f"image directory not found (or not a directory): {images_dir}")
    kept = []
    for r in records:
        try:
            r.image = find_image(r, images_dir)
        except HeatmapFileError as exc:
            skip_or_raise(on_skip, r.json or r.npy, exc)
            continue
        kept.append(r)
    return kept


def recorded_image(record: HeatmapRecord) -> Path | None:
    """The image a store record names, when it can be drawn: an absolute path (links
    resolved) to a regular file with an image suffix that can be opened; else None.

    A special file (a FIFO, a device), a folder, a missing or unreadable file, a
    relative path or a name that is not an image's is never opened for drawing.
    """
    value = record.meta.get("image")
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    if not path.is_absolute() or not _is_image_name(path):
        return None
    real = Path(os.path.realpath(path))
    try:
        if not stat.S_ISREG(os.stat(real).st_mode):
            return None
        with open(real, "rb"):  # readable by this user
            pass
    except (OSError, ValueError):
        return None
    return real if _is_image_name(real) else None


def attach_recorded_images(records: list[HeatmapRecord]) -> int:
    """Set ``record.image`` to the image each record names (:func:`recorded_image`) where it
    has none yet and that image can be drawn; returns how many records got one."""
    found = 0
    for r in records:
        if r.image is None and (image := recorded_image(r)) is not None:
            r.image = image
            found += 1
    return found
