"""PASCAL VOC classification, per-class AP, explanations and context ratios (thesis ch. 4).

    make voc-experiment VOC_ROOT=data/voc/VOCdevkit/VOC2007                 # Fisher vectors
    make voc-experiment VOC_ROOT=... CONFIG=voc2009_bow TEST_SPLIT=val
    python experiments/voc.py --voc-root ROOT --config voc_fisher --out DIR
    python experiments/voc.py --voc-root ROOT --workers 2 ...               # train on Dask

Trains one multi-label model (one linear or kernel SVM per class, a class's
"difficult" images left out of that class only, as the devkit does) on
``trainval`` for every class, reports the VOC 2007 11-point AP per class and
the mAP on ``test`` (next to Chatfield et al. 2011's 61.7 for the Fisher
configuration), explains the test images that show each class, writes
per-class context ratios (mean positive relevance per pixel outside / inside
the class's boxes), the top-scored test images per class with their
heatmaps, and one binary model per class (``voc_horse.pkl`` ...).

Each test image is described once: one forward pass (a trace) gives its
scores for every class and the explanations of the classes it is explained
for (docs/voc_experiment.md). Which those are depends on the ranking of all
test images (``--max-explain`` keeps the best-scored positives of a class,
``--n-top`` the best-scored images of the figures), so the pass keeps, per
class, the best images seen so far and explains an image for a class when it
enters that running top: every image of the final selection is explained in
its own pass, and a few that later fall out of it cost a relevance pass
each, never a second forward pass. Output in ``--out``::

    metrics.json  timings.json  ap.csv  context.csv  context_images.csv  figures/<class>.png
    models/voc_<class>.pkl  models/voc_all.pkl  cache/ (resumable state)

``timings.json`` lists every invocation (a resumed run appends one): seconds
and peak resident memory (``ru_maxrss`` of this process and of its finished
child processes) after each stage.

Resumes after an interruption: the vocabulary, the model, the training
features (float32 rows of a memory-mapped ``.npy``, progress recorded after
each flushed chunk) and every test image's result (its scores, explanations
and the heatmaps the figures need: ``cache/<run>/test/``) are cached on disk
and written atomically; a rerun skips finished images.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import csv
import functools
import hashlib
import io as _io
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from joblib import effective_n_jobs
from numpy.lib.format import open_memmap
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bowlrp import image as pictures  # noqa: E402
from bowlrp._utils.atomic import atomic_writer, leftover_temporaries  # noqa: E402
from bowlrp._utils.mapped import release_pages  # noqa: E402
from bowlrp._utils.parallel import map_images, usable_cores  # noqa: E402
from bowlrp.config import load_config  # noqa: E402
from bowlrp.datasets.voc import DatasetError, read_voc  # noqa: E402
from bowlrp.evaluation.context import context_ratio  # noqa: E402
from bowlrp.evaluation.voc_ap import mean_average_precision  # noqa: E402
from bowlrp.exceptions import BowlrpError  # noqa: E402
from bowlrp.explanation import explain_trace  # noqa: E402
from bowlrp.model_files import load, save  # noqa: E402
from bowlrp.pipeline import ImageTrace, Pipeline  # noqa: E402
from bowlrp.runs.train_dask import DaskStages  # noqa: E402
from bowlrp.training import negative_label  # noqa: E402

DOWNLOAD_HINT = (
    "no VOC data: set VOC_ROOT=<…/VOCdevkit/VOC2007> (download it with: bash data_scripts/download_voc.sh)"
)
#: Published mAP of the configurations (VOC 2007 test), for comparison in the output.
REFERENCE_MAP = {"voc_fisher": (0.617, "Chatfield et al. 2011, improved Fisher vectors, VOC 2007 test")}
#: What a failed explanation of one image may raise (recorded, the run goes on).
_EXPLAIN_ERRORS = (BowlrpError, ValueError, OSError)


def log(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"[voc] {message}", file=sys.stderr, flush=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (bowlrp's temporaries, the umask's mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "w") as fh:
        fh.write(text)


def atomic_write_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` as ``.npy``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "wb") as fh:
        np.save(fh, array)


def write_csv(path: Path, header: list, rows: list) -> None:
    buf = _io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def features_on_disk(
    pipe: Pipeline, images: list, path: Path, chunk: int = 32, quiet: bool = False
) -> np.ndarray:
    """Float32 features of ``images`` in a memory-mapped ``.npy``, resumable.

    Rows are written a chunk at a time; after each chunk the file is flushed
    and the number of finished rows recorded (``<path>.done``, atomically), so
    a killed run recomputes at most one chunk.
    """
    n, d = len(images), int(sum(pipe.channel_sizes_))
    done_file = path.with_suffix(".done")
    done = int(done_file.read_text()) if done_file.is_file() and path.is_file() else 0
    X = open_memmap(path, mode="r+" if done else "w+", dtype=np.float32, shape=(n, d))
    if X.shape != (n, d):
        raise DatasetError(f"{path} holds features of shape {X.shape}, expected {(n, d)}; delete it")
    with tqdm(
        total=n, initial=done, desc=f"features ({path.stem})", disable=quiet or n < 2, leave=False
    ) as bar:
        for start in range(done, n, chunk):
            part = images[start : start + chunk]
            pipe.features(part, out=X[start : start + len(part)])
            X.flush()
            release_pages(X)  # written rows leave this process's resident memory (they are in the file)
            atomic_write_text(done_file, str(start + len(part)))
            bar.update(len(part))
    return X


def _fingerprint(cfg: dict, train_ids: list, test_ids: list) -> str:
    text = json.dumps({k: v for k, v in cfg.items() if k != "n_jobs"}, sort_keys=True, default=str)
    text += "|" + ",".join(train_ids) + "|" + ",".join(test_ids)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _vocabulary(pipe: Pipeline, images: list, path: Path, quiet: bool, stages=None) -> Pipeline:
    if path.is_file():
        log(f"vocabulary from cache {path}", quiet)
        return load(path)
    log(f"fitting the vocabulary on {len(images)} images (descriptors sampled per image)", quiet)
    if stages is None:
        pipe.fit_vocabularies(images)
    else:  # describing and sampling as Dask tasks, the same seeds
        stages.fit_vocabularies(pipe, images)
    save(pipe, path)
    return pipe


# -- timings -------------------------------------------------------------------------------


def peak_memory_mb() -> dict[str, float]:
    """Peak resident set size so far (``ru_maxrss``, KiB on Linux) in MiB: of this process,
    and of the largest of its finished, waited-for child processes (joblib workers count
    once they have exited)."""
    return {
        "self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "children": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


class StageTimer:
    """Seconds and peak memory of each stage of one invocation, appended to ``timings.json``.

    The file holds ``{"runs": [...]}``, one record per invocation (a resumed run
    appends its own, so the first, uncached run's numbers stay); the record is
    rewritten atomically after every stage, so a killed run leaves what it measured.
    """

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.start = time.perf_counter()
        self.record = {**header, "stages": {}, "complete": False}
        self.earlier = []
        if path.is_file():
            with contextlib.suppress(ValueError, OSError):
                runs = json.loads(path.read_text()).get("runs")
                self.earlier = runs if isinstance(runs, list) else []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict]:
        """Time the ``with`` block as stage ``name``; facts put into the yielded dict are
        recorded beside its seconds (e.g. whether it came from the cache)."""
        facts: dict = {}
        t = time.perf_counter()
        yield facts
        self.record["stages"][name] = {
            "seconds": round(time.perf_counter() - t, 3),
            "peak_rss_mib": peak_memory_mb(),
            **facts,
        }
        self.write()

    def seconds(self) -> dict[str, float]:
        """``{"<stage>_s": seconds}`` (metrics.json's ``timings_s``)."""
        out = {f"{k}_s": v["seconds"] for k, v in self.record["stages"].items()}
        out["total_s"] = round(time.perf_counter() - self.start, 3)
        return out

    def write(self, complete: bool = False) -> None:
        self.record["total_s"] = round(time.perf_counter() - self.start, 3)
        self.record["peak_rss_mib"] = peak_memory_mb()
        self.record["complete"] = complete
        atomic_write_text(self.path, json.dumps({"runs": [*self.earlier, self.record]}, indent=2))


# -- the test pass: each test image described once --------------------------------------------


class RunningTop:
    """Per class, the ``n`` best images seen so far in the final ranking's order.

    The order is the one ``np.argsort(-scores, kind="stable")`` gives: higher score
    first, lower image index first among equal scores. An image that belongs to the
    top ``n`` of all images belongs to the top ``n`` of any subset that holds it, so
    an image that enters no running top when it is scored can never be selected:
    explaining every image that enters one explains the whole final selection.

    Parameters
    ----------
    n_classes : int
    n : int or None
        Size of each top; None keeps everything (every image is admitted).
    """

    def __init__(self, n_classes: int, n: int | None):
        self.n = n
        self.kept: list[list[tuple[float, int]]] = [[] for _ in range(n_classes)]

    def admits(self, k: int, score: float, i: int) -> bool:
        """Whether image ``i`` with ``score`` for class ``k`` would enter the class's top."""
        if self.n is None:
            return True
        if self.n <= 0:
            return False
        kept = self.kept[k]
        return len(kept) < self.n or (-score, i) < kept[-1]

    def add(self, k: int, score: float, i: int) -> int | None:
        """Record image ``i``'s score for class ``k``; return the image that leaves the top."""
        if self.n is None:
            return None
        kept = self.kept[k]
        bisect.insort(kept, (-score, i))
        return kept.pop()[1] if len(kept) > self.n else None


def trace_scores(pipe: Pipeline, trace: ImageTrace) -> np.ndarray:
    """``f_k(x)`` for every class from one image's trace, shape (n_classes,).

    The feature vector is rounded to float32 first, as the feature rows the scores
    were computed from before (``features_on_disk``), so the scores, and the AP,
    are those of ``classifier_.decision_function`` on the float32 features.
    """
    x = trace.features.astype(np.float32)[None, :]
    return np.asarray(pipe.classifier_.decision_function(x), dtype=np.float64).reshape(-1)


@dataclass
class ImageItem:
    """What the test pass needs of one test image (sent to a worker)."""

    index: int
    path: str
    labels: np.ndarray  # (n_classes,) of 1 / 0 / -1
    annotation: object  # bowlrp.datasets.voc_annotations.Annotation


@dataclass
class ImageResult:
    """One test image's pass: scores, explanations, heatmaps for the figures, seconds."""

    scores: np.ndarray  # (n_classes,)
    explained: dict  # class -> {"score", "context_ratio"} or {"score"} or {"error"}
    heatmaps: dict = field(default_factory=dict)  # class index -> (H, W) float64
    seconds: dict = field(default_factory=dict)
    peak_rss_mib: float = 0.0  # of the process that described the image (a worker with n_jobs)

    def record(self) -> dict:
        """The JSON record of the cache (heatmaps are stored beside it)."""
        return {
            "scores": [float(s) for s in self.scores],
            "explained": self.explained,
            "heatmaps": sorted(int(k) for k in self.heatmaps),
        }


def explain_for(pipe: Pipeline, trace: ImageTrace, k: int, c: str, annotation, context: bool):
    """Explain class ``k`` (named ``c``) of one traced image.

    Returns ``(entry, heatmap)``: ``entry`` is ``{"score"}`` (plus ``"context_ratio"``
    when ``context``: None if the image has no box of the class) or ``{"error"}``;
    ``heatmap`` is the (H, W) relevance map, or None after an error.
    """
    try:
        e = explain_trace(pipe, trace, int(k))
        entry = {"score": float(e.score)}
        if context:
            boxes = annotation.boxes(c)
            entry["context_ratio"] = context_ratio(e.heatmap, boxes) if boxes else None
    except _EXPLAIN_ERRORS as exc:  # recorded; the run goes on
        return {"error": str(exc)}, None
    return entry, e.heatmap


def describe_once(
    pipe: Pipeline, item: ImageItem, classes: tuple, context_top: RunningTop, figure_top: RunningTop
) -> ImageResult:
    """One forward pass of a test image: its scores for every class and the explanations
    of the classes it may be selected for (it enters ``context_top`` as a positive, or
    ``figure_top``); the heatmaps of the latter are kept for the figures."""
    t0 = time.perf_counter()
    trace = pipe.forward_one(item.path)
    t1 = time.perf_counter()
    scores = trace_scores(pipe, trace)
    t2 = time.perf_counter()
    explained, heatmaps = {}, {}
    for k, c in enumerate(classes):
        s, i = float(scores[k]), item.index
        for_context = bool(item.labels[k] == 1) and context_top.admits(k, s, i)
        for_figure = figure_top.admits(k, s, i)
        if for_context or for_figure:
            explained[c], heat = explain_for(pipe, trace, k, c, item.annotation, for_context)
            if for_figure and heat is not None:
                heatmaps[k] = heat
    t3 = time.perf_counter()
    seconds = {"forward": t1 - t0, "scores": t2 - t1, "explain": t3 - t2}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return ImageResult(scores, explained, heatmaps, seconds, peak)


@dataclass
class SinglePass:
    """The test pass's results: ``scores`` (n_images, n_classes) and a record per image."""

    scores: np.ndarray
    records: dict[int, dict]
    folder: Path
    ids: list
    seconds: dict
    described: int  # images described by this invocation (the others came from the cache)
    described_again: int = 0  # images described a second time (a selection the cache lacks)
    peak_rss_mib: float = 0.0  # largest ru_maxrss of the processes that described images

    def heatmap_path(self, i: int, k: int) -> Path:
        return self.folder / f"{self.ids[i]}.heatmap-{k}.npy"

    def record_path(self, i: int) -> Path:
        return self.folder / f"{self.ids[i]}.json"


def _read_record(path: Path, n_classes: int) -> dict:
    """A cached per-image record, checked: one-line error naming the file if it is not one."""
    try:
        record = json.loads(path.read_text())
        ok = (
            isinstance(record, dict)
            and isinstance(record.get("scores"), list)
            and len(record["scores"]) == n_classes
            and isinstance(record.get("explained"), dict)
        )
    except (ValueError, OSError):
        ok = False
    if not ok:
        raise DatasetError(f"{path} is not a test-image record of this run ({n_classes} scores); delete it")
    return record


def describe_test_images(
    pipe: Pipeline,
    test,
    classes: tuple,
    folder: Path,
    max_explain: int | None = None,
    n_top: int = 4,
    n_jobs: int | None = None,
    quiet: bool = False,
) -> SinglePass:
    """Describe each test image once: its scores and the explanations the outputs need.

    Parameters
    ----------
    pipe : fitted multi-label Pipeline
    test : ImageDataset (``paths``, ``ids``, ``labels`` (n, n_classes), ``annotation(i)``)
    classes : class names, the columns of ``pipe``'s decisions
    folder : Path
        Per-image records ``<id>.json`` (scores, explanations) and the heatmaps the
        figures may need (``<id>.heatmap-<k>.npy``), each written atomically. Images
        with a record are not described again (resume); temporaries of these files
        that a killed run left are removed.
    max_explain : int or None
        The context ratios of class k use the ``max_explain`` best-scored positives
        (None: all positives); ``n_top``: the figures show the best-scored images.
    n_jobs : int or None
        Images are described in parallel in chunks of ``4 * n_jobs`` (the running tops
        are those of the images before the chunk: a superset of what is needed).

    Returns
    -------
    SinglePass
        ``scores[i, k] = f_k(x_i)`` (float32 features, as ``trace_scores``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    n, n_classes = len(test), len(classes)
    context_top, figure_top = RunningTop(n_classes, max_explain), RunningTop(n_classes, n_top)
    result = SinglePass(np.full((n, n_classes), np.nan), {}, folder, list(test.ids), {}, described=0)
    seconds = {"forward": 0.0, "scores": 0.0, "explain": 0.0, "write": 0.0}

    def admit(i: int) -> None:  # put image i into the running tops; drop heatmaps that left
        for k in range(n_classes):
            s = float(result.scores[i, k])
            if test.labels[i, k] == 1:
                context_top.add(k, s, i)
            dropped = figure_top.add(k, s, i)
            if dropped is not None:
                result.heatmap_path(dropped, k).unlink(missing_ok=True)

    ours = [result.record_path(i) for i in range(n)]
    ours += [result.heatmap_path(i, k) for i in range(n) for k in range(n_classes)]
    for stale in leftover_temporaries(ours):  # of writes a killed run left (this run's names only)
        stale.unlink(missing_ok=True)
    for i in range(n):
        if result.record_path(i).is_file():
            result.records[i] = _read_record(result.record_path(i), n_classes)
            result.scores[i] = result.records[i]["scores"]
    for i in sorted(result.records):
        admit(i)
    todo = [i for i in range(n) if i not in result.records]
    if len(result.records):
        log(f"test pass: {len(result.records)} of {n} images from the cache", quiet)
    chunk = 1 if n_jobs in (None, 1) else 4 * effective_n_jobs(n_jobs)
    with tqdm(total=n, initial=n - len(todo), desc="test images", disable=quiet or n < 2, leave=False) as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            items = [ImageItem(i, test.paths[i], test.labels[i], test.annotation(i)) for i in part]
            work = functools.partial(
                describe_once, pipe, classes=classes, context_top=context_top, figure_top=figure_top
            )
            for i, res in zip(part, map_images(work, items, n_jobs, "test images", False)):
                t = time.perf_counter()
                for k, heat in res.heatmaps.items():
                    atomic_write_npy(result.heatmap_path(i, k), heat)
                record = res.record()
                atomic_write_text(result.record_path(i), json.dumps(record))
                result.records[i] = record
                result.scores[i] = res.scores
                admit(i)
                for key, value in res.seconds.items():
                    seconds[key] += value
                seconds["write"] += time.perf_counter() - t
                result.described += 1
                result.peak_rss_mib = max(result.peak_rss_mib, round(res.peak_rss_mib, 1))
                bar.update(1)
    result.seconds = {k: round(v, 3) for k, v in seconds.items()}
    return result


def _describe_again(pipe, test, classes, tp: SinglePass, i: int, wanted: list[int], context: bool) -> None:
    """Explain classes ``wanted`` of image ``i`` that its record lacks (the selection grew
    since the record was made: another ``--max-explain`` or ``--n-top``), with a second
    forward pass; the record and heatmaps are updated."""
    trace = pipe.forward_one(test.paths[i])
    record = tp.records[i]
    for k in wanted:
        c = classes[k]
        entry, heat = explain_for(pipe, trace, k, c, test.annotation(i), context)
        record["explained"][c] = {**record["explained"].get(c, {}), **entry}
        if heat is not None:
            atomic_write_npy(tp.heatmap_path(i, k), heat)
            record["heatmaps"] = sorted({*record.get("heatmaps", []), k})
    atomic_write_text(tp.record_path(i), json.dumps(record))
    tp.described_again += 1


def context_selection(
    scores: np.ndarray, labels: np.ndarray, max_explain: int | None
) -> dict[int, list[int]]:
    """Image -> the classes it is explained for: per class, the ``max_explain`` best-scored
    positive test images (all positives for None), ties by image order."""
    wanted: dict[int, list[int]] = {}
    for k in range(scores.shape[1]):
        positives = np.flatnonzero(labels[:, k] == 1)
        positives = positives[np.argsort(-scores[positives, k], kind="stable")][:max_explain]
        for i in positives:
            wanted.setdefault(int(i), []).append(k)
    return {i: sorted(ks) for i, ks in wanted.items()}


def context_results(pipe, test, classes, tp: SinglePass, max_explain: int | None, quiet: bool) -> dict:
    """Per selected image ``{class: {"score", "context_ratio"}}`` or ``{"error"}`` (the first
    failed class, in class order), from the test pass's records."""
    results = {}
    for i, ks in sorted(context_selection(tp.scores, test.labels, max_explain).items()):
        explained = tp.records[i]["explained"]
        missing = [k for k in ks if "context_ratio" not in explained.get(classes[k], {})]
        missing = [k for k in missing if "error" not in explained.get(classes[k], {})]
        if missing:
            log(
                f"{test.ids[i]}: explained again for {[classes[k] for k in missing]} (not in its record)",
                quiet,
            )
            _describe_again(pipe, test, classes, tp, i, missing, context=True)
        res = {}
        for k in ks:
            entry = explained[classes[k]]
            if "error" in entry:
                res = {"error": entry["error"]}
                break
            res[classes[k]] = {"score": entry["score"], "context_ratio": entry["context_ratio"]}
        results[i] = res
    return results


def _figures(pipe, test, tp: SinglePass, classes, out: Path, n_top: int, quiet: bool) -> None:
    for k, c in enumerate(classes):
        path = out / "figures" / f"{c}.png"
        if path.is_file():
            continue
        top = np.argsort(-tp.scores[:, k], kind="stable")[:n_top]
        rows = []
        for i in top:
            entry = tp.records[i]["explained"].get(c, {})
            if not tp.heatmap_path(i, k).is_file() or "score" not in entry:
                log(f"{test.ids[i]}: explained again for {c} (no heatmap in the cache)", quiet)
                _describe_again(pipe, test, classes, tp, int(i), [k], context=False)
                entry = tp.records[i]["explained"][c]
                if "error" in entry:
                    raise DatasetError(f"{test.paths[i]}: cannot explain {c}: {entry['error']}")
            heat = pictures.normalize_heatmaps([np.load(tp.heatmap_path(i, k))])[0]
            img = pictures.label_panel(pictures._rgb(test.paths[i]), Path(test.paths[i]).name)
            gap = np.ones((img.shape[0], 4, 3))
            title = f"{c}: f(x) = {entry['score']:+.3g}"
            over = pictures.label_panel(pictures.overlay(img[14:], heat, scale=1.0), title)
            row = np.hstack(
                [img, gap, over, gap, pictures.label_panel(pictures.colorize(heat) / 255.0, title)]
            )
            rows.append(row)
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=1) for r in rows]
        pictures.save_png(path, np.vstack(rows))
        log(f"figure {path}", quiet)


def pipe_config(cfg: dict, n_jobs, quiet: bool) -> Pipeline:
    """The untrained pipeline of the config."""
    return Pipeline.from_config(cfg, n_jobs=n_jobs, verbose=not quiet)


def _train_stages(pipe: Pipeline, train, cache: Path, timer, quiet: bool, stages=None):
    """The vocabulary and the training features (cached in ``cache``); (pipe, X)."""
    n_jobs = pipe.n_jobs
    with timer.stage("vocabulary") as facts:
        facts["cached"] = (cache / "vocabulary.pkl").is_file()
        pipe = _vocabulary(pipe, list(train.paths), cache / "vocabulary.pkl", quiet, stages)
        pipe.set_params(n_jobs=n_jobs, verbose=not quiet)

    with timer.stage("train_features") as facts:
        if stages is None:
            done = cache / "features_trainval.done"
            facts["cached_rows"] = int(done.read_text()) if done.is_file() else 0
            X = features_on_disk(pipe, list(train.paths), cache / "features_trainval.npy", quiet=quiet)
        else:
            facts["dask_store"] = str(stages.store)
            X = stages.features(pipe, list(train.paths))
    return pipe, X


def _classifier_stage(
    pipe, X, train, classes, cfg, cache: Path, out: Path, timer, n_jobs, quiet, stages=None
):
    """One SVM per class (cached), the multi-class and per-class model files; the fitted pipe."""
    with timer.stage("classifier") as facts:
        model_path = out / "models" / "voc_all.pkl"
        fitted = cache / "model.pkl"
        facts["cached"] = fitted.is_file()
        if fitted.is_file():
            pipe = load(fitted)
            pipe.set_params(n_jobs=n_jobs, verbose=not quiet)
            trained = (pipe.config or {}).get("dataset", {}).get("trained_classes")
            if trained is not None and list(trained) != list(classes):
                raise DatasetError(
                    f"{fitted} was trained for the classes {trained}, not {list(classes)}: "
                    "choose another --out or delete it"
                )
        else:
            log("fitting one SVM per class (difficult images left out of their class)", quiet)
            Y = (train.labels == 1).astype(int)
            # a linear model keeps one weight vector per class, built from X in blocks
            # (no copy of the support vectors: most of the training features)
            if stages is None:
                pipe.fit_classifier(X, Y, task_mask=train.labels != 0, compress_linear="auto")
            else:  # Gram matrices in tiles as Dask tasks, libsvm here
                stages.fit_classifier(pipe, X, Y, task_mask=train.labels != 0, compress_linear="auto")
            pipe.set_params(config={**cfg, "dataset": {**train.describe(), "trained_classes": list(classes)}})
            save(pipe, fitted)
        save(pipe, model_path)
        for k, c in enumerate(classes):
            per_class = pipe.with_classifier(pipe.classifier_.binary_task(k, c, negative_label(c)))
            save(per_class, out / "models" / f"voc_{c}.pkl")
    return pipe


def run(
    voc_root,
    config,
    out,
    test_split: str = "test",
    classes=None,
    max_train: int | None = None,
    max_test: int | None = None,
    max_explain: int | None = None,
    n_top: int = 4,
    n_jobs: int | None = None,
    quiet: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    store=None,
) -> dict:
    """The whole experiment; returns the metrics written to ``out/metrics.json``.

    Parameters
    ----------
    voc_root : path to ``VOCdevkit/VOC2007`` (or a generated VOC-format root)
    config : pipeline config path or dict
    test_split : split to evaluate on ("test"; "val" for VOC 2009)
    classes : list of str or None (all classes of the data set)
    max_train, max_test : int or None
        Use only the first images of the splits (quick runs; None: all).
    max_explain : int or None
        Explain at most this many positive test images per class (None: all).
    n_top : int
        Test images per class in ``figures/<class>.png`` (highest scores).
    n_jobs : int or None
        Processes for the per-image work (joblib); the no-Dask spelling.
    workers, scheduler : int or str, optional
        Train on Dask instead (:class:`bowlrp.runs.train_dask.DaskStages`): a
        ``LocalCluster`` of ``workers`` processes, or the scheduler at this address.
        The training features then live in a Zarr store (``store``, default
        ``cache/features_trainval.zarr``; with ``scheduler`` on storage the workers reach),
        kept for resuming. The test pass stays on this machine (``n_jobs``).
    """
    if n_jobs is not None and (workers is not None or scheduler is not None):
        raise ValueError("give --n-jobs or --workers / --scheduler, not both")
    if voc_root is None or str(voc_root) == "":
        raise DatasetError(DOWNLOAD_HINT)
    out = Path(out)
    cfg = load_config(config)
    name = cfg.get("name", "config")
    train = read_voc(voc_root, "trainval", classes)
    test = read_voc(voc_root, test_split, train.classes)
    if max_train:
        train = train.subset(np.arange(min(max_train, len(train))))
    if max_test:
        test = test.subset(np.arange(min(max_test, len(test))))
    classes = train.classes
    cache = out / "cache" / f"{name}-{_fingerprint(cfg, train.ids, test.ids)}"
    cache.mkdir(parents=True, exist_ok=True)
    log(
        f"{name}: {len(train)} trainval and {len(test)} {test_split} images, {len(classes)} classes; "
        f"cache {cache}",
        quiet,
    )
    timer = StageTimer(
        out / "timings.json",
        {
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
            "config": name,
            "n_trainval": len(train),
            "n_test": len(test),
            "n_classes": len(classes),
            "n_jobs": n_jobs,
            "dask_workers": workers,
            "dask_scheduler": scheduler,
            "usable_cores": usable_cores(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )

    stages = None
    if workers is not None or scheduler is not None:
        location = store if store is not None else cache / "features_trainval.zarr"
        stages = DaskStages(
            workers=workers, scheduler=scheduler, store=location, keep_store=True, progress=not quiet
        ).check()
    with stages.running(lambda m: log(m, quiet)) if stages else contextlib.nullcontext():
        pipe, X = _train_stages(pipe_config(cfg, n_jobs, quiet), train, cache, timer, quiet, stages)
        pipe = _classifier_stage(pipe, X, train, classes, cfg, cache, out, timer, n_jobs, quiet, stages)

    with timer.stage("test_pass") as facts:  # describe, score and explain each test image once
        tp = describe_test_images(
            pipe, test, classes, cache / f"test_{test_split}", max_explain, n_top, n_jobs, quiet
        )
        facts.update(
            described=tp.described,
            from_cache=len(test) - tp.described,
            split_s=tp.seconds,
            describing_process_peak_rss_mib=tp.peak_rss_mib,
        )
    scores = tp.scores

    with timer.stage("ap_and_context") as facts:
        ap = mean_average_precision(scores, test.labels, classes)
        write_csv(
            out / "ap.csv",
            ["class", "ap", "n_positive", "n_difficult"],
            [
                [
                    c,
                    f"{ap['ap'][c]:.4f}",
                    int((test.labels[:, k] == 1).sum()),
                    int((test.labels[:, k] == 0).sum()),
                ]
                for k, c in enumerate(classes)
            ],
        )
        log(f"mAP {ap['map']:.4f} on {test_split}", quiet)
        results = context_results(pipe, test, classes, tp, max_explain, quiet)
        rows, per_class = [], {}
        for i, res in sorted(results.items()):
            for c, r in res.items():
                if c == "error":
                    continue
                rows.append(
                    [
                        test.ids[i],
                        c,
                        f"{r['score']:.6f}",
                        "" if r["context_ratio"] is None else f"{r['context_ratio']:.6f}",
                    ]
                )
                if r["context_ratio"] is not None and np.isfinite(r["context_ratio"]):
                    per_class.setdefault(c, []).append(r["context_ratio"])
        write_csv(out / "context_images.csv", ["image", "class", "score", "context_ratio"], rows)
        context = {
            c: {
                "n_images": len(per_class.get(c, [])),
                "mean": float(np.mean(per_class[c])) if per_class.get(c) else None,
                "median": float(np.median(per_class[c])) if per_class.get(c) else None,
            }
            for c in classes
        }
        write_csv(
            out / "context.csv",
            ["class", "n_images", "mean_context_ratio", "median_context_ratio"],
            [
                [
                    c,
                    v["n_images"],
                    "" if v["mean"] is None else f"{v['mean']:.4f}",
                    "" if v["median"] is None else f"{v['median']:.4f}",
                ]
                for c, v in context.items()
            ],
        )
        failures = {test.ids[i]: r["error"] for i, r in results.items() if "error" in r}
        facts["described_again"] = tp.described_again

    with timer.stage("figures") as facts:
        before = tp.described_again
        _figures(pipe, test, tp, classes, out, n_top, quiet)
        facts["described_again"] = tp.described_again - before

    reference = REFERENCE_MAP.get(name)
    metrics = {
        "config": name,
        "voc_root": str(voc_root),
        "test_split": test_split,
        "n_trainval": len(train),
        "n_test": len(test),
        "classes": list(classes),
        "ap_11_point": ap["ap"],
        "map": ap["map"],
        "reference_map": None if reference is None else {"map": reference[0], "source": reference[1]},
        "context_ratio": context,
        "explained_images": len(results),
        "explain_failures": failures,
        "feature_size": int(X.shape[1]),
        "timings_s": {k: round(v, 1) for k, v in timer.seconds().items()},
        "models": sorted(str(p) for p in (out / "models").glob("*.pkl")),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    timer.write(complete=True)
    if reference is not None:
        log(f"mAP {ap['map']:.3f} versus {reference[0]:.3f} ({reference[1]})", quiet)
    return metrics


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--voc-root",
        default=os.environ.get("VOC_ROOT") or None,
        help="…/VOCdevkit/VOC2007 (or a generated VOC-format root)",
    )
    ap.add_argument("--config", default="voc_fisher")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "voc"))
    ap.add_argument("--test-split", default="test", help="'test' (VOC 2007) or 'val' (VOC 2009)")
    ap.add_argument("--classes", default=None, help="comma-separated subset of classes")
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--max-test", type=int, default=None)
    ap.add_argument("--max-explain", type=int, default=None, help="positive test images per class")
    ap.add_argument("--n-top", type=int, default=4)
    ap.add_argument("--n-jobs", type=int, default=None, help="processes (joblib), without Dask")
    ap.add_argument("--workers", type=int, default=None, help="train on a local Dask cluster of N processes")
    ap.add_argument("--scheduler", default=None, help="train on the Dask scheduler at this address")
    ap.add_argument(
        "--store", default=None, help="Zarr store of the training features on Dask (default: in the cache)"
    )
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--debug", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        classes = args.classes.split(",") if args.classes else None
        metrics = run(
            args.voc_root,
            args.config,
            args.out,
            args.test_split,
            classes,
            args.max_train,
            args.max_test,
            args.max_explain,
            args.n_top,
            args.n_jobs,
            args.quiet,
            workers=args.workers,
            scheduler=args.scheduler,
            store=args.store,
        )
    except (BowlrpError, ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"voc-experiment: {exc}", file=sys.stderr)
        return 2
    print(
        f"{metrics['config']}: mAP {metrics['map']:.4f} over {len(metrics['classes'])} classes "
        f"({metrics['n_test']} {metrics['test_split']} images) -> {args.out}/metrics.json"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
