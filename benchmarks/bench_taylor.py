"""Taylor-type classifier rules on an exponential-chi2 polygons model (issue 13).

For each variant (:func:`experiments.taylor_faithfulness.variants`): the relative
residual ``|f(x) - sum R - f(x~)| / |f(x)|`` (median / 90th percentile), the
root distance ``||x - x~||`` (median; segment root -> this variant's root), and
the cost ``time(explain) / time(decision_function)`` on a 102 x 102 polygons
tile (both with descriptor extraction; best of ``--repeats``, medians over
tiles) and for the classifier step alone against one decision value.

    python benchmarks/bench_taylor.py [--model M.skops] [--tiles 10] [--repeats 3]

Without ``--model`` a small chi2 model is trained first (``configs/polygons_chi2.yaml``
with ``--words`` words per scale on ``--train-scenes`` scenes).
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

from taylor_faithfulness import model_configs, variants  # noqa: E402

from bowlrp.classifier.relevance import classifier_relevance  # noqa: E402
from bowlrp.datasets.polygons import generate, tile_dataset  # noqa: E402
from bowlrp.explanation import explain_trace  # noqa: E402
from bowlrp.model_files import load  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402
from bowlrp.rules import Epsilon  # noqa: E402


def best_of(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure_tile(pipe, tile, rules, repeats) -> dict:
    """Per variant: relative residual, root distances and cost ratios on one tile."""
    clf = pipe.classifier_
    x = pipe.forward_one(tile).features
    task, sign = clf.task_and_sign(x, 1)
    t_df = best_of(lambda: pipe.decision_function([tile]), repeats)
    t_one = best_of(lambda: clf.decision_function(x[None, :]), repeats)
    out = {}
    for name, rule in rules.items():
        d = classifier_relevance(clf, x, task, sign, rule)
        t_clf = best_of(lambda r=rule: classifier_relevance(clf, x, task, sign, r), repeats)
        t_exp = best_of(
            lambda r=rule: explain_trace(pipe, pipe.forward_one(tile), 1, [r, Epsilon(0.0)]), repeats
        )
        out[name] = {
            "res": abs(d.residual) / abs(d.score),
            "dist": d.root_distance,
            "seg": d.root_info["segment_distance"],
            "cost": t_exp / t_df,
            "clf": t_clf / t_one,
        }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--train-scenes", type=int, default=10)
    ap.add_argument("--words", type=int, default=48)
    ap.add_argument("--tiles", type=int, default=10)
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if args.model:
        pipe = load(args.model, trusted=args.model.endswith(".pkl"))
    else:
        X, y = tile_dataset(generate(0, args.train_scenes))
        t0 = time.perf_counter()
        pipe = Pipeline.from_config(model_configs(args.words, 16)["chi2"]).fit(X, y)
        print(f"trained a chi2 model on {len(X)} tiles in {time.perf_counter() - t0:.0f} s")
    pipe.set_params(n_jobs=None, verbose=False)
    clf = pipe.classifier_
    Xv, yv = tile_dataset(generate(5000, 6))
    tiles = [t for t, label in zip(Xv, yv) if label == 1][: args.tiles]
    rules = variants(args.nodes)
    rows = {name: {"res": [], "dist": [], "seg": [], "cost": [], "clf": []} for name in rules}
    for tile in tiles:
        for name, row in measure_tile(pipe, tile, rules, args.repeats).items():
            for key, value in row.items():
                rows[name][key].append(value)
    print(
        f"{len(tiles)} positive tiles, {clf.support_vectors_.shape[0]} support vectors, "
        f"V = {clf.support_vectors_.shape[1]}"
    )
    print(
        "| variant | residual median / p90 | root distance (segment -> this) | "
        "cost explain / decision_function | classifier step / one decision value |"
    )
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        res = np.array(r["res"])
        print(
            f"| {name} | {100 * np.median(res):.3g} % / {100 * np.quantile(res, 0.9):.3g} % | "
            f"{np.median(r['seg']):.4f} -> {np.median(r['dist']):.4f} | "
            f"{np.median(r['cost']):.2f} (max {np.max(r['cost']):.2f}) | "
            f"{np.median(r['clf']):.0f} |"
        )


if __name__ == "__main__":
    main()
