"""Neuralised SVM rules against the default and occlusion on the polygons chi2 model (issue 27).

    python experiments/neuralized_faithfulness.py --out experiments/results/neuralized --tiles 20

Trains (or reloads from ``--out``) the exponential-chi2 model of ``make
polygons-experiment`` (``configs/polygons_chi2.yaml``, the same scenes and seed),
then on ``--tiles`` held-out 102 x 102 crops (half positive, drawn as the polygons
experiment draws them) explaining "polygon":

* **region perturbation** (MoRF, 9 x 9 blocks, uniform noise and blur, the same
  noise seed for every method of a tile): AOPC of ``integrated`` (the default),
  ``Neuralized`` (midpoint, gi, hybrid), occlusion with the same perturbation and
  random order; paired differences per tile to occlusion, to the default and to random;
* **conservation**: per rule, ``|bias| / |f(x)|`` (what the neuralised rule leaves to
  the bias: unit biases, pooling entropies) and ``|residual| / |f(x)|`` (rounding);
* **cost** on ``--cost-tiles`` tiles: ``explain / decision_function`` of one tile (both
  with descriptor extraction; best of ``--repeats``, median over tiles) and the
  classifier step against one decision value of the features.

With ``--reuse-run DIR`` (the output folder of ``make polygons-experiment``, seed
and settings as here) the model is ``DIR/polygons_chi2.pkl`` and the tiles are that
run's 40 (``--tiles`` of them, half positive): only the neuralised rules' curves are
computed, the per-tile AOPC of occlusion, random and the default is read from
``DIR/region_perturbation.json``, after checking that the default's AOPC recomputed
here on the first tile agrees with the stored one (to 1e-9).

Outputs in ``--out``: ``neuralized_metrics.json``, ``neuralized_curves.png`` (mean MoRF
curves with one-standard-error bands; without ``--reuse-run``) or ``neuralized_paired.png``
(paired differences to occlusion and the default; with it), the model ``polygons_chi2.pkl`` and per-tile
results under ``partial/`` (a killed run resumes; results made with another model or
settings are recomputed).
"""

from __future__ import annotations

import argparse
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
    fit_models,
    mean_se,
    plot_curves,
    run_key,
    select_tiles,
    summarise_faithfulness,
    tile_faithfulness,
)

from bowlrp._utils.atomic import atomic_write_bytes  # noqa: E402
from bowlrp.classifier.relevance import classifier_relevance  # noqa: E402
from bowlrp.datasets import polygons as polygon_data  # noqa: E402
from bowlrp.datasets.polygons import generate, tile_dataset  # noqa: E402
from bowlrp.evaluation import region_perturbation  # noqa: E402
from bowlrp.evaluation.perturbation import aopc  # noqa: E402
from bowlrp.explanation import explain_trace  # noqa: E402
from bowlrp.model_files import load, save  # noqa: E402
from bowlrp.rules import Epsilon, Neuralized, integrated_gradient  # noqa: E402

DEFAULT = "integrated"


def methods() -> dict:
    """name -> rules (classifier step, descriptor step eps = 0 as in the polygons experiment)."""
    return {
        DEFAULT: [integrated_gradient(), Epsilon(0.0)],
        "neuralized-midpoint": [Neuralized("midpoint"), Epsilon(0.0)],
        "neuralized-gi": [Neuralized("gi"), Epsilon(0.0)],
        "neuralized-hybrid": [Neuralized("hybrid"), Epsilon(0.0)],
    }


def model(out: Path, n_train: int, seed: int, n_jobs: int):
    """The chi2 polygons pipeline: ``out/polygons_chi2.pkl`` if this script wrote it, else trained."""
    path = out / "polygons_chi2.pkl"
    if path.is_file():
        print(f"[neuralized] reusing {path}", flush=True)
        return load(path)
    X, y = tile_dataset(generate(seed, n_train))
    print(f"[neuralized] training the chi2 model on {len(X)} tiles", flush=True)
    pipes, _ = fit_models(X, y, ("chi2",), {"n_jobs": n_jobs, "verbose": True})
    pipe = pipes["chi2"]
    pipe.set_params(verbose=False)
    save(pipe, path)
    return pipe


def best_of(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def cost(pipe, tiles, rules: dict, repeats: int) -> dict:
    """Per rule: medians over tiles of explain / decision_function and step 1 / one decision value."""
    clf = pipe.classifier_
    ratios = {m: {"explain_over_decision": [], "step1_over_one_decision": []} for m in rules}
    for tile in tiles:
        x = pipe.forward_one(tile).features
        task, sign = clf.task_and_sign(x, 1)
        t_df = best_of(lambda t=tile: pipe.decision_function([t]), repeats)
        t_one = best_of(lambda x=x: clf.decision_function(x[None, :]), repeats)
        for m, r in rules.items():
            t_exp = best_of(lambda t=tile, r=r: explain_trace(pipe, pipe.forward_one(t), 1, r), repeats)
            t_clf = best_of(
                lambda r=r, x=x, task=task, sign=sign: classifier_relevance(clf, x, task, sign, r[0]), repeats
            )
            ratios[m]["explain_over_decision"].append(t_exp / t_df)
            ratios[m]["step1_over_one_decision"].append(t_clf / t_one)
    return {
        m: {k: {"median": float(np.median(v)), "max": float(np.max(v))} for k, v in r.items()}
        for m, r in ratios.items()
    }


def conservation(pipe, tiles, rules: dict) -> dict:
    """Per rule: quantiles over tiles of ``|bias| / |f|`` and ``|residual| / |f|``."""
    out = {}
    for m, r in rules.items():
        bias, residual = [], []
        for tile in tiles:
            e = explain_trace(pipe, pipe.forward_one(tile), 1, r)
            bias.append(abs(e.bias_relevance) / abs(e.score))
            residual.append(abs(e.residual) / abs(e.score))
        out[m] = {
            "bias_over_score": {"median": float(np.median(bias)), "p90": float(np.quantile(bias, 0.9))},
            "residual_over_score": {
                "median": float(np.median(residual)),
                "max": float(np.max(residual)),
            },
        }
    return out


def paired_to_default(curves: dict) -> dict:
    """Per perturbation and rule: mean and standard error over tiles of AOPC(rule) - AOPC(default)."""
    out = {}
    for pert, block in curves.items():
        base = np.asarray(block[DEFAULT]["aopc_per_tile"])
        out[pert] = {
            m: {k: v for k, v in mean_se(np.asarray(c["aopc_per_tile"]) - base).items() if k != "n"}
            for m, c in block.items()
            if m not in (DEFAULT, "random")
        }
    return out


def _curve(pipe, tile, heat, pert, steps, seed) -> np.ndarray:
    """The MoRF curve of one heatmap, as :func:`polygons.tile_faithfulness` computes it."""
    r = region_perturbation(pipe, [tile], [heat], ("morf",), BLOCK, steps, 1, pert, seed, 1)
    return r.curves["morf"][0, 0]


def _summary(aopcs: dict) -> dict:
    """Per perturbation: AOPC per method and paired differences to occlusion, default, random."""
    out = {}
    for pert, per_method in aopcs.items():
        table = {m: mean_se(np.asarray(v)) for m, v in per_method.items()}
        paired = {
            m: {
                ref: {
                    k: s for k, s in mean_se(np.asarray(v) - np.asarray(per_method[ref])).items() if k != "n"
                }
                for ref in ("occlusion", DEFAULT, "random")
                if ref != m
            }
            for m, v in per_method.items()
            if m != "random"
        }
        out[pert] = {"methods": table, "paired_differences": paired}
    return out


def plot_paired(summary: dict, path: Path) -> None:
    """Bars: paired AOPC differences to occlusion and to the default (± 1 s.e.), per perturbation."""
    import io

    import matplotlib  # plotting only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # plotting only

    perts = list(summary)
    fig, axes = plt.subplots(1, len(perts), figsize=(6 * len(perts), 4), squeeze=False)
    for ax, pert in zip(axes[0], perts):
        paired = summary[pert]["paired_differences"]
        names = [m for m in paired if m not in ("occlusion", "random")]
        ks = np.arange(len(names))
        for shift, ref in ((-0.2, "occlusion"), (0.2, DEFAULT)):
            rows = [paired[m].get(ref, {"mean": 0.0, "stderr": 0.0}) for m in names]
            ax.bar(
                ks + shift,
                [r["mean"] for r in rows],
                0.4,
                yerr=[r["stderr"] for r in rows],
                capsize=3,
                label=f"minus {ref}",
            )
        n = summary[pert]["methods"][names[0]]["n"]
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xticks(ks, names, rotation=20, fontsize=8)
        ax.set_title(f"chi2: paired AOPC differences, MoRF {BLOCK}x{BLOCK} {pert}, {n} tiles")
        ax.set_ylabel("AOPC(rule) - AOPC(reference)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def run_reusing(out, run_dir, n_tiles, seed, n_val, cost_tiles, repeats) -> dict:
    """Neuralised rules on the tiles of a finished polygons experiment (see module doc)."""
    import json

    from tqdm import tqdm  # progress bars only

    out, run_dir = Path(out), Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    stored = json.loads((run_dir / "region_perturbation.json").read_text())
    settings = stored["settings"]
    steps = int(settings["steps"])
    pipe = load(run_dir / "polygons_chi2.pkl")
    clf = pipe.classifier_
    Xt, yt, _ = polygon_data.overlapping_tiles(generate(seed + 5000, n_val))
    tiles_all = [int(i) for i in stored["tiles"]]
    if [int(yt[i]) for i in tiles_all] != [int(v) for v in stored["labels"]]:
        raise SystemExit(f"{run_dir}: its tiles do not match the held-out scenes of seed {seed}")
    pos = [k for k, i in enumerate(tiles_all) if yt[i] == 1][: (n_tiles + 1) // 2]
    neg = [k for k, i in enumerate(tiles_all) if yt[i] == 0][: n_tiles - len(pos)]
    chosen = sorted(pos + neg)  # positions in the stored run's tile list
    curves_stored = stored["curves"]["chi2"]
    rules = methods()
    new = {m: r for m, r in rules.items() if m != DEFAULT}
    key = run_key(
        clf, pipe.features([Xt[tiles_all[k]] for k in chosen[:1]]), {"steps": steps, "seed": seed, "reuse": 1}
    )
    per_tile = []
    for k in tqdm(chosen, desc="[neuralized] region perturbation (neuralised rules)"):
        i = tiles_all[k]

        def compute(i=i):
            trace = pipe.forward_one(Xt[i])
            heat = {m: explain_trace(pipe, trace, 1, r).heatmap for m, r in new.items()}
            return {
                p: {m: _curve(pipe, Xt[i], h, p, steps, seed + i).tolist() for m, h in heat.items()}
                for p in settings["perturbations"]
            }

        per_tile.append(cached_tile(out / "partial" / f"tile{i:05d}.json", key, compute))
    # the stored run and this one must be the same experiment: the default's AOPC, recomputed
    i0 = tiles_all[chosen[0]]
    check = {}
    for p in settings["perturbations"]:
        heat = explain_trace(pipe, pipe.forward_one(Xt[i0]), 1, rules[DEFAULT]).heatmap
        here = float(aopc(_curve(pipe, Xt[i0], heat, p, steps, seed + i0)))
        there = float(curves_stored[p][DEFAULT]["aopc_per_tile"][chosen[0]])
        check[p] = {"recomputed": here, "stored": there}
        if abs(here - there) > 1e-9 * max(1.0, abs(there)):
            raise SystemExit(f"{run_dir}: the default's AOPC differs ({here} here, {there} stored)")
    aopcs = {
        p: {
            **{
                m: [float(curves_stored[p][m]["aopc_per_tile"][k]) for k in chosen]
                for m in ("occlusion", DEFAULT, "random")
            },
            **{m: [float(aopc(np.asarray(t[p][m]))) for t in per_tile] for m in new},
        }
        for p in settings["perturbations"]
    }
    tiles = [Xt[tiles_all[k]] for k in chosen]
    metrics = {
        "settings": {
            "reused_run": str(run_dir),
            "seed": seed,
            "tiles": [tiles_all[k] for k in chosen],
            "positive_tiles": len(pos),
            "region_perturbation": settings,
            "descriptor_rule": "Epsilon(0.0)",
            "n_support_vectors": int(clf.support_vectors_.shape[0]),
            "n_features": int(clf.n_features_in_),
        },
        "reuse_check": check,
        "region_perturbation": _summary(aopcs),
        "conservation": conservation(pipe, tiles, rules),
        "cost": cost(pipe, tiles[: max(cost_tiles, 0)], rules, repeats) if cost_tiles else None,
    }
    plot_paired(metrics["region_perturbation"], out / "neuralized_paired.png")
    metrics["seconds_total"] = time.perf_counter() - t_start
    _write_json(out / "neuralized_metrics.json", metrics)
    return metrics


def run(out, n_train, n_val, n_tiles, steps, seed, n_jobs, cost_tiles, repeats) -> dict:
    from tqdm import tqdm  # progress bars only

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    pipe = model(out, n_train, seed, n_jobs)
    clf = pipe.classifier_
    Xt, yt, _ = polygon_data.overlapping_tiles(generate(seed + 5000, n_val))
    idx = select_tiles(yt, n_tiles, seed)
    rules = methods()
    Ft = pipe.features([Xt[i] for i in idx])
    key = run_key(
        clf,
        Ft,
        {"steps": steps, "seed": seed, "block": BLOCK, "methods": {m: repr(r) for m, r in rules.items()}},
    )
    per_tile = [
        cached_tile(
            out / "partial" / f"tile{i:05d}.json",
            key,
            lambda i=i: tile_faithfulness(pipe, Xt[i], rules, PERTURBATIONS, steps, seed + int(i)),
        )
        for i in tqdm(idx, desc="[neuralized] region perturbation")
    ]
    table, curves = summarise_faithfulness(per_tile, PERTURBATIONS)
    tiles = [Xt[i] for i in idx]
    metrics = {
        "settings": {
            "seed": seed,
            "train_scenes": n_train,
            "heldout_scenes": n_val,
            "tiles": len(idx),
            "positive_tiles": int(yt[idx].sum()),
            "steps": steps,
            "block": BLOCK,
            "descriptor_rule": "Epsilon(0.0)",
            "n_support_vectors": int(clf.support_vectors_.shape[0]),
            "n_features": int(clf.n_features_in_),
        },
        "region_perturbation": table,
        "paired_to_default": paired_to_default(curves),
        "conservation": conservation(pipe, tiles, rules),
        "cost": cost(pipe, tiles[: max(cost_tiles, 0)], rules, repeats) if cost_tiles else None,
        "seconds_total": None,
    }
    plot_curves({"chi2": curves}, out / "neuralized_curves.png", steps)
    metrics["seconds_total"] = time.perf_counter() - t_start
    _write_json(out / "neuralized_metrics.json", metrics)
    return metrics


def print_summary(m: dict) -> None:
    for pert, block in m["region_perturbation"].items():
        print(f"-- {pert}: AOPC (stderr); paired differences to occlusion and to {DEFAULT}")
        paired_default = m.get("paired_to_default", {}).get(pert, {})
        for name, row in block["methods"].items():
            d = block["paired_differences"].get(name, {})
            occ = d.get("occlusion")
            dflt = d.get(DEFAULT) or paired_default.get(name)
            mean = row.get("aopc", row.get("mean"))
            print(
                f"  {name:22s} {mean:+.3f} ({row['stderr']:.3f})"
                + (f"  vs occ {occ['mean']:+.3f} +- {occ['stderr']:.3f}" if occ else "")
                + (f"  vs default {dflt['mean']:+.3f} +- {dflt['stderr']:.3f}" if dflt else "")
            )
    for name, c in m["conservation"].items():
        print(f"  {name:22s} bias/f median {c['bias_over_score']['median']:.3g}  residual/f max "
              f"{c['residual_over_score']['max']:.2g}")  # fmt: skip
    for name, c in (m["cost"] or {}).items():
        print(f"  {name:22s} explain/decision {c['explain_over_decision']['median']:.2f} "
              f"(max {c['explain_over_decision']['max']:.2f}); step 1 / one decision "
              f"{c['step1_over_one_decision']['median']:.1f}")  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "experiments/results/neuralized"))
    ap.add_argument("--train-scenes", type=int, default=60)
    ap.add_argument("--heldout-scenes", type=int, default=6)
    ap.add_argument("--tiles", type=int, default=20, help="held-out tiles for region perturbation")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--cost-tiles", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reuse-run", default=None, help="output folder of make polygons-experiment")
    a = ap.parse_args(argv)
    if a.reuse_run:
        m = run_reusing(a.out, a.reuse_run, a.tiles, a.seed, a.heldout_scenes, a.cost_tiles, a.repeats)
    else:
        m = run(
            a.out,
            a.train_scenes,
            a.heldout_scenes,
            a.tiles,
            a.steps,
            a.seed,
            a.n_jobs,
            a.cost_tiles,
            a.repeats,
        )
    print_summary(m)
    print(f"[neuralized] done in {m['seconds_total']:.0f} s; wrote {Path(a.out) / 'neuralized_metrics.json'}")


if __name__ == "__main__":
    main()
