"""PASCAL VOC classification, per-class AP, explanations and context ratios (thesis ch. 4).

    make voc-experiment VOC_ROOT=data/voc/VOCdevkit/VOC2007                 # Fisher vectors
    make voc-experiment VOC_ROOT=... CONFIG=voc2009_bow TEST_SPLIT=val
    python experiments/voc.py --voc-root ROOT --config voc_fisher --out DIR

Trains one multi-label model (one linear or kernel SVM per class, a class's
"difficult" images left out of that class only, as the devkit does) on
``trainval`` for every class, reports the VOC 2007 11-point AP per class and
the mAP on ``test`` (next to Chatfield et al. 2011's 61.7 for the Fisher
configuration), explains the test images that show each class (one forward
pass per image serves all of its classes), writes per-class context ratios
(mean positive relevance per pixel outside / inside the class's boxes), the
top-scored test images per class with their heatmaps, and one binary model
per class (``voc_horse.pkl`` ...). Output in ``--out``::

    metrics.json  ap.csv  context.csv  context_images.csv  figures/<class>.png
    models/voc_<class>.pkl  models/voc_all.pkl  cache/ (resumable state)

Resumes after an interruption: the vocabulary, the model and every image's
features (float32 rows of a memory-mapped ``.npy``, progress recorded after
each flushed chunk) and explanation results (one JSON per image) are cached
on disk and written atomically.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io as _io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bowlrp.config import load_config  # noqa: E402
from bowlrp.datasets.voc import DatasetError, read_voc  # noqa: E402
from bowlrp.evaluation.context import context_ratio  # noqa: E402
from bowlrp.evaluation.voc_ap import mean_average_precision  # noqa: E402
from bowlrp.exceptions import BowlrpError  # noqa: E402
from bowlrp.model_files import load, save  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402
from bowlrp.training import negative_label  # noqa: E402

DOWNLOAD_HINT = (
    "no VOC data: set VOC_ROOT=<…/VOCdevkit/VOC2007> (download it with: bash data_scripts/download_voc.sh)"
)
#: Published mAP of the configurations (VOC 2007 test), for comparison in the output.
REFERENCE_MAP = {"voc_fisher": (0.617, "Chatfield et al. 2011, improved Fisher vectors, VOC 2007 test")}


def log(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"[voc] {message}", file=sys.stderr, flush=True)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


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
    from numpy.lib.format import open_memmap
    from tqdm.auto import tqdm

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
            atomic_write_text(done_file, str(start + len(part)))
            bar.update(len(part))
    return X


def _fingerprint(cfg: dict, train_ids: list, test_ids: list) -> str:
    text = json.dumps({k: v for k, v in cfg.items() if k != "n_jobs"}, sort_keys=True, default=str)
    text += "|" + ",".join(train_ids) + "|" + ",".join(test_ids)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _vocabulary(pipe: Pipeline, images: list, path: Path, quiet: bool) -> Pipeline:
    if path.is_file():
        log(f"vocabulary from cache {path}", quiet)
        return load(path)
    log(f"fitting the vocabulary on {len(images)} images (descriptors sampled per image)", quiet)
    pipe.fit_vocabularies(images)
    save(pipe, path)
    return pipe


def explain_image(pipe: Pipeline, path, targets: list[int], classes: tuple, annotation) -> dict:
    """One forward pass, one explanation per target: scores and context ratios."""
    from bowlrp.explanation import explain_trace

    trace = pipe.forward_one(path)
    out = {}
    for t in targets:
        e = explain_trace(pipe, trace, int(t))
        boxes = annotation.boxes(classes[t])
        out[classes[t]] = {
            "score": float(e.score),
            "context_ratio": context_ratio(e.heatmap, boxes) if boxes else None,
        }
    return out


def _figures(pipe, test, scores, classes, out: Path, n_top: int, quiet: bool) -> None:
    from bowlrp import image as pictures
    from bowlrp.explanation import explain_trace

    for k, c in enumerate(classes):
        path = out / "figures" / f"{c}.png"
        if path.is_file():
            continue
        top = np.argsort(-scores[:, k], kind="stable")[:n_top]
        rows = []
        for i in top:
            e = explain_trace(pipe, pipe.forward_one(test.paths[i]), int(k))
            heat = pictures.normalize_heatmaps([e.heatmap])[0]
            img = pictures.label_panel(pictures._rgb(test.paths[i]), Path(test.paths[i]).name)
            gap = np.ones((img.shape[0], 4, 3))
            title = f"{c}: f(x) = {e.score:+.3g}"
            over = pictures.label_panel(pictures.overlay(img[14:], heat, scale=1.0), title)
            row = np.hstack(
                [img, gap, over, gap, pictures.label_panel(pictures.colorize(heat) / 255.0, title)]
            )
            rows.append(row)
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=1) for r in rows]
        pictures.save_png(path, np.vstack(rows))
        log(f"figure {path}", quiet)


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
    """
    t_start = time.perf_counter()
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
    timings = {}

    t = time.perf_counter()
    pipe = Pipeline.from_config(cfg, n_jobs=n_jobs, verbose=not quiet)
    pipe = _vocabulary(pipe, list(train.paths), cache / "vocabulary.pkl", quiet)
    pipe.set_params(n_jobs=n_jobs, verbose=not quiet)
    timings["vocabulary_s"] = time.perf_counter() - t

    t = time.perf_counter()
    X = features_on_disk(pipe, list(train.paths), cache / "features_trainval.npy", quiet=quiet)
    timings["train_features_s"] = time.perf_counter() - t

    t = time.perf_counter()
    model_path = out / "models" / "voc_all.pkl"
    fitted = cache / "model.pkl"
    if fitted.is_file():
        pipe = load(fitted)
        pipe.set_params(n_jobs=n_jobs, verbose=not quiet)
    else:
        log("fitting one SVM per class (difficult images left out of their class)", quiet)
        Y = (train.labels == 1).astype(int)
        pipe.fit_classifier(X, Y, task_mask=train.labels != 0)
        if all(type(k).__name__ == "Linear" for k in pipe.classifier_.kernels_):
            pipe.classifier_.compress_linear()
        pipe.set_params(config={**cfg, "dataset": {**train.describe(), "trained_classes": list(classes)}})
        save(pipe, fitted)
    save(pipe, model_path)
    for k, c in enumerate(classes):
        per_class = pipe.with_classifier(pipe.classifier_.binary_task(k, c, negative_label(c)))
        save(per_class, out / "models" / f"voc_{c}.pkl")
    timings["classifier_s"] = time.perf_counter() - t

    t = time.perf_counter()
    Xt = features_on_disk(pipe, list(test.paths), cache / f"features_{test_split}.npy", quiet=quiet)
    scores = np.asarray(pipe.classifier_.decision_function(Xt)).reshape(len(test), len(classes))
    ap = mean_average_precision(scores, test.labels, classes)
    timings["test_features_s"] = time.perf_counter() - t
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

    t = time.perf_counter()
    from tqdm.auto import tqdm

    wanted: dict[int, list[int]] = {}
    for k in range(len(classes)):
        positives = np.flatnonzero(test.labels[:, k] == 1)
        positives = positives[np.argsort(-scores[positives, k], kind="stable")][:max_explain]
        for i in positives:
            wanted.setdefault(int(i), []).append(k)
    explained = cache / "explain"
    explained.mkdir(exist_ok=True)
    results: dict[int, dict] = {}
    for i in tqdm(sorted(wanted), desc="explaining", disable=quiet, leave=False):
        path = explained / f"{test.ids[i]}.json"
        if path.is_file():
            results[i] = json.loads(path.read_text())
            continue
        try:
            results[i] = explain_image(pipe, test.paths[i], wanted[i], classes, test.annotation(i))
        except (BowlrpError, ValueError, OSError) as exc:  # record the failure and go on
            results[i] = {"error": str(exc)}
        atomic_write_text(path, json.dumps(results[i]))
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
    timings["explain_s"] = time.perf_counter() - t

    t = time.perf_counter()
    _figures(pipe, test, scores, classes, out, n_top, quiet)
    timings["figures_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start

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
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "models": sorted(str(p) for p in (out / "models").glob("*.pkl")),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
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
    ap.add_argument("--n-jobs", type=int, default=None)
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
