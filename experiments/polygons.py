"""Polygons versus round shapes: train, measure, explain, draw (PLoS ONE 2015 Fig 6).

    python experiments/polygons.py --out experiments/results/polygons

Trains the two models of the paper from ``configs/polygons_hik.yaml`` and
``configs/polygons_chi2.yaml`` on non-overlapping 102 x 102 crops of generated
scenes, reports held-out tile accuracy, explains the test scenes tile by tile
(102 x 102 every 34 pixels, explaining the class "polygon"), averages the tile
heatmaps and measures where the relevance falls (polygons, round shapes,
background). Writes ``metrics.json``, ``figure.png`` (input | HIK | chi2),
per-scene triplets and the two model files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bowlrp import image as pictures  # noqa: E402
from bowlrp.datasets.polygons import STRIDE, TILE, generate, save_scenes, tile_dataset  # noqa: E402
from bowlrp.io import save  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402

CONFIGS = {"hik": "polygons_hik", "chi2": "polygons_chi2"}


def log(msg: str) -> None:
    print(f"[polygons] {msg}", flush=True)


def descriptor_half_side(pipe: Pipeline) -> int:
    """Half the side (4 b) of the largest SIFT descriptor in the pipeline."""
    sizes = [max(np.atleast_1d(ex.bin_sizes)) for ex in pipe.extractors_ if hasattr(ex, "bin_sizes")]
    return int(round(2 * max(sizes))) if sizes else 0


def localisation(heatmap: np.ndarray, scene, dilate: int) -> dict:
    """Where the relevance of one scene falls; means use the heatmap divided by max |R|."""
    h = heatmap / (np.abs(heatmap).max() or 1.0)
    polygon_ids = scene.polygon_ids()
    poly = np.isin(scene.mask, list(polygon_ids))
    rnd = (scene.mask > 0) & ~poly
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
    poly_dil = cv2.dilate(poly.astype(np.uint8), kernel) > 0
    any_dil = cv2.dilate((scene.mask > 0).astype(np.uint8), kernel) > 0
    positive = np.maximum(h, 0)
    shape_means = {s["id"]: float(h[scene.mask == s["id"]].mean()) for s in scene.shapes
                   if np.any(scene.mask == s["id"])}
    polys = [m for i, m in shape_means.items() if i in polygon_ids]
    rounds = [m for i, m in shape_means.items() if i not in polygon_ids]
    return {
        "positive_share_on_polygons": float(positive[poly_dil].sum() / max(positive.sum(), 1e-300)),
        "dilated_polygon_area_share": float(poly_dil.mean()),
        "mean_on_polygons": float(h[poly].mean()) if poly.any() else None,
        "mean_on_round": float(h[rnd].mean()) if rnd.any() else None,
        "mean_on_background": float(h[~any_dil].mean()),
        "polygons_positive": [m > 0 for m in polys],
        "round_negative": [m < 0 for m in rounds],
    }


def summarise(per_scene: list[dict]) -> dict:
    def mean(key):
        vals = [s[key] for s in per_scene if s[key] is not None]
        return float(np.mean(vals)) if vals else None

    polys = [b for s in per_scene for b in s["polygons_positive"]]
    rounds = [b for s in per_scene for b in s["round_negative"]]
    return {
        "positive_share_on_polygons": mean("positive_share_on_polygons"),
        "dilated_polygon_area_share": mean("dilated_polygon_area_share"),
        "mean_relevance_on_polygons": mean("mean_on_polygons"),
        "mean_relevance_on_round": mean("mean_on_round"),
        "mean_relevance_on_background": mean("mean_on_background"),
        "fraction_polygons_positive": float(np.mean(polys)) if polys else None,
        "fraction_round_negative": float(np.mean(rounds)) if rounds else None,
        "n_polygons": len(polys),
        "n_round": len(rounds),
    }


def evaluate_faithfulness(pipe, tiles, out: Path, steps: int, repeats: int, seed: int,
                          perturbation: str = "uniform") -> dict:
    """MoRF region perturbation (9 x 9 blocks) of tiles, explaining "polygon".

    Methods: LRP with each rule, a random order and occlusion. Rules that give
    identical heatmaps (for non-negative word mappings eps = 0, alpha-beta and
    |z| coincide) share one curve.
    """
    from bowlrp.evaluation import occlusion_map, region_perturbation
    from bowlrp.evaluation.runner import LRP_METHODS, EvaluationSettings, summarise, write_outputs
    from bowlrp.explanation import explain_trace
    from bowlrp.rules import parse_rule

    results = []
    for i, tile in enumerate(tiles):
        trace = pipe.forward_one(tile)
        maps = {m: explain_trace(pipe, trace, 1, parse_rule(rule)).heatmap
                for m, rule in LRP_METHODS.items() if m != "lrp-contribution"}
        maps["occlusion"] = occlusion_map(pipe, tile, 9, perturbation, seed + i, 1)
        maps["random"] = maps["lrp-eps0"]
        curves, seen = {}, {}
        for m, heat in maps.items():
            ordering = "random" if m == "random" else "morf"
            key = (ordering, heat.tobytes())
            if key not in seen:
                r = region_perturbation(pipe, [tile], [heat], (ordering,), 9, steps, repeats,
                                        perturbation, seed + i, 1)
                seen[key] = r.curves[ordering][0].tolist()
            curves[m] = seen[key]
        results.append({"curves": curves})
    methods = list(results[0]["curves"])
    summary = summarise(results, methods)
    out.mkdir(parents=True, exist_ok=True)
    record = {"block": 9, "method": "region", "batch": 0, "steps": steps, "repeats": repeats,
              "seed": seed, "tiles": len(tiles), "perturbation": perturbation}
    write_outputs(out, summary, EvaluationSettings(block=9, method="region", batch=0, steps=steps,
                                                   repeats=repeats, seed=seed,
                                                   perturbation=perturbation), record)
    return {m: {"aopc": d["aopc"], "stderr": d["aopc_stderr"]} for m, d in summary.items()}


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def run(out_dir, n_train: int = 60, n_test: int = 6, n_val: int = 40, seed: int = 0,
        n_words: int | None = None, n_jobs: int | None = 2, models=("hik", "chi2"),
        n_figure: int = 3, verbose: bool = True, n_eval_tiles: int = 6, eval_steps: int = 40,
        eval_repeats: int = 3, eval_perturbations=("uniform", "blur")) -> dict:
    """The whole experiment; returns the metrics (also written to ``out_dir/metrics.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    log(f"generating {n_train} training, {n_val} held-out and {n_test} test scenes (seed {seed})")
    train_scenes = generate(seed, n_train)
    val_scenes = generate(seed + 5000, n_val)
    test_scenes = generate(seed + 1000, n_test)
    save_scenes(test_scenes[:n_figure], out / "test_scenes", "test")
    X, y = tile_dataset(train_scenes)
    Xt, yt = tile_dataset(val_scenes)
    log(f"{len(X)} training tiles ({y.mean():.0%} positive), {len(Xt)} held-out tiles")
    metrics = {"data": {"train_scenes": n_train, "heldout_scenes": n_val, "test_scenes": n_test,
                        "seed": seed, "train_tiles": len(X), "train_positive_share": float(y.mean()),
                        "heldout_tiles": len(Xt), "heldout_positive_share": float(yt.mean()),
                        "tile": TILE, "stride": STRIDE},
               "models": {}}
    heatmaps = {}
    for name in models:
        overrides = {"n_jobs": n_jobs, "verbose": verbose}
        if n_words is not None:
            overrides["n_words"] = n_words
        pipe = Pipeline.from_config(CONFIGS[name], **overrides)
        t0 = time.perf_counter()
        log(f"[{name}] training")
        pipe.fit(X, y)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        pipe.set_params(verbose=False)
        accuracy = pipe.score(Xt, yt)
        t_pred = time.perf_counter() - t0
        stderr = float(np.sqrt(accuracy * (1 - accuracy) / len(yt)))
        log(f"[{name}] held-out tile accuracy {accuracy:.4f} +- {stderr:.4f} (fit {t_fit:.0f} s)")
        model_path = save(pipe, out / f"polygons_{name}.pkl")
        t0 = time.perf_counter()
        maps = []
        for i, scene in enumerate(test_scenes):
            e = pipe.explain([scene.image], target=1, tile=TILE, stride=STRIDE)[0]
            maps.append(e.heatmap)
            if verbose:
                log(f"[{name}] explained test scene {i + 1}/{len(test_scenes)}")
        t_explain = time.perf_counter() - t0
        heatmaps[name] = maps
        dilate = descriptor_half_side(pipe)
        per_scene = [localisation(h, s, dilate) for h, s in zip(maps, test_scenes)]
        faithfulness, t_eval = None, 0.0
        if n_eval_tiles:
            t0 = time.perf_counter()
            tiles = [t for t, label in zip(Xt, yt) if label == 1][:n_eval_tiles]
            log(f"[{name}] region perturbation on {len(tiles)} positive held-out tiles")
            faithfulness = {
                pert: evaluate_faithfulness(pipe, tiles, out / f"evaluation_{name}_{pert}",
                                            eval_steps, eval_repeats, seed, pert)
                for pert in eval_perturbations}
            t_eval = time.perf_counter() - t0
        metrics["models"][name] = {
            "config": CONFIGS[name],
            "tile_accuracy": accuracy,
            "tile_accuracy_stderr": stderr,
            "kernel_weights": pipe.classifier_.kernel_weights_[0].tolist(),
            "n_support_vectors": int(pipe.classifier_.support_vectors_.shape[0]),
            "model_file": model_path.name,
            "model_bytes": model_path.stat().st_size,
            "seconds": {"fit": t_fit, "predict_heldout_tiles": t_pred,
                        "explain_test_scenes": t_explain, "region_perturbation": t_eval},
            "localisation": {"dilation_pixels": dilate, **summarise(per_scene)},
            "region_perturbation_aopc": faithfulness,
        }
    if set(models) >= {"hik", "chi2"}:
        metrics["chi2_minus_hik_accuracy_points"] = 100 * (
            metrics["models"]["chi2"]["tile_accuracy"] - metrics["models"]["hik"]["tile_accuracy"])
    rows = []
    for i, scene in enumerate(test_scenes[:n_figure]):
        norm = pictures.normalize_heatmaps([heatmaps[m][i] for m in models])
        gap = np.ones((scene.image.shape[0], 6, 3))
        parts = [np.repeat(scene.image[:, :, None], 3, axis=2)]
        for m, h in zip(models, norm):
            parts += [gap, pictures.colorize(h, "jet") / 255.0]
            pictures.save_png(out / f"scene{i}_{m}_triplet.png",
                              pictures.with_colorbar(pictures.triplet(scene.image, h)))
            pictures.save_png(out / f"scene{i}_{m}_overlay.png", pictures.overlay(scene.image, h))
        rows.append(np.hstack(parts))
    figure = np.vstack([np.vstack([r, np.ones((6, r.shape[1], 3))]) for r in rows])[:-6]
    pictures.save_png(out / "figure.png", pictures.with_colorbar(figure, "jet"))
    metrics["seconds_total"] = time.perf_counter() - t_start
    metrics["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0],
                          "platform": sys.platform}
    _write_json(out / "metrics.json", metrics)
    log(f"done in {metrics['seconds_total']:.0f} s; wrote {out / 'metrics.json'} and {out / 'figure.png'}")
    return metrics


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "experiments/results/polygons"))
    ap.add_argument("--train-scenes", type=int, default=60)
    ap.add_argument("--test-scenes", type=int, default=6, help="scenes explained tile by tile")
    ap.add_argument("--heldout-scenes", type=int, default=40, help="scenes for tile accuracy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--words", type=int, default=None, help="override the 128 words per scale")
    ap.add_argument("--n-jobs", type=int, default=2)
    args = ap.parse_args(argv)
    m = run(args.out, args.train_scenes, args.test_scenes, args.heldout_scenes, args.seed,
            args.words, args.n_jobs)
    for name, r in m["models"].items():
        loc = r["localisation"]
        print(f"{name:5s} accuracy {r['tile_accuracy']:.4f}  positive share on polygons "
              f"{loc['positive_share_on_polygons']:.2f} (area {loc['dilated_polygon_area_share']:.2f})  "
              f"mean relevance polygons {loc['mean_relevance_on_polygons']:+.4f} round "
              f"{loc['mean_relevance_on_round']:+.4f} background {loc['mean_relevance_on_background']:+.4f}")
        for pert, table in (r["region_perturbation_aopc"] or {}).items():
            print(f"      AOPC (MoRF, 9x9 {pert}): " + ", ".join(
                f"{k} {v['aopc']:.3f}" for k, v in table.items()))


if __name__ == "__main__":
    main()
