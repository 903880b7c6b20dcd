"""Train a pipeline on a data set on disk (the library behind ``bowlrp-train``).

The memory-lean path: vocabularies from descriptors sampled per image while
streaming (:meth:`Pipeline.fit_vocabularies`), feature vectors stored as
float32 (:meth:`Pipeline.features`), the SVM on them with Gram matrices built
in float64 blocks (:meth:`Pipeline.fit_classifier`).

Labels (VOC convention, see :mod:`bowlrp.datasets.voc`):

- one class ``c``: a binary model whose positive class is ``c`` and whose
  other class is ``"(not c)"``; images difficult for ``c`` are left out;
- several classes, one per image (folders, single-label CSV): a one-vs-rest
  model over the class names;
- several classes of a multi-label data set (VOC, multi-label CSV): one task
  per class (multi-label); ``classes_`` are the indices 0..k-1 in the order
  given, the names are recorded in the model's config (``config["dataset"]
  ["trained_classes"]``); images difficult for any chosen class are left out.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from .config import load_config
from .datasets.voc import DatasetError, ImageDataset
from .pipeline import Pipeline


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


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"[bowlrp-train] {message}", file=sys.stderr, flush=True)


def train(
    dataset: ImageDataset,
    config,
    classes=None,
    max_images: int | None = None,
    n_jobs: int | None = None,
    quiet: bool = False,
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
        Images processed in parallel.
    quiet : bool
        No progress bars or stage messages.

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
    times = {}
    t0 = time.perf_counter()
    _log(
        f"{len(images)} images, classes {', '.join(labels.classes)} ({labels.mode}); fitting vocabularies",
        quiet,
    )
    pipe.fit_vocabularies(images)
    times["vocabularies_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    _log(f"encoding {len(images)} images into {sum(pipe.channel_sizes_)} float32 features", quiet)
    X = pipe.features(images)
    times["features_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    _log("fitting the SVM", quiet)
    pipe.fit_classifier(X, labels.y)
    times["classifier_s"] = time.perf_counter() - t2
    if all(type(k).__name__ == "Linear" for k in pipe.classifier_.kernels_):
        pipe.classifier_.compress_linear()
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


__all__ = ["TrainingLabels", "negative_label", "train", "training_labels"]
