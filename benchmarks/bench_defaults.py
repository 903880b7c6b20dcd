"""Cost of the default rules on every shipped config (issue 27): explain / decision_function.

The target: the default rules (what ``Pipeline.explain(images)`` uses without ``rules=``:
``bowlrp.classifier.relevance.default_rule``, the encoder's ``default_rule`` and
``bowlrp.explanation.default_pixel_rule``) cost <= 1.3 x ``decision_function`` on every
config in ``configs/``.

Each config is fitted quickly on a small generated VOC-like set
(``make_voc_like(root, 16, 4, seed=0)``, the 16 trainval images halved to 188 x 250 for the
fit only): binary on the first class that has both labels, or one-class (no labels) for a
detector (``anomaly``). Only the fit's effort is cut, never the fitted model's shape:
``max_descriptors`` of every vocabulary (``--max-descriptors``) and the GMMs' ``max_iter``
(``--gmm-iter``); the number of words / Gaussians, PCA dimensions, pyramids, extractors and
kernels stay the config's.

Then, on one 375 x 500 generated test image, one thread (the BLAS / OpenMP / Numba thread
counts are set to 1 before numpy is imported): one warm-up of each call, then ``--repeats``
paired rounds of ``decision_function([img])`` then ``explain([img])`` (default rules), timed
in process CPU seconds. Per config: the median of the per-round ratios explain /
decision_function, their range, the median forward time and the rules used.

    python benchmarks/bench_defaults.py [--repeats 5] [--configs voc_small,anomaly]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from skimage.transform import rescale  # noqa: E402
from sklearn.base import is_outlier_detector  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bowlrp._utils.validation import read_image  # noqa: E402
from bowlrp.datasets.voc import read_voc  # noqa: E402
from bowlrp.datasets.voc_like import make_voc_like  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402

CONFIGS = ("anomaly", "polygons_chi2", "polygons_hik", "voc2009_bow", "voc_fisher", "voc_small")
TARGET = 1.3


def quick(pipe: Pipeline, max_descriptors: int, gmm_iter: int) -> dict:
    """Overrides that cut the fit's effort only: ``{name: value}`` for ``set_params``.

    Parameters
    ----------
    pipe : unfitted Pipeline
    max_descriptors : int
        Upper bound on the descriptors a vocabulary is fitted on (kept when the config's
        own is smaller).
    gmm_iter : int
        Upper bound on a GMM's EM iterations.
    """
    params = pipe.get_params()
    out = {}
    for name, value in params.items():
        if name.endswith("vocabulary__max_descriptors"):
            out[name] = max_descriptors if value is None else min(int(value), max_descriptors)
        elif name.endswith("vocabulary__max_iter") and value is not None:
            out[name] = min(int(value), gmm_iter)
    return out


def model_shape(pipe: Pipeline) -> list:
    """What must not change with the overrides: per channel (name, words / Gaussians, PCA)."""
    params = pipe.get_params()
    keys = ("n_words", "n_components", "pca_components", "pyramid", "bin_sizes", "steps")
    return sorted((k, repr(v)) for k, v in params.items() if k.rsplit("__", 1)[-1] in keys)


def training_data(root: Path):
    """(fit images (16, 188 x 250 x 3), their dataset, one 375 x 500 x 3 test image)."""
    make_voc_like(root, 16, 4, seed=0)
    train = read_voc(root, "trainval")
    test = read_voc(root, "test")
    images = [
        rescale(read_image(p), 0.5, channel_axis=-1, anti_aliasing=True).astype(np.float32)
        for p in tqdm(train.paths, desc="reading", leave=False)
    ]
    return images, train, read_image(test.paths[0])


def binary_labels(train) -> tuple[str, np.ndarray, np.ndarray]:
    """(class name, rows, 0/1 labels) of the first class with both labels among the images."""
    for name in train.classes:
        rows, y = train.binary(name)
        if 0 < y.sum() < len(y):
            return name, rows, y
    raise SystemExit(f"{train.root}: no class has both positive and negative images; regenerate it")


def bench(name: str, images, train, image, repeats: int, max_descriptors: int, gmm_iter: int) -> dict:
    """Fit ``name`` quickly, then time the paired rounds on ``image``."""
    pipe = Pipeline.from_config(name)
    shape = model_shape(pipe)
    overrides = quick(pipe, max_descriptors, gmm_iter)
    pipe.set_params(**overrides)
    assert model_shape(pipe) == shape, "an override changed the model's shape"
    t0 = time.process_time()
    if is_outlier_detector(pipe.classifier):
        label = "one-class (no labels)"
        pipe.fit(images)
    else:
        cls, rows, y = binary_labels(train)
        label = f"binary '{cls}' ({int(y.sum())}+/{int(len(y) - y.sum())}-)"
        pipe.fit([images[i] for i in rows], y)
    fit_s = time.process_time() - t0
    pipe.decision_function([image])  # warm up (Numba compilation, caches)
    exp = pipe.explain([image])[0]
    forward, backward = [], []
    for _ in range(repeats):
        t = time.process_time()
        pipe.decision_function([image])
        forward.append(time.process_time() - t)
        t = time.process_time()
        exp = pipe.explain([image])[0]
        backward.append(time.process_time() - t)
    ratios = np.array(backward) / np.array(forward)
    rules = exp.rules
    descriptors = rules["descriptors"]
    drules = (
        sorted({repr(r) for r in descriptors.values()})
        if isinstance(descriptors, dict)
        else [repr(descriptors)]
    )
    return {
        "config": name,
        "fit": label,
        "fit_s": fit_s,
        "overrides": overrides,
        "classifier_rule": repr(rules["classifier"]),
        "descriptor_rule": ", ".join(drules),
        "pixel_rule": repr(rules["pixels"]),
        "forward_s": float(np.median(forward)),
        "explain_s": float(np.median(backward)),
        "ratio": float(np.median(ratios)),
        "lo": float(ratios.min()),
        "hi": float(ratios.max()),
        "residual": float(exp.residual),
    }


def table(rows: list) -> str:
    """The Markdown table of the results."""
    lines = [
        "| config | default rules (classifier; descriptors; pixels) | decision_function s | explain s "
        "| explain / decision_function, median [range] | ≤ 1.3 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "met" if r["ratio"] <= TARGET else "**missed**"
        lines.append(
            f"| {r['config']} | `{r['classifier_rule']}`; `{r['descriptor_rule']}`; `{r['pixel_rule']}` "
            f"| {r['forward_s']:.3f} | {r['explain_s']:.3f} "
            f"| {r['ratio']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}] | {met} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="paired rounds per config")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated shipped config names")
    ap.add_argument("--max-descriptors", type=int, default=20000, help="descriptors per vocabulary fit")
    ap.add_argument("--gmm-iter", type=int, default=10, help="EM iterations per GMM fit")
    args = ap.parse_args(argv)
    names = [c for c in args.configs.split(",") if c]
    with tempfile.TemporaryDirectory(prefix="bench_defaults_") as tmp:
        images, train, image = training_data(Path(tmp) / "voc")
    print(f"test image {image.shape}, {len(images)} fit images {images[0].shape}, repeats {args.repeats}")
    rows = []
    for name in tqdm(names, desc="configs"):
        r = bench(name, images, train, image, args.repeats, args.max_descriptors, args.gmm_iter)
        tqdm.write(
            f"{name}: fit {r['fit']} in {r['fit_s']:.1f} CPU s with {r['overrides']}; "
            f"residual {r['residual']:.2e}; ratio {r['ratio']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]"
        )
        rows.append(r)
    print(table(rows))


if __name__ == "__main__":
    main()
