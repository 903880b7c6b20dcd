"""Image data sets on disk: PASCAL VOC layout, one folder per class, a CSV list.

Readers are lazy: they return paths and labels; images are read only when a
pipeline describes them (every bowlrp stage accepts a path where it accepts
an image). Labels follow the VOC convention, one column per class::

    labels[i, c] =  1   image i shows class c
                   -1   it does not
                    0   only "difficult" objects of class c (VOC): left out of
                        training and of the average precision for class c

Errors are one line naming the file and what to do (:class:`DatasetError`).

Every image a data set lists must lie under its root (the CSV file's folder, the
VOC root, the folder of class folders) once ``..`` and symbolic links are
resolved: absolute paths, ``..`` reaching out and links leading out are refused
unless ``allow_outside_root=True`` (see ``docs/security.md``). VOC image ids must
be plain names; a class folder's images must be regular files (never a FIFO or a
device, which are refused without being opened).
"""

from __future__ import annotations

import codecs
import csv
import errno
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._utils.validation import IMAGE_SUFFIXES, display_path
from ..exceptions import BowlrpError
from .voc_annotations import read_voc_annotation

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


class DatasetError(BowlrpError, ValueError):
    """A data set on disk is missing, incomplete or inconsistent."""


@dataclass
class ImageDataset:
    """Paths and labels of a data set; nothing is read until asked for.

    Attributes
    ----------
    paths : list of Path, length n
    labels : ndarray (n, n_classes) int8 with values 1, -1, 0 (see module doc)
    classes : tuple of str
    ids : list of str
        Image ids (VOC ids, or paths relative to the root).
    root : Path
    split : str or None
    format : {"voc", "folder", "csv"}
    """

    paths: list
    labels: np.ndarray
    classes: tuple
    ids: list
    root: Path
    split: str | None = None
    format: str = "folder"
    _annotation_dir: Path | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def multilabel(self) -> bool:
        """True when some image carries more than one class."""
        return bool(np.any((self.labels == 1).sum(axis=1) > 1))

    def class_index(self, name: str) -> int:
        try:
            return self.classes.index(name)
        except ValueError:
            raise DatasetError(
                f"unknown class {name!r} in {self.root}; classes are {', '.join(self.classes)}"
            ) from None

    def binary(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Images usable for class ``name`` and their 0/1 labels (difficult ones left out).

        Returns
        -------
        rows : ndarray (m,) int, indices into the data set
        y : ndarray (m,) int, 1 where the image shows the class
        """
        col = self.labels[:, self.class_index(name)]
        rows = np.flatnonzero(col != 0)
        return rows, (col[rows] == 1).astype(int)

    def subset(self, rows) -> ImageDataset:
        """The data set restricted to ``rows`` (same classes)."""
        rows = np.asarray(rows, dtype=int)
        return ImageDataset(
            [self.paths[i] for i in rows],
            self.labels[rows],
            self.classes,
            [self.ids[i] for i in rows],
            self.root,
            self.split,
            self.format,
            self._annotation_dir,
        )

    def annotation(self, i: int):
        """The VOC annotation (objects, boxes, difficult flags) of image ``i``."""
        if self._annotation_dir is None:
            raise DatasetError(f"{self.root} is a {self.format} data set: it has no box annotations")
        return read_voc_annotation(self._annotation_dir / f"{self.ids[i]}.xml")

    def describe(self) -> dict:
        """What a model file records about its training data."""
        return {
            "root": str(self.root),
            "format": self.format,
            "split": self.split,
            "classes": list(self.classes),
            "n_images": len(self),
            "positives": {c: int((self.labels[:, k] == 1).sum()) for k, c in enumerate(self.classes)},
        }


def _resolves_inside(path: Path, root: Path) -> bool:
    """True when ``path``, with ``..`` and links resolved, is ``root`` (resolved) or under it."""
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte: not provably inside
        return False


# -- PASCAL VOC ----------------------------------------------------------------
def _voc_dirs(root: Path) -> tuple[Path, Path, Path]:
    if not root.is_dir():
        raise DatasetError(f"data set root not found: {root}")
    jpeg, ann, main = root / "JPEGImages", root / "Annotations", root / "ImageSets" / "Main"
    for d in (jpeg, main):
        if not d.is_dir():
            raise DatasetError(
                f"{root} is not a PASCAL VOC root: {d.name}/ is missing "
                "(point --data at .../VOCdevkit/VOC2007)"
            )
    return jpeg, ann, main


#: Characters a VOC image id never holds: it names ``JPEGImages/<id>.jpg``, not a path.
_NOT_IN_IDS = ("/", "\\", ":", "\0")


def _read_split_file(path: Path, with_values: bool) -> dict:
    shown = display_path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read split file {shown}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        lineno = exc.object[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{shown}, line {lineno}: not valid UTF-8; a split file lists '<id>' or '<id> 1|-1|0' per line"
        ) from None
    out: dict = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if parts[0] in (".", "..") or any(c in parts[0] for c in _NOT_IN_IDS):
            raise DatasetError(
                f"{shown}, line {n}: image id {parts[0]!r} is not a plain name (no '/', '\\', ':' "
                "or '..'); VOC ids name files in JPEGImages/ and Annotations/, fix the split file"
            )
        if with_values:
            if len(parts) != 2 or parts[1] not in ("1", "-1", "0"):
                raise DatasetError(f"{shown}, line {n}: expected '<id> 1|-1|0', got {line.strip()!r}")
            value = int(parts[1])
        else:
            value = 1
        if parts[0] in out and out[parts[0]] != value:
            raise DatasetError(f"{shown}: image {parts[0]} is listed twice with different labels")
        out[parts[0]] = value
    return out


def voc_classes(root, split: str = "trainval") -> tuple[str, ...]:
    """Classes with a ``<class>_<split>.txt`` file (VOC order when they are VOC classes)."""
    _, _, main = _voc_dirs(Path(root))
    found = sorted(p.name[: -len(f"_{split}.txt")] for p in main.glob(f"*_{split}.txt"))
    if not found:
        raise DatasetError(
            f"no <class>_{split}.txt files in {main}; is '{split}' a split of this "
            "data set (trainval, train, val, test)?"
        )
    if set(found) <= set(VOC_CLASSES):
        return tuple(c for c in VOC_CLASSES if c in found)
    return tuple(found)


def read_voc(
    root,
    split: str = "trainval",
    classes=None,
    check_images: bool = True,
    *,
    allow_outside_root: bool = False,
) -> ImageDataset:
    """A PASCAL VOC split: ids, image paths and the class label matrix.

    Parameters
    ----------
    root : path to ``VOCdevkit/VOC2007`` (holds ``JPEGImages/``, ``Annotations/``,
        ``ImageSets/Main/``)
    split : "trainval", "train", "val" or "test"
    classes : list of str or None
        None: every class with a ``<class>_<split>.txt`` file.
    check_images : bool
        Check that every listed image exists and, with ``..`` and symbolic links
        resolved, lies under ``root`` (one ``stat`` and one ``realpath`` per image).
    allow_outside_root : bool
        Accept images whose path resolves outside ``root`` (e.g. ``JPEGImages/`` or
        its files are links to another disk). Only for data sets you trust.

    Raises
    ------
    DatasetError
        One line naming the file: a missing folder or split file, split files that
        disagree, an id that is not a plain name (``/``, ``\\``, ``:``, ``..``), an
        absent image, or an image resolving outside ``root``.
    """
    root = Path(root)
    jpeg, ann, main = _voc_dirs(root)
    classes = tuple(classes) if classes is not None else voc_classes(root, split)
    split_file = main / f"{split}.txt"
    ids = list(_read_split_file(split_file, False)) if split_file.is_file() else None
    labels = {}
    for c in classes:
        path = main / f"{c}_{split}.txt"
        if not path.is_file():
            raise DatasetError(f"split file not found: {path} (is {c!r} a class of this data set?)")
        labels[c] = _read_split_file(path, True)
        if ids is None:
            ids = list(labels[c])
        if set(labels[c]) != set(ids):
            extra = sorted(set(labels[c]) ^ set(ids))[:3]
            raise DatasetError(
                f"{path} and {split_file.name if split_file.is_file() else classes[0]} "
                f"list different images (e.g. {', '.join(extra)}); the split files "
                "disagree"
            )
    if not ids:
        raise DatasetError(f"split {split!r} of {root} lists no images")
    paths = [jpeg / f"{i}.jpg" for i in ids]
    if check_images:
        inside = root.resolve()
        for i, p in zip(ids, paths):
            if not p.is_file():
                raise DatasetError(f"image listed in {split_file.name} but absent: {display_path(p)}")
            if not allow_outside_root and not _resolves_inside(p, inside):
                raise DatasetError(
                    f"{display_path(p)} (id {i!r}) is a link leading outside the data set's root "
                    f"{display_path(inside)}; copy the image into JPEGImages/, or pass "
                    "allow_outside_root=True if you trust the data set"
                )
    matrix = np.array([[labels[c][i] for c in classes] for i in ids], dtype=np.int8).reshape(
        len(ids), len(classes)
    )
    return ImageDataset(paths, matrix, classes, ids, root, split, "voc", ann if ann.is_dir() else None)


# -- one folder per class ----------------------------------------------------------
#: What a class folder's entry with an image suffix is when it is not a file (``st_mode`` tests).
_NOT_FILES = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _folder_entries(folder: Path) -> list[os.DirEntry]:
    """The entries of ``folder`` sorted by name (no ``.``/``..``); a one-line error if unreadable."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"cannot list {display_path(folder)}: {exc.strerror or exc}") from None


def _entry_stat(entry: os.DirEntry, path: Path) -> os.stat_result:
    """``stat`` of an entry, following links (one bounded system call: nothing is opened).

    A link loop (the kernel stops after a few dozen links) or a link to nothing is refused
    in one line naming the entry.
    """
    try:
        return entry.stat()
    except OSError as exc:
        shown = display_path(path)
        if exc.errno == errno.ELOOP:
            raise DatasetError(
                f"{shown} is a link loop (it leads back to itself); remove it from the data set"
            ) from None
        if entry.is_symlink() and exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DatasetError(
                f"{shown} is a link whose target does not exist; remove it or restore its target"
            ) from None
        raise DatasetError(f"cannot read {shown}: {exc.strerror or exc}") from None


def _entry_real(entry: os.DirEntry, path: Path, real_parent: Path) -> Path:
    """The entry's path with links resolved: ``real_parent / name`` unless the entry is a link."""
    if not entry.is_symlink():
        return real_parent / entry.name
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError) as exc:  # stat succeeded, so no loop; a race at most
        raise DatasetError(f"cannot resolve {display_path(path)}: {exc}") from None


def read_folder(root, classes=None, *, allow_outside_root: bool = False) -> ImageDataset:
    """``root/<class>/*.jpg``: one class per image, the folder's name.

    Class folders are the sub-folders of ``root`` whose names do not start with
    ``.``; their images are the entries with an image suffix (``.png``, ``.jpg``,
    ...), sorted by name. Only these two levels are listed, nothing deeper, so a
    link leading back into the data set is never walked round and round. Other
    entries are ignored and nothing is opened: images are read when a pipeline
    describes them.

    Parameters
    ----------
    root : path to the folder holding one sub-folder per class
    classes : list of str or None
        Classes that must have a folder (the data set's classes are all the folders).
    allow_outside_root : bool
        Accept class folders and images that are symbolic links leading outside
        ``root`` (e.g. to another disk). By default they are refused, so a folder
        from someone else reads nothing but the files inside it (links to ``/etc``,
        to the home folder...). Only for data sets you trust.

    Raises
    ------
    DatasetError
        One line naming the entry: a missing root, a class in ``classes`` with no
        folder, a class folder or image whose real path lies outside ``root``, a
        link loop or a link to nothing (class folder or image), an image name that
        is not a regular file (a FIFO, device, socket or folder named ``x.png``,
        refused without being opened; checked even with ``allow_outside_root``),
        no images at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data set root not found: {root}")
    inside = root.resolve()
    trust = "pass allow_outside_root=True if you trust the data set"
    folders: list[tuple[Path, Path]] = []  # (class folder as listed, its real path)
    for entry in _folder_entries(root):
        if entry.name.startswith("."):
            continue
        folder = root / entry.name
        if not stat.S_ISDIR(_entry_stat(entry, folder).st_mode):
            continue  # files beside the class folders: not part of the data set, not opened
        real = _entry_real(entry, folder, inside)
        if not allow_outside_root and not real.is_relative_to(inside):
            raise DatasetError(
                f"class folder {display_path(folder)} is a link leading outside the data set's root "
                f"{display_path(inside)}; copy the folder into the root, or {trust}"
            )
        folders.append((folder, real))
    names = tuple(folder.name for folder, _ in folders)
    if classes is not None:
        missing = [c for c in classes if c not in names]
        if missing:
            raise DatasetError(f"no folder {root / missing[0]} for class {missing[0]!r}")
    paths, cls = [], []
    for k, (folder, real_folder) in enumerate(folders):
        for entry in _folder_entries(folder):
            path = folder / entry.name
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            mode = _entry_stat(entry, path).st_mode
            real = _entry_real(entry, path, real_folder)
            if not allow_outside_root and not real.is_relative_to(inside):
                raise DatasetError(
                    f"{display_path(path)} is a link leading outside the data set's root "
                    f"{display_path(inside)}; copy the image into {display_path(folder)}, or {trust}"
                )
            if not stat.S_ISREG(mode):
                what = next((text for test, text in _NOT_FILES if test(mode)), "not a regular file")
                raise DatasetError(
                    f"{display_path(path)} is {what}, not an image file; a class folder holds image "
                    "files only (remove or rename it)"
                )
            paths.append(path)
            cls.append(k)
    if len(names) < 1 or not paths:
        raise DatasetError(f"{root} has no class folders with images (expected root/<class>/*.jpg)")
    labels = -np.ones((len(paths), len(names)), dtype=np.int8)
    labels[np.arange(len(paths)), cls] = 1
    ids = [str(p.relative_to(root)) for p in paths]
    return ImageDataset(paths, labels, names, ids, root, None, "folder")


# -- CSV list -----------------------------------------------------------------------
def _csv_text(path: Path, shown: str) -> str:
    """The CSV list's text (UTF-8, an optional byte order mark); one-line errors naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read CSV list {shown}: {exc.strerror or exc}") from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{shown}, line {lineno}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); a CSV list is "
            "UTF-8 text with path,label[,label...] rows (save it as UTF-8)"
        ) from None


def read_csv(path, classes=None, *, allow_outside_root: bool = False) -> ImageDataset:
    """``path,label[,label...]`` rows (an optional header starting with ``path``).

    Image paths are relative to the CSV file's folder; an image may carry
    several labels (multi-label). Listing an image twice with different labels
    is an error.

    Parameters
    ----------
    path : path to the CSV list, UTF-8 text (a byte order mark is allowed)
    classes : list of str or None
        None: every label found, sorted.
    allow_outside_root : bool
        Accept absolute image paths and paths that, with ``..`` and symbolic
        links resolved, lie outside the CSV file's folder. By default they are
        refused, so a list from someone else reads nothing but the files beside
        it. Only for lists you trust.

    Raises
    ------
    DatasetError
        One line naming the file (and the line): a missing or unreadable file,
        text that is not UTF-8 or not CSV, a row without label, an image listed
        twice with different labels, an image path outside the CSV file's folder,
        an absent image.
    """
    path = Path(path)
    shown = display_path(path)
    if not path.is_file():
        raise DatasetError(f"CSV list not found: {shown}")
    folder = path.parent
    inside = folder.resolve()
    rows: dict[str, tuple] = {}
    reader = csv.reader(io.StringIO(_csv_text(path, shown), newline=""))
    try:
        for n, row in enumerate(reader, 1):
            row = [c.strip() for c in row]
            if not row or not row[0] or row[0].startswith("#"):
                continue
            if n == 1 and row[0].lower() in ("path", "image", "file", "filename"):
                continue
            where = f"{shown}, line {reader.line_num}"
            labels = tuple(sorted({c for c in row[1:] if c}))
            if not labels:
                raise DatasetError(f"{where}: {row[0]!r} has no label (path,label[,label...])")
            if row[0] in rows and rows[row[0]] != labels:
                raise DatasetError(
                    f"{where}: {row[0]!r} is listed again with different "
                    f"labels ({', '.join(rows[row[0]])} vs {', '.join(labels)})"
                )
            if not allow_outside_root and (
                Path(row[0]).is_absolute() or not _resolves_inside(folder / row[0], inside)
            ):
                raise DatasetError(
                    f"{where}: image path {row[0]!r} leads outside the CSV file's folder "
                    f"{display_path(inside)} (absolute, '..' or a link); list images under that "
                    "folder, or pass allow_outside_root=True if you trust the list"
                )
            rows[row[0]] = labels
    except csv.Error as exc:
        raise DatasetError(
            f"{shown}, line {reader.line_num}: not a CSV list ({exc}); expected path,label[,label...] rows"
        ) from None
    if not rows:
        raise DatasetError(f"{shown} lists no images")
    names = tuple(classes) if classes is not None else tuple(sorted({c for v in rows.values() for c in v}))
    index = {c: k for k, c in enumerate(names)}
    paths, matrix = [], -np.ones((len(rows), len(names)), dtype=np.int8)
    for i, (rel, labels) in enumerate(rows.items()):
        p = Path(rel) if Path(rel).is_absolute() else folder / rel
        if not p.is_file():
            raise DatasetError(f"image listed in {shown} but absent: {display_path(p)}")
        paths.append(p)
        for c in labels:
            if c in index:
                matrix[i, index[c]] = 1
    return ImageDataset(paths, matrix, names, list(rows), folder, None, "csv")


# -- any of them --------------------------------------------------------------------
def detect_format(root) -> str:
    """ "voc", "csv" or "folder" from what is at ``root``."""
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() in (".csv", ".txt"):
            return "csv"
        raise DatasetError(f"{root} is a file but not a CSV list (path,label[,label...])")
    if not root.exists():
        raise DatasetError(f"data set root not found: {root}")
    if (root / "JPEGImages").is_dir() or (root / "ImageSets").is_dir():
        return "voc"
    return "folder"


def read_dataset(
    root,
    format: str | None = None,
    split: str | None = None,
    classes=None,
    *,
    allow_outside_root: bool = False,
) -> ImageDataset:
    """Any of the three layouts; ``format`` None detects it (see :func:`detect_format`).

    ``allow_outside_root``: accept images (and class folders) whose path resolves
    outside the data set's root (see :func:`read_csv`, :func:`read_voc`,
    :func:`read_folder`); off by default.
    """
    fmt = format or detect_format(root)
    if fmt == "voc":
        return read_voc(root, split or "trainval", classes, allow_outside_root=allow_outside_root)
    if split is not None:
        raise DatasetError(f"--split applies to VOC data sets only, and {root} is a {fmt} data set")
    if fmt == "folder":
        return read_folder(root, classes, allow_outside_root=allow_outside_root)
    if fmt == "csv":
        return read_csv(root, classes, allow_outside_root=allow_outside_root)
    raise DatasetError(f"unknown data set format {fmt!r}; use voc, folder or csv")


__all__ = [
    "DatasetError",
    "ImageDataset",
    "VOC_CLASSES",
    "detect_format",
    "read_csv",
    "read_dataset",
    "read_folder",
    "read_voc",
    "voc_classes",
]
