"""The pixel rules of a Fisher-vector model of the polygons data against occlusion (issue 27).

    python experiments/fisher_faithfulness.py --out experiments/results/fisher_faithfulness
    python experiments/fisher_faithfulness.py --train-scenes 6 --tiles 4 --steps 4 --out /tmp/ff   # tiny

Trains a Fisher-vector pipeline on the polygon crops of ``make polygons-experiment``
(the same generated scenes and seed; the Fisher stages of ``experiments/compare.py``:
rotated dense SIFT with bin sizes 6 and 9 as in ``configs/polygons_*.yaml``, PCA to 32
dimensions, a 16-component GMM, mean and variance parts, a linear SVM) and measures,
on ``--tiles`` held-out 102 x 102 crops (half positive, drawn with the seed as the
polygons experiment draws them), the pixel rules

* ``flat``: every descriptor's relevance spread evenly over its support;
* ``contribution``: per descriptor, by each pixel's share of its gradient mass;
* ``contribution-per-dimension``: ``Contribution(per_dimension=True)``, relevance per
  descriptor dimension back through the PCA, then each dimension's own pixels;
* ``siftbins``: per dimension, each spatial bin over its own ``b x b`` pixels;

(step 1: the linear decomposition, step 2: ``Epsilon(0)``, the package's defaults)
against occlusion (9 x 9 blocks, the same perturbation) and a random order, by region
perturbation under uniform noise and blur: AOPC per method, paired per-tile differences
to occlusion, random and ``flat`` (the default pixel rule) with standard errors, the
share of positive relevance on the tiles' dilated polygons, and the explain time per
tile relative to ``flat`` and to the forward pass (timings only in ``timings.json``).

Writes ``--out``/``metrics.json`` (schema :data:`SCHEMA`, docs/polygons_experiment.md),
``timings.json``, ``region_perturbation.png``, the model file and ``partial/`` (one file
per tile: a killed run resumes); ``--snapshot`` also copies ``metrics.json`` to
``experiments/fisher_faithfulness_metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from polygons import (  # noqa: E402
    BLOCK,
    PERTURBATIONS,
    _write_json,
    cached_tile,
    descriptor_half_side,
    plot_curves,
    run_key,
    select_tiles,
    summarise_cost,
    summarise_faithfulness,
    summarise_tile_localisation,
    tile_faithfulness,
    tile_regions,
)

from bowlrp._utils.parallel import map_images  # noqa: E402
from bowlrp.classifier.svm import KernelSVC  # noqa: E402
from bowlrp.datasets import polygons as polygon_data  # noqa: E402
from bowlrp.datasets.polygons import generate, tile_dataset  # noqa: E402
from bowlrp.descriptors.sift import DenseSIFT  # noqa: E402
from bowlrp.encoding.fisher import FisherVector  # noqa: E402
from bowlrp.encoding.vocabulary import GMMVocabulary  # noqa: E402
from bowlrp.model_files import save  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402
from bowlrp.rules import Contribution, Flat, SIFTBins  # noqa: E402

SCHEMA = "bowlrp.fisher-faithfulness/1"
SNAPSHOT = ROOT / "experiments" / "fisher_faithfulness_metrics.json"
DEFAULT = "flat"


def log(msg: str) -> None:
    print(f"[fisher] {msg}", flush=True)


def methods() -> dict:
    """name -> pixel rule (steps 1 and 2: the package's defaults for a linear Fisher model)."""
    return {
        "flat": [Flat()],
        "contribution": [Contribution()],
        "contribution-per-dimension": [Contribution(per_dimension=True)],
        "siftbins": [SIFTBins()],
    }


def fisher_pipeline(n_jobs: int | None, n_components: int = 16, pca: int = 32) -> Pipeline:
    """Rotated dense SIFT (bin sizes 6 and 9, as the polygons configs), PCA, GMM, Fisher
    vectors (mean and variance parts), a linear SVM."""
    channels = [
        (
            f"fisher-sift-b{b}",
            DenseSIFT(bin_sizes=[b], steps=b, rotate=True, backend="opencv"),
            FisherVector(
                GMMVocabulary(n_components, pca_components=pca, max_descriptors=50000, random_state=0),
                parts=("mu", "sigma"),
            ),
        )
        for b in (6, 9)
    ]
    return Pipeline(channels, KernelSVC("linear", C=1.0), n_jobs=n_jobs, random_state=0)


def run(
    out_dir,
    n_train: int = 30,
    n_val: int = 6,
    n_tiles: int = 24,
    steps: int = 30,
    seed: int = 0,
    n_jobs: int | None = 2,
    n_components: int = 16,
    pca: int = 32,
    perturbations=PERTURBATIONS,
    verbose: bool = True,
) -> dict:
    """Train, measure; returns the metrics (also written to ``out_dir/metrics.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings: dict = {"seconds": {}}
    log(
        f"generating {n_train} training and {n_val} held-out scenes (seed {seed}, as the polygons experiment)"
    )
    train_scenes = generate(seed, n_train)
    val_scenes = generate(seed + 5000, n_val)
    X, y = tile_dataset(train_scenes)
    Xt, yt, _owner = polygon_data.overlapping_tiles(val_scenes)
    pipe = fisher_pipeline(n_jobs, n_components, pca)
    pipe.set_params(verbose=verbose)
    t0 = time.perf_counter()
    pipe.fit(X, y)
    timings["seconds"]["fit"] = time.perf_counter() - t0
    pipe.set_params(verbose=False)
    t0 = time.perf_counter()
    Ft = pipe.features(Xt)
    timings["seconds"]["encode_heldout"] = time.perf_counter() - t0
    clf = pipe.classifier_
    accuracy = float(clf.score(Ft, yt))
    log(f"held-out tile accuracy {accuracy:.4f} ({len(yt)} tiles, {yt.mean():.0%} positive)")
    save(pipe, out / "fisher_polygons.pkl")
    rules = methods()
    eval_idx = select_tiles(yt, n_tiles, seed)
    dilate = descriptor_half_side(pipe)
    regions = tile_regions(val_scenes, eval_idx, dilate)
    key = run_key(
        clf,
        Ft[eval_idx],
        {
            "steps": steps,
            "seed": seed,
            "block": BLOCK,
            "perturbations": list(perturbations),
            "methods": {m: repr(r) for m, r in rules.items()},
            "localisation_dilation": dilate,
        },
    )
    log(f"region perturbation on {len(eval_idx)} tiles ({int(yt[eval_idx].sum())} positive)")
    t0 = time.perf_counter()
    partial = out / "partial"
    per_tile = map_images(
        lambda item: cached_tile(
            partial / f"tile{item[0]:05d}.json",
            key,
            lambda: tile_faithfulness(pipe, item[1], rules, perturbations, steps, seed + item[0], item[2]),
        ),
        [(int(i), Xt[i], regions[int(i)]) for i in eval_idx],
        n_jobs,
        "[fisher] region perturbation",
        verbose,
    )
    timings["seconds"]["region_perturbation"] = time.perf_counter() - t0
    block, curves = summarise_faithfulness(per_tile, perturbations, DEFAULT)
    metrics = {
        "schema": SCHEMA,
        "settings": {
            "seed": seed,
            "train_scenes": n_train,
            "heldout_scenes": n_val,
            "model": {
                "extractor": "DenseSIFT bin sizes 6 and 9, steps = bin size, rotated, OpenCV",
                "vocabulary": f"GMM {n_components} components on PCA {pca}",
                "encoder": "FisherVector parts mu, sigma",
                "classifier": "KernelSVC linear, C = 1",
            },
            "rules": {"classifier": "Decomposition()", "descriptors": "Epsilon(0.0)"},
            "region_perturbation": {
                "block": BLOCK,
                "steps": steps,
                "ordering": "morf",
                "repeats": 1,
                "tiles": len(eval_idx),
                "perturbations": list(perturbations),
            },
        },
        "data": {
            "train_tiles": len(X),
            "heldout_tiles": len(Xt),
            "eval_tiles": len(eval_idx),
            "eval_positive": int(yt[eval_idx].sum()),
        },
        "accuracy": {
            "value": accuracy,
            "stderr": float(np.sqrt(accuracy * (1 - accuracy) / len(yt))),
            "n_tiles": len(yt),
        },
        "default_method": DEFAULT,
        "region_perturbation": block,
        "tile_localisation": summarise_tile_localisation(per_tile, DEFAULT),
    }
    timings["explain_cost"] = summarise_cost(per_tile, rules, DEFAULT)
    _write_json(out / "metrics.json", metrics)
    _write_json(
        out / "region_perturbation.json",
        {"tiles": [int(i) for i in eval_idx], "labels": [int(yt[i]) for i in eval_idx], "curves": curves},
    )
    plot_curves({"fisher": curves}, out / "region_perturbation.png", steps)
    timings["seconds"]["total"] = time.perf_counter() - t_start
    timings["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    _write_json(out / "timings.json", timings)
    log(f"done in {timings['seconds']['total'] / 60:.1f} min; wrote {out / 'metrics.json'}")
    return metrics


def summary(m: dict, timings: dict | None = None) -> str:
    """A Markdown table of the metrics (and the cost, with ``timings``)."""
    perts = list(m["region_perturbation"])
    cost = (timings or {}).get("explain_cost", {})
    loc = (m.get("tile_localisation") or {}).get("methods") or {}
    head = "| method | " + " | ".join(f"AOPC {p} | Δ occlusion | Δ flat" for p in perts)
    lines = [
        head + " | positive share on polygons | cost / flat |",
        "|---|" + "---|---|---|" * len(perts) + "---|---|",
    ]
    for meth in m["region_perturbation"][perts[0]]["methods"]:
        cells = []
        for p in perts:
            a = m["region_perturbation"][p]["methods"][meth]
            paired = m["region_perturbation"][p]["paired_differences"].get(meth, {})
            cells.append(f"{a['aopc']:.3f} ± {a['stderr']:.3f}")
            for ref in ("occlusion", "default"):
                d = paired.get(ref)
                cells.append(f"{d['mean']:+.3f} ± {d['stderr']:.3f}" if d else "—")
        s = loc.get(meth) or loc.get(f"occlusion-{perts[0]}" if meth == "occlusion" else "")
        share = f"{100 * s['mean']:.1f} ± {100 * s['stderr']:.1f} %" if s and s["stderr"] is not None else "—"
        c = cost.get(meth, {}).get("median_ratio_to_default")
        lines.append(
            f"| {meth} | " + " | ".join(cells) + f" | {share} | {'—' if c is None else f'{c:.2f}'} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "experiments/results/fisher_faithfulness"))
    ap.add_argument("--train-scenes", type=int, default=30)
    ap.add_argument("--heldout-scenes", type=int, default=6)
    ap.add_argument("--tiles", type=int, default=24, help="held-out tiles for region perturbation")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--components", type=int, default=16, help="GMM components")
    ap.add_argument("--pca", type=int, default=32, help="PCA dimensions of the SIFT descriptors")
    ap.add_argument("--snapshot", action="store_true", help=f"copy metrics.json to {SNAPSHOT.name}")
    args = ap.parse_args(argv)
    m = run(
        args.out,
        args.train_scenes,
        args.heldout_scenes,
        args.tiles,
        args.steps,
        args.seed,
        args.n_jobs,
        args.components,
        args.pca,
    )
    timings = json.loads((Path(args.out) / "timings.json").read_text())
    print(summary(m, timings))
    if args.snapshot:
        shutil.copyfile(Path(args.out) / "metrics.json", SNAPSHOT)
        print(f"copied to {SNAPSHOT}")


if __name__ == "__main__":
    main()
