"""Image data sets on disk: PASCAL VOC layout, one folder per class, a CSV list.

Readers are lazy: they return paths and labels; images are read only when a
pipeline describes them (every bowlrp stage accepts a path where it accepts
an image). Labels follow the VOC convention, one column per class::

    labels[i, c] =  1   image i shows class c
                   -1   it does not
                    0   only "difficult" objects of class c (VOC): left out of
                        training and of the average precision for class c

Errors are one line naming the file and what to do (:class:`DatasetError`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._utils.validation import IMAGE_SUFFIXES
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


def _read_split_file(path: Path, with_values: bool) -> dict:
    out: dict = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if with_values:
            if len(parts) != 2 or parts[1] not in ("1", "-1", "0"):
                raise DatasetError(f"{path}, line {n}: expected '<id> 1|-1|0', got {line.strip()!r}")
            value = int(parts[1])
        else:
            value = 1
        if parts[0] in out and out[parts[0]] != value:
            raise DatasetError(f"{path}: image {parts[0]} is listed twice with different labels")
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


def read_voc(root, split: str = "trainval", classes=None, check_images: bool = True) -> ImageDataset:
    """A PASCAL VOC split: ids, image paths and the class label matrix.

    Parameters
    ----------
    root : path to ``VOCdevkit/VOC2007`` (holds ``JPEGImages/``, ``Annotations/``,
        ``ImageSets/Main/``)
    split : "trainval", "train", "val" or "test"
    classes : list of str or None
        None: every class with a ``<class>_<split>.txt`` file.
    check_images : bool
        Check that every listed image exists (one ``stat`` per image).
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
        for p in paths:
            if not p.is_file():
                raise DatasetError(f"image listed in {split_file.name} but absent: {p}")
    matrix = np.array([[labels[c][i] for c in classes] for i in ids], dtype=np.int8).reshape(
        len(ids), len(classes)
    )
    return ImageDataset(paths, matrix, classes, ids, root, split, "voc", ann if ann.is_dir() else None)


# -- one folder per class ----------------------------------------------------------
def read_folder(root, classes=None) -> ImageDataset:
    """``root/<class>/*.jpg``: one class per image, the folder's name."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data set root not found: {root}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = tuple(p.name for p in folders)
    if classes is not None:
        missing = [c for c in classes if c not in names]
        if missing:
            raise DatasetError(f"no folder {root / missing[0]} for class {missing[0]!r}")
    paths, cls = [], []
    for k, folder in enumerate(folders):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += images
        cls += [k] * len(images)
    if len(names) < 1 or not paths:
        raise DatasetError(f"{root} has no class folders with images (expected root/<class>/*.jpg)")
    labels = -np.ones((len(paths), len(names)), dtype=np.int8)
    labels[np.arange(len(paths)), cls] = 1
    ids = [str(p.relative_to(root)) for p in paths]
    return ImageDataset(paths, labels, names, ids, root, None, "folder")


# -- CSV list -----------------------------------------------------------------------
def read_csv(path, classes=None) -> ImageDataset:
    """``path,label[,label...]`` rows (an optional header starting with ``path``).

    Image paths are relative to the CSV file's folder unless absolute; an image
    may carry several labels (multi-label). Listing an image twice with
    different labels is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CSV list not found: {path}")
    rows: dict[str, tuple] = {}
    with open(path, newline="") as fh:
        for n, row in enumerate(csv.reader(fh), 1):
            row = [c.strip() for c in row]
            if not row or not row[0] or row[0].startswith("#"):
                continue
            if n == 1 and row[0].lower() in ("path", "image", "file", "filename"):
                continue
            labels = tuple(sorted({c for c in row[1:] if c}))
            if not labels:
                raise DatasetError(f"{path}, line {n}: {row[0]!r} has no label (path,label[,label...])")
            if row[0] in rows and rows[row[0]] != labels:
                raise DatasetError(
                    f"{path}, line {n}: {row[0]!r} is listed again with different "
                    f"labels ({', '.join(rows[row[0]])} vs {', '.join(labels)})"
                )
            rows[row[0]] = labels
    if not rows:
        raise DatasetError(f"{path} lists no images")
    names = tuple(classes) if classes is not None else tuple(sorted({c for v in rows.values() for c in v}))
    index = {c: k for k, c in enumerate(names)}
    paths, matrix = [], -np.ones((len(rows), len(names)), dtype=np.int8)
    for i, (rel, labels) in enumerate(rows.items()):
        p = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        if not p.is_file():
            raise DatasetError(f"image listed in {path} but absent: {p}")
        paths.append(p)
        for c in labels:
            if c in index:
                matrix[i, index[c]] = 1
    return ImageDataset(paths, matrix, names, list(rows), path.parent, None, "csv")


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


def read_dataset(root, format: str | None = None, split: str | None = None, classes=None) -> ImageDataset:
    """Any of the three layouts; ``format`` None detects it (see :func:`detect_format`)."""
    fmt = format or detect_format(root)
    if fmt == "voc":
        return read_voc(root, split or "trainval", classes)
    if split is not None:
        raise DatasetError(f"--split applies to VOC data sets only, and {root} is a {fmt} data set")
    if fmt == "folder":
        return read_folder(root, classes)
    if fmt == "csv":
        return read_csv(root, classes)
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
