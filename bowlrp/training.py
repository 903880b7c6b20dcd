"""Train a pipeline on a data set on disk (the library behind ``bowlrp-train``).

The memory-lean path: vocabularies from descriptors sampled per image while
streaming (:meth:`Pipeline.fit_vocabularies`), feature vectors stored as
float32 (:meth:`Pipeline.features`), the SVM on them with Gram matrices built
in float64 blocks (:meth:`Pipeline.fit_classifier`).

Where the three stages run is the ``stages`` argument of :func:`train`:
:class:`SerialStages` (this process; ``n_jobs`` images at a time with joblib) or
:class:`bowlrp.runs.train_dask.DaskStages` (tasks on a Dask cluster, features in a
resumable Zarr store, Gram matrices in tiles); :func:`train` itself is the same
code for both, and both give the same model.

Labels (VOC convention, see :mod:`bowlrp.datasets.voc`):

- one class ``c``: a binary model whose positive class is ``c`` and whose
  other class is ``"(not c)"``; images difficult for ``c`` are left out;
- several classes, one per image (folders, single-label CSV): a one-vs-rest
  model over the class names;
- several classes of a multi-label data set (VOC, multi-label CSV): one task
  per class (multi-label); ``classes_`` are the indices 0..k-1 in the order
  given, the names are recorded in the model's config (``config["dataset"]
  ["trained_classes"]``); images difficult for any chosen class are left out.

Writing the model (:func:`locked_output`, :func:`save_model`): an existing
file is replaced only with ``overwrite``; a directory, a symbolic link, a
missing or unwritable folder are refused before any work starts; a lock
beside the file (``.<name>.lock``, :class:`OutputLock`) keeps a second run
from writing the same file while the first trains.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._utils.lock import FolderLock, LockedError
from ._utils.validation import display_path
from .config import load_config
from .datasets.voc import DatasetError, ImageDataset
from .exceptions import BowlrpError
from .model_files import save
from .pipeline import Pipeline

LOCK_SUFFIX = ".lock"


class OutputError(BowlrpError, ValueError):
    """A model file cannot be written where asked (it exists, is a directory or a link, no folder)."""


def negative_label(name: str) -> str:
    """The other class of a one-class (binary) model."""
    return f"(not {name})"


@dataclass
class TrainingLabels:
    rows: np.ndarray  # indices into the data set
    y: np.ndarray  # labels as the classifier gets them
    classes: list  # the chosen class names
    mode: str  # "binary", "multiclass" or "multilabel"


def training_labels(dataset: ImageDataset, classes=None) -> TrainingLabels:
    """Which images train a model of ``classes`` (None: all) and with what labels."""
    names = list(classes) if classes else list(dataset.classes)
    cols = [dataset.class_index(c) for c in names]
    if len(names) == 1:
        c = names[0]
        if sorted([c, negative_label(c)])[1] != c:
            raise DatasetError(f"class name {c!r} sorts before {negative_label(c)!r}; rename the class")
        rows, y01 = dataset.binary(c)
        y = np.where(y01 == 1, c, negative_label(c))
        return TrainingLabels(rows, y, names, "binary")
    L = dataset.labels[:, cols]
    positives = (L == 1).sum(axis=1)
    if not dataset.multilabel:
        rows = np.flatnonzero((positives == 1) & np.all(L != 0, axis=1))
        y = np.array([names[int(np.argmax(L[i] == 1))] for i in rows])
        return TrainingLabels(rows, y, names, "multiclass")
    rows = np.flatnonzero(np.all(L != 0, axis=1))
    return TrainingLabels(rows, (L[rows] == 1).astype(int), names, "multilabel")


def _subsample(labels: TrainingLabels, max_images: int | None, seed) -> TrainingLabels:
    if max_images is None or len(labels.rows) <= max_images:
        return labels
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(labels.rows), int(max_images), replace=False))
    return TrainingLabels(labels.rows[keep], labels.y[keep], labels.classes, labels.mode)


_logger = logging.getLogger(__name__)


def _log(message: str, report: Callable[[str], None] | None) -> None:
    """A stage message: to ``report`` when given, else to the ``bowlrp.training`` logger (INFO)."""
    if report is not None:
        report(message)
    else:
        _logger.info(message)


class SerialStages:
    """Where :func:`train` runs its three stages: in this process, images in parallel with joblib.

    The no-Dask spelling (``n_jobs`` of the pipeline, ``bowlrp-train --n-jobs``). A
    distributed run passes another object with the same four methods
    (:class:`bowlrp.runs.train_dask.DaskStages`), so :func:`train` is the one code path
    of serial, local-cluster and remote-cluster training; only where each stage's work
    runs differs.
    """

    @contextlib.contextmanager
    def running(self, report: Callable[[str], None] | None = None) -> Iterator[SerialStages]:
        """The run's resources (none here); a distributed run starts or joins its cluster."""
        yield self

    def fit_vocabularies(self, pipe: Pipeline, images: list) -> None:
        """:meth:`Pipeline.fit_vocabularies`: descriptors sampled per image, the vocabularies fitted."""
        pipe.fit_vocabularies(images)

    def features(self, pipe: Pipeline, images: list) -> np.ndarray:
        """:meth:`Pipeline.features`: (n, sum V_u) float32 feature vectors."""
        return pipe.features(images)

    def fit_classifier(self, pipe: Pipeline, X: np.ndarray, y: np.ndarray, compress_linear=False) -> None:
        """:meth:`Pipeline.fit_classifier` on the features ``X`` (n, sum V_u) and labels ``y`` (n,)."""
        pipe.fit_classifier(X, y, compress_linear=compress_linear)


def train(
    dataset: ImageDataset,
    config,
    classes=None,
    max_images: int | None = None,
    n_jobs: int | None = None,
    quiet: bool = True,
    *,
    report: Callable[[str], None] | None = None,
    stages=None,
):
    """Fit a :class:`~bowlrp.pipeline.Pipeline` from ``config`` on ``dataset``.

    Parameters
    ----------
    dataset : ImageDataset
    config : path or dict
        A pipeline config (``configs/*.yaml``).
    classes : list of str or None
        The classes to learn (None: all of the data set's).
    max_images : int or None
        Train on a random subset of at most this many images (seeded by the
        config's ``random_state``).
    n_jobs : int or None
        Images processed in parallel (joblib; the serial stages).
    quiet : bool, default True
        No progress bars (``bowlrp-train`` draws them unless ``--quiet``).
    report : callable or None
        Called with a one-line message as each stage starts (``bowlrp-train`` prints
        them); None: the messages go to the ``bowlrp.training`` logger at INFO level,
        so a call from Python prints nothing unless logging is set up to show them.
    stages : SerialStages, DaskStages or None
        Where the three stages run (vocabularies, features, classifier). None:
        :class:`SerialStages` (this process, ``n_jobs``). A
        :class:`bowlrp.runs.train_dask.DaskStages` runs them on a Dask cluster and
        gives the same model.

    Returns
    -------
    pipeline : fitted Pipeline, its ``config`` extended by ``dataset`` (the data
        set's description and the trained classes) and ``training`` (the summary)
    summary : dict
        images, descriptors sampled per channel, feature size, training
        accuracy, seconds per stage and in total
    """

    cfg = load_config(config)
    labels = _subsample(training_labels(dataset, classes), max_images, cfg.get("random_state"))
    if len(labels.rows) < 2:
        raise DatasetError(
            f"{dataset.root}: fewer than two usable training images for {', '.join(labels.classes)}"
        )
    pipe = Pipeline.from_config(cfg, n_jobs=n_jobs, verbose=not quiet)
    images = [dataset.paths[i] for i in labels.rows]
    stages = SerialStages() if stages is None else stages
    times = {}
    with stages.running(report):
        t0 = time.perf_counter()
        _log(
            f"{len(images)} images, classes {', '.join(labels.classes)} ({labels.mode}); "
            "fitting vocabularies",
            report,
        )
        stages.fit_vocabularies(pipe, images)
        times["vocabularies_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        _log(f"encoding {len(images)} images into {sum(pipe.channel_sizes_)} float32 features", report)
        X = stages.features(pipe, images)
        times["features_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        _log("fitting the SVM", report)
        stages.fit_classifier(pipe, X, labels.y, compress_linear="auto")  # linear: one weight vector
        times["classifier_s"] = time.perf_counter() - t2
    accuracy = float(pipe.classifier_.score(X, labels.y))
    times["total_s"] = time.perf_counter() - t0
    summary = {
        "images": len(images),
        "classes": labels.classes,
        "mode": labels.mode,
        "descriptors_sampled": [int(n) for n in pipe.n_descriptors_sampled_],
        "feature_size": int(X.shape[1]),
        "training_accuracy": accuracy,
        **{k: round(v, 2) for k, v in times.items()},
    }
    described = dataset.describe()
    described["trained_classes"] = labels.classes
    described["n_training_images"] = len(images)
    pipe.set_params(config={**cfg, "dataset": described, "training": summary})
    return pipe, summary


def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse a model file name that cannot (or must not) be written; cheap, so call it first.

    Parameters
    ----------
    path : str or PathLike
        The model file to write.
    overwrite : bool
        Allow replacing an existing regular file.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        ``path`` exists (without ``overwrite``), is a directory, a symbolic link
        or not a regular file, or its folder is missing or not writable.
    """
    path = Path(os.fsdecode(path))
    shown = display_path(path)
    if path.is_symlink():
        raise OutputError(f"{shown} is a symbolic link; give the name of a regular file for the model")
    if path.is_dir():
        raise OutputError(f"{shown} is a directory; give a file name for the model")
    if path.exists() and not path.is_file():
        raise OutputError(f"{shown} is not a regular file; choose another name for the model")
    if path.exists() and not overwrite:
        raise OutputError(f"{shown} already exists; pass --overwrite to replace it, or choose another name")
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {shown}: folder {display_path(folder)} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {shown}: folder {display_path(folder)} is not writable")
    return path


class OutputLock(FolderLock):
    """Exclusive lock on one output file for the lifetime of a ``with`` block.

    A :class:`~bowlrp._utils.lock.FolderLock` whose lock file is
    ``.<name>.lock`` beside the output (owner's host and pid inside; free
    again when its process ends, however it ends; removed on release). A live owner
    is refused with one line naming the file and the pid.
    """

    def __init__(self, path: str | os.PathLike, program: str = "bowlrp"):
        output = Path(os.fsdecode(path))
        super().__init__(output.parent, program)
        self.output = output
        self.path = output.parent / f".{output.name}{LOCK_SUFFIX}"

    def acquire(self) -> OutputLock:
        shown = display_path(self.output)
        try:
            super().acquire()
        except LockedError as exc:
            owner = exc.owner
            if owner is None:  # the lock file is a link or not a file: that message says so
                raise
            by = f"{owner.get('program', 'another run')} (pid {owner.get('pid')} on {owner.get('host')})"
            raise LockedError(
                f"{shown} is being written by {by if owner else 'another run'}; "
                f"wait for it or choose another name (lock file {display_path(self.path)})"
            ) from None
        except OSError as exc:
            raise OutputError(f"cannot write {shown}: {exc.strerror or exc}") from None
        return self


@contextlib.contextmanager
def locked_output(
    path: str | os.PathLike, overwrite: bool = False, program: str = "bowlrp"
) -> Iterator[Path]:
    """Check ``path`` (:func:`check_output`) and hold its :class:`OutputLock` while the block runs.

    Enter it before reading data or training, write with :func:`save_model`
    inside it. The check is repeated once the lock is held (a run that held
    it may just have written the file).

    Yields
    ------
    Path
        ``path``.
    """
    path = check_output(path, overwrite)
    with OutputLock(path, program):
        yield check_output(path, overwrite)


def save_model(model, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` atomically (:func:`bowlrp.model_files.save`) after :func:`check_output`."""
    return save(model, check_output(path, overwrite))


__all__ = [
    "OutputError",
    "OutputLock",
    "SerialStages",
    "TrainingLabels",
    "check_output",
    "locked_output",
    "negative_label",
    "save_model",
    "train",
    "training_labels",
]
