"""How faithful are the Taylor-type explanations of differentiable-kernel models? (issue 13)

    python experiments/taylor_faithfulness.py --out experiments/results/taylor

Trains three polygons-versus-round-shapes models (``bowlrp.datasets.polygons``):

* ``chi2``   - ``configs/polygons_chi2.yaml`` (two exponential-chi2 channels, MKL p = 2),
* ``rbf``    - the same features with an RBF kernel per channel,
* ``fv_rbf`` - one Fisher-vector channel (dense SIFT, PCA, small GMM) with an RBF kernel,

on a scaled-down training set (``--train-scenes``, ``--words``), then, on
``--tiles`` positive held-out tiles, explains the class "polygon" with every
classifier-step variant (:data:`VARIANTS`) and measures

* the residual ``|f(x) - sum_d R_d - f(x~)| / |f(x)|`` (median, 90th percentile),
* the root distance ``||x - x~||`` (segment root versus boundary root),
* the cost ``time(explain) / time(decision_function)`` for the whole tile
  (descriptors included) and for the classifier step alone,
* AOPC of MoRF region perturbation (9 x 9 blocks; uniform noise and blur),
  of every variant, of occlusion and of a random order, with paired standard
  errors of the per-tile differences to occlusion.

Writes ``results.json`` (atomically) and prints the table. Trained models are
cached in ``--out/models`` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bowlrp.config import load_config  # noqa: E402
from bowlrp.datasets.polygons import generate, tile_dataset  # noqa: E402
from bowlrp.io import load, save  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402


def log(msg: str) -> None:
    print(f"[taylor] {msg}", flush=True)


def model_configs(n_words: int, n_gauss: int) -> dict:
    chi2 = load_config(ROOT / "configs/polygons_chi2.yaml")
    for ch in chi2["channels"]:
        ch["encoder"]["RankMapping"]["vocabulary"]["KMeansVocabulary"]["n_words"] = n_words
    rbf = json.loads(json.dumps(chi2))
    rbf["name"] = "polygons_rbf"
    for ch in rbf["channels"]:
        ch["kernel"] = "rbf"
    fv = {
        "name": "polygons_fv_rbf",
        "random_state": 0,
        "channels": [{
            "name": "fisher-sift",
            "extractor": {"DenseSIFT": {"bin_sizes": [6], "steps": 6, "rotate": True,
                                        "backend": "opencv"}},
            "encoder": {"FisherVector": {
                "vocabulary": {"GMMVocabulary": {"n_components": n_gauss, "pca_components": 32,
                                                 "max_descriptors": 100000}},
                "parts": ["mu", "sigma"], "normalization": "power+l2"}},
            "kernel": "rbf",
        }],
        "classifier": {"C": 10.0},
    }
    return {"chi2": chi2, "rbf": rbf, "fv_rbf": fv}


def train_models(out: Path, names, n_train: int, n_words: int, n_gauss: int, seed: int,
                 n_jobs: int) -> dict:
    """Fit (or load cached) models; returns {name: (pipeline, info)}."""
    configs = model_configs(n_words, n_gauss)
    mdir = out / "models"
    mdir.mkdir(parents=True, exist_ok=True)
    X = y = None
    models = {}
    for name in names:
        path = mdir / f"{name}_{n_train}_{n_words}_{n_gauss}_{seed}.skops"
        if path.is_file():
            pipe = load(path, trusted=True)
            info = json.loads(path.with_suffix(".json").read_text())
            log(f"[{name}] loaded {path.name}")
        else:
            if X is None:
                X, y = tile_dataset(generate(seed, n_train))
                log(f"{len(X)} training tiles ({y.mean():.0%} positive)")
            pipe = Pipeline.from_config(configs[name], n_jobs=n_jobs, verbose=False)
            t0 = time.perf_counter()
            pipe.fit(X, y)
            info = {"fit_seconds": time.perf_counter() - t0, "config": configs[name],
                    "train_scenes": n_train, "train_tiles": len(X)}
            save(pipe, path)
            _write_json(path.with_suffix(".json"), info)
            log(f"[{name}] fitted in {info['fit_seconds']:.0f} s")
        models[name] = (pipe, info)
    return models


def _write_json(path: Path, data) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)
