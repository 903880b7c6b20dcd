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
cached in ``--model-dir`` (default ``--out/models``) and reused.
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
from bowlrp.model_files import load, save  # noqa: E402
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
        "channels": [
            {
                "name": "fisher-sift",
                "extractor": {
                    "DenseSIFT": {"bin_sizes": [6], "steps": 6, "rotate": True, "backend": "opencv"}
                },
                "encoder": {
                    "FisherVector": {
                        "vocabulary": {
                            "GMMVocabulary": {
                                "n_components": n_gauss,
                                "pca_components": 32,
                                "max_descriptors": 100000,
                            }
                        },
                        "parts": ["mu", "sigma"],
                        "normalization": "power+l2",
                    }
                },
                "kernel": "rbf",
            }
        ],
        "classifier": {"C": 10.0},
    }
    return {"chi2": chi2, "rbf": rbf, "fv_rbf": fv}


def train_models(mdir: Path, names, n_train: int, n_words: int, n_gauss: int, seed: int, n_jobs: int) -> dict:
    """Fit (or load cached, from ``mdir``) models; returns {name: (pipeline, info)}."""
    configs = model_configs(n_words, n_gauss)
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
            info = {
                "fit_seconds": time.perf_counter() - t0,
                "config": configs[name],
                "train_scenes": n_train,
                "train_tiles": len(X),
            }
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


def variants(nodes: int) -> dict:
    """The classifier-step rules compared (docs/taylor.md)."""
    from bowlrp.rules import Taylor

    return {
        "taylor-segment": Taylor(),
        "taylor-boundary": Taylor(root="boundary", n_candidates=5),
        f"integrated{nodes}-segment": Taylor(nodes=nodes),
        f"integrated{nodes}-boundary": Taylor(root="boundary", nodes=nodes, n_candidates=5),
    }


def _best_time(fn, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def evaluate_tile(
    pipe,
    tile,
    rules: dict,
    descriptor_rule,
    perturbations,
    steps: int,
    repeats: int,
    seed: int,
    timing_repeats: int,
) -> dict:
    """Residual, root distance, cost and AOPC of every variant (and occlusion, random) on one tile."""
    from bowlrp.classifier.relevance import classifier_relevance
    from bowlrp.evaluation import occlusion_map, region_perturbation
    from bowlrp.evaluation.perturbation import aopc
    from bowlrp.explanation import explain_trace

    clf = pipe.classifier_
    trace = pipe.forward_one(tile)
    x = trace.features
    task, sign = clf.task_and_sign(x, 1)
    t_df = _best_time(lambda: pipe.decision_function([tile]), timing_repeats)
    t_clf_df = _best_time(lambda: clf.decision_function(x[None, :]), timing_repeats)
    out = {
        "score": float(clf.decision_function(x[None, :]).ravel()[task] * sign),
        "seconds_decision_function": t_df,
        "seconds_classifier_decision": t_clf_df,
        "variants": {},
        "aopc": {},
    }
    heatmaps = {}
    for name, rule in rules.items():
        dims = classifier_relevance(clf, x, task, sign, rule)
        t_clf = _best_time(lambda rule=rule: classifier_relevance(clf, x, task, sign, rule), timing_repeats)
        t_exp = _best_time(
            lambda rule=rule: explain_trace(pipe, pipe.forward_one(tile), 1, [rule, descriptor_rule]),
            timing_repeats,
        )
        e = explain_trace(pipe, trace, 1, [rule, descriptor_rule])
        heatmaps[name] = e.heatmap
        info = dims.root_info or {}
        out["variants"][name] = {
            "relative_residual": abs(dims.residual) / abs(dims.score),
            "root_distance": dims.root_distance,
            "segment_root_distance": info.get("segment_distance"),
            "root_value": dims.root_value,
            "walk_steps": info.get("walk_steps"),
            "stationarity": info.get("stationarity"),
            "domain": info.get("domain"),
            "cost_ratio": t_exp / t_df,
            "classifier_cost_ratio": t_clf / t_clf_df,
            "seconds_explain": t_exp,
        }
    for pert in perturbations:
        maps = dict(heatmaps)
        t0 = time.perf_counter()
        maps["occlusion"] = occlusion_map(pipe, tile, 9, pert, seed, 1)
        t_occ = time.perf_counter() - t0
        table = {}
        for name, heat in maps.items():
            r = region_perturbation(pipe, [tile], [heat], ("morf",), 9, steps, repeats, pert, seed, 1)
            table[name] = float(aopc(r.curves["morf"]).mean())
        first = next(iter(heatmaps.values()))
        r = region_perturbation(pipe, [tile], [first], ("random",), 9, steps, repeats, pert, seed, 1)
        table["random"] = float(aopc(r.curves["random"]).mean())
        out["aopc"][pert] = table
        out[f"seconds_occlusion_{pert}"] = t_occ
    return out


def _stats(values) -> dict:
    v = np.asarray([a for a in values if a is not None], dtype=float)
    if v.size == 0:
        return {}
    return {
        "median": float(np.median(v)),
        "p90": float(np.quantile(v, 0.9)),
        "mean": float(v.mean()),
        "max": float(v.max()),
        "n": int(v.size),
    }


def _mean_se(values) -> dict:
    v = np.asarray(values, dtype=float)
    se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "stderr": se, "n": int(v.size)}


def summarise(tiles: list[dict]) -> dict:
    """Per variant: residual / distance / cost statistics (distances also relative to the
    first variant, today's default); per perturbation: AOPC with paired standard errors of
    the per-tile differences to occlusion and to random."""
    names = list(tiles[0]["variants"])
    out = {"variants": {}, "aopc": {}}
    for name in names:
        rows = [t["variants"][name] for t in tiles]
        gain = [
            1 - r["root_distance"] / r["segment_root_distance"] for r in rows if r["segment_root_distance"]
        ]
        old = [t["variants"][names[0]]["root_distance"] for t in tiles]
        ratio = [r["root_distance"] / o for r, o in zip(rows, old) if o]
        out["variants"][name] = {
            "distance_over_old_default": _stats(ratio),
            "share_not_farther_than_old_default": float(
                np.mean([r["root_distance"] <= o * (1 + 1e-9) for r, o in zip(rows, old)])
            ),
            "relative_residual": _stats([r["relative_residual"] for r in rows]),
            "root_distance": _stats([r["root_distance"] for r in rows]),
            "segment_root_distance": _stats([r["segment_root_distance"] for r in rows]),
            "root_distance_gain": _stats(gain),
            "cost_ratio": _stats([r["cost_ratio"] for r in rows]),
            "classifier_cost_ratio": _stats([r["classifier_cost_ratio"] for r in rows]),
        }
    for pert in tiles[0]["aopc"]:
        methods = list(tiles[0]["aopc"][pert])
        table = {}
        for m in methods:
            a = np.array([t["aopc"][pert][m] for t in tiles])
            occ = np.array([t["aopc"][pert]["occlusion"] for t in tiles])
            rnd = np.array([t["aopc"][pert]["random"] for t in tiles])
            table[m] = {
                **_mean_se(a),
                "minus_occlusion": _mean_se(a - occ),
                "minus_random": _mean_se(a - rnd),
            }
        out["aopc"][pert] = table
    return out


def run(
    out_dir,
    models=("chi2", "rbf", "fv_rbf"),
    n_train: int = 30,
    n_words: int = 128,
    n_gauss: int = 16,
    n_tiles: int = 20,
    nodes: int = 16,
    steps: int = 40,
    repeats: int = 3,
    perturbations=("uniform", "blur"),
    seed: int = 0,
    n_jobs: int = 2,
    timing_repeats: int = 3,
    n_val: int = 12,
    model_dir=None,
    results_name: str = "results.json",
    summarise_only: bool = False,
) -> dict:
    from tqdm import tqdm

    from bowlrp.rules import Epsilon

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mdir = Path(model_dir) if model_dir else out / "models"
    fitted = train_models(mdir, models, n_train, n_words, n_gauss, seed, n_jobs)
    Xv, yv = tile_dataset(generate(seed + 5000, n_val))
    tiles = [t for t, label in zip(Xv, yv) if label == 1][:n_tiles]
    rules = variants(nodes)
    results = {
        "settings": {
            "train_scenes": n_train,
            "words": n_words,
            "gmm_components": n_gauss,
            "tiles": len(tiles),
            "heldout_scenes": n_val,
            "nodes": nodes,
            "steps": steps,
            "repeats": repeats,
            "block": 9,
            "seed": seed,
            "descriptor_rule": "epsilon=0",
            "perturbations": list(perturbations),
            "explained_class": 1,
            "rules": {k: repr(v) for k, v in rules.items()},
        },
        "models": {},
    }
    for name in models:
        pipe, info = fitted[name]
        pipe.set_params(n_jobs=None, verbose=False)
        partial = out / "partial" / name
        partial.mkdir(parents=True, exist_ok=True)
        per_tile = []
        for i, tile in enumerate(tqdm(tiles, desc=name, leave=False)):
            tag = "-".join(perturbations) or "noaopc"
            path = partial / f"tile{i:03d}_{nodes}_{steps}_{repeats}.json"
            if perturbations != ("uniform", "blur"):
                path = path.with_name(f"tile{i:03d}_{nodes}_{steps}_{repeats}_{tag}.json")
            if path.is_file():
                per_tile.append(json.loads(path.read_text()))
                continue
            if summarise_only:
                continue
            try:
                r = evaluate_tile(
                    pipe, tile, rules, Epsilon(0.0), perturbations, steps, repeats, seed + i, timing_repeats
                )
            except Exception as exc:  # record and go on
                r = {"error": f"{type(exc).__name__}: {exc}"}
                log(f"[{name}] tile {i}: {r['error']}")
            _write_json(path, r)
            per_tile.append(r)
        ok = [t for t in per_tile if "error" not in t]
        results["models"][name] = {
            "fit_seconds": info["fit_seconds"],
            "train_tiles": info["train_tiles"],
            "kernel_weights": pipe.classifier_.kernel_weights_[0].tolist(),
            "n_support_vectors": int(pipe.classifier_.support_vectors_.shape[0]),
            "n_features": int(pipe.classifier_.support_vectors_.shape[1]),
            "failures": [t["error"] for t in per_tile if "error" in t],
            "tiles_done": len(ok),
            "summary": summarise(ok) if ok else None,
            "tiles": per_tile,
        }
        _write_json(out / results_name, results)
    return results


def table(results: dict) -> str:
    """variant | residual median/p90 | root distance | AOPC uniform/blur | cost ratio."""
    lines = [
        "| model | variant | residual median / p90 | root distance (old default -> this) | "
        "AOPC uniform (- occlusion) | AOPC blur (- occlusion) | cost ratio (classifier step) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, r in results["models"].items():
        s = r["summary"]
        if s is None:
            continue
        for m in [*s["variants"], "occlusion", "random"]:
            cells = []
            for pert in ("uniform", "blur"):
                a = s["aopc"].get(pert, {}).get(m)
                if a is None:
                    cells.append("-")
                    continue
                d = a["minus_occlusion"]
                cells.append(f"{a['mean']:.3f} ± {a['stderr']:.3f} ({d['mean']:+.3f} ± {d['stderr']:.3f})")
            v = s["variants"].get(m)
            if v is None:
                lines.append(f"| {model} | {m} | - | - | {cells[0]} | {cells[1]} | - |")
                continue
            res, dist = v["relative_residual"], v["root_distance"]
            seg = s["variants"][next(iter(s["variants"]))]["root_distance"]
            lines.append(
                f"| {model} | {m} | {100 * res['median']:.3g} % / {100 * res['p90']:.3g} % | "
                f"{seg['median']:.4f} -> {dist['median']:.4f} | {cells[0]} | {cells[1]} | "
                f"{v['cost_ratio']['median']:.2f} ({v['classifier_cost_ratio']['median']:.1f}) |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "experiments/results/taylor"))
    ap.add_argument("--models", default="chi2,rbf,fv_rbf")
    ap.add_argument("--train-scenes", type=int, default=30)
    ap.add_argument("--words", type=int, default=128)
    ap.add_argument("--gauss", type=int, default=16)
    ap.add_argument("--tiles", type=int, default=20)
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--heldout-scenes", type=int, default=12)
    ap.add_argument("--timing-repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--model-dir", default=None, help="cached models (default: OUT/models)")
    ap.add_argument(
        "--perturbations",
        default="uniform,blur",
        help="comma-separated; empty: no region perturbation (residuals, roots, cost)",
    )
    ap.add_argument("--results", default="results.json", help="file name in --out")
    ap.add_argument(
        "--summarise-only",
        action="store_true",
        help="only summarise the tiles already done (in --out/partial)",
    )
    args = ap.parse_args(argv)
    results = run(
        args.out,
        tuple(args.models.split(",")),
        args.train_scenes,
        args.words,
        args.gauss,
        args.tiles,
        args.nodes,
        args.steps,
        args.repeats,
        seed=args.seed,
        n_jobs=args.n_jobs,
        timing_repeats=args.timing_repeats,
        n_val=args.heldout_scenes,
        model_dir=args.model_dir,
        perturbations=tuple(p for p in args.perturbations.split(",") if p),
        results_name=args.results,
        summarise_only=args.summarise_only,
    )
    print(table(results))
    log(f"wrote {Path(args.out) / args.results}")


if __name__ == "__main__":
    main()
