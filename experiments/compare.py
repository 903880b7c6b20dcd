"""bowlrp's LRP pixel rules against occlusion, LIME and SHAP on the polygons models.

    python experiments/compare.py --out experiments/results/compare
    python experiments/compare.py --tiles 4 --samples 200 --train-scenes 20   # a small run

Trains the HIK and chi2 polygons models (``configs/polygons_*.yaml``) and a
Fisher-vector model (same rotated dense SIFT, PCA 32, GMM 16, linear SVM) on
generated scenes, picks the ``--tiles`` 102 x 102 held-out tiles the model scores
highest for "polygon", and explains each with every method:

* LRP with the pixel rules ``flat``, ``contribution`` (full / window / gradient;
  full without the blur adjoint) and, for the Fisher model, ``siftbins`` and the
  contribution per descriptor dimension;
* occlusion with uniform noise and with blur (9 x 9 blocks);
* LIME, KernelSHAP (SLIC superpixels) and SHAP's Partition explainer (blur masker),
  ``--samples`` model evaluations each (bowlrp.evaluation.baselines);
* a random order.

Each heatmap is measured by region perturbation (9 x 9 blocks, most relevant first,
``--steps`` x ``--repeats``, the same noise for every method of a tile) under uniform
noise and blur: AOPC mean +- standard error over tiles, paired differences against
the best LRP rule, seconds and model evaluations per tile. Writes ``results.json``,
``table.md`` and ``figure.png`` (heatmaps side by side); per-tile results are kept
in ``partial/`` (atomic writes), so a killed run resumes.

Tiles are explained in ``--jobs`` worker processes of one thread each (BLAS, OpenMP,
Numba and OpenCV limited to one thread): every method of a tile runs in one process,
so the seconds per tile are one core's seconds for every method alike (LRP rules and
``decision_function``: best of 3 calls; the peers: one call).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

if __name__ in ("__main__", "__mp_main__"):  # run as a program (not imported by the tests)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")  # one thread per process; tiles run in --jobs processes
if __name__ == "__mp_main__":  # a tile worker: no per-sample progress bars from LIME
    os.environ["TQDM_DISABLE"] = "1"

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bowlrp import image as pictures  # noqa: E402
from bowlrp.classifier.svm import KernelSVC  # noqa: E402
from bowlrp.datasets.polygons import generate, tile_dataset  # noqa: E402
from bowlrp.descriptors.sift import DenseSIFT  # noqa: E402
from bowlrp.encoding.fisher import FisherVector  # noqa: E402
from bowlrp.encoding.vocabulary import GMMVocabulary  # noqa: E402
from bowlrp.evaluation import region_perturbation  # noqa: E402
from bowlrp.evaluation.baselines import explain_baseline  # noqa: E402
from bowlrp.evaluation.perturbation import aopc  # noqa: E402
from bowlrp.explanation import explain_trace  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402
from bowlrp.rules import Contribution, Flat, SIFTBins  # noqa: E402

CONFIGS = {"hik": "polygons_hik", "chi2": "polygons_chi2"}
TITLE = {"hik": "HIK + MKL", "chi2": "exp-χ² + MKL", "fisher": "Fisher vectors, linear"}
PERTURBATIONS = ("uniform", "blur")
BLOCK = 9


def lrp_rules(model: str) -> dict:
    rules = {
        "lrp-flat": Flat(),
        "lrp-contribution": Contribution(),
        "lrp-contribution-window": Contribution("window"),
        "lrp-contribution-gradient": Contribution("gradient"),
        "lrp-contribution-noblur": Contribution(through_blur=False),
    }
    if model == "fisher":
        rules["lrp-siftbins"] = SIFTBins()
        rules["lrp-contribution-perdimension"] = Contribution(per_dimension=True)
    return rules


PEERS = ("occlusion-uniform", "occlusion-blur", "lime", "shap-partition", "kernel-shap")


def log(msg: str) -> None:
    print(f"[compare] {msg}", flush=True)


def fisher_pipeline(n_jobs) -> Pipeline:
    channels = [
        (
            f"fisher-sift-b{b}",
            DenseSIFT(bin_sizes=[b], steps=b, rotate=True, backend="opencv"),
            FisherVector(
                GMMVocabulary(16, pca_components=32, max_descriptors=50000, random_state=0),
                parts=("mu", "sigma"),
            ),
        )
        for b in (6, 9)
    ]
    return Pipeline(channels, KernelSVC("linear", C=1.0), n_jobs=n_jobs, random_state=0)


def build(name: str, words: int | None, n_jobs) -> Pipeline:
    if name == "fisher":
        return fisher_pipeline(n_jobs)
    pipe = Pipeline.from_config(CONFIGS[name], n_jobs=n_jobs)
    if words:
        for _, _, enc in pipe.channels:
            enc.vocabulary.set_params(n_words=words)
    return pipe


def _atomic_json(path: Path, data) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def time_lrp(pipe, tile, rule, repeats: int = 1) -> tuple[np.ndarray, float]:
    """Heatmap of one LRP rule and its seconds (forward pass included; best of ``repeats``)."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        e = explain_trace(pipe, pipe.forward_one(tile), 1, rule)
        best = min(best, time.perf_counter() - t0)
    return e.heatmap, best


def time_decision(pipe, tile, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        pipe.decision_function([tile])
        best = min(best, time.perf_counter() - t0)
    return best


def chosen_rules(model: str, args) -> dict:
    rules = lrp_rules(model)
    keep = set(args.variants.split(",")) if args.variants else set(rules)
    return {m: r for m, r in rules.items() if m in keep or m == "lrp-flat"}


def chosen_peers(args) -> list[str]:
    return [m for m in (args.peers.split(",") if args.peers else PEERS) if m]


def evaluate_tile(pipe, model: str, tile, index: int, args) -> tuple[dict, dict]:
    """Heatmaps, costs and perturbation curves of every method for one tile."""
    maps, costs = {}, {}
    costs["decision_function"] = {"seconds": time_decision(pipe, tile), "evaluations": 1}
    for m, rule in chosen_rules(model, args).items():
        maps[m], sec = time_lrp(pipe, tile, rule, repeats=3)
        costs[m] = {"seconds": sec, "evaluations": 1}
    for m in chosen_peers(args):
        r = explain_baseline(m, pipe, tile, 1, args.samples, BLOCK, args.seed + index)
        maps[m], costs[m] = r.heatmap, {"seconds": r.seconds, "evaluations": r.evaluations}
    curves = {}
    for pert in PERTURBATIONS:
        curves[pert] = {}
        for m, heat in {**maps, "random": maps["lrp-flat"]}.items():
            ordering = "random" if m == "random" else "morf"
            r = region_perturbation(
                pipe, [tile], [heat], (ordering,), BLOCK, args.steps, args.repeats, pert, args.seed + index, 1
            )
            curves[pert][m] = r.curves[ordering][0].tolist()
    return {"costs": costs, "curves": curves}, maps


def _stderr(v: np.ndarray) -> float:
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def summarise(results: list[dict]) -> dict:
    """AOPC mean +- stderr over tiles, paired differences against the best LRP rule."""
    out = {}
    for pert in PERTURBATIONS:
        methods = list(results[0]["curves"][pert])
        per_tile = {
            m: np.array([aopc(np.array(r["curves"][pert][m])).mean() for r in results]) for m in methods
        }

        lrp = [m for m in methods if m.startswith("lrp-")]
        best = max(lrp, key=lambda m: per_tile[m].mean())
        out[pert] = {
            "best_lrp": best,
            "methods": {
                m: {
                    "aopc": float(v.mean()),
                    "stderr": _stderr(v),
                    "diff_vs_best_lrp": float((v - per_tile[best]).mean()),
                    "diff_stderr": _stderr(v - per_tile[best]),
                    "diff_vs_flat": float((v - per_tile["lrp-flat"]).mean()),
                    "diff_vs_flat_stderr": _stderr(v - per_tile["lrp-flat"]),
                }
                for m, v in per_tile.items()
            },
        }
    methods = list(results[0]["costs"])
    out["costs"] = {
        m: {
            "seconds": float(np.mean([r["costs"][m]["seconds"] for r in results])),
            "evaluations": float(np.mean([r["costs"][m]["evaluations"] for r in results])),
        }
        for m in methods
    }
    return out


def _beats(s: dict, pert: str, method: str) -> dict:
    """The best LRP rule against ``method``: paired difference and its standard error."""
    m = s[pert]["methods"][method]
    diff, se = -m["diff_vs_best_lrp"], m["diff_stderr"]
    return {"diff": diff, "stderr": se, "beats_by_2se": bool(diff > 2 * se)}


def targets(s: dict) -> dict:
    """The issue's targets for one model (best LRP rule per perturbation)."""
    out = {}
    unmatched = {
        "uniform": ("occlusion-blur", "lime", "kernel-shap"),
        "blur": ("occlusion-uniform", "lime", "kernel-shap"),
    }
    for pert, peers in unmatched.items():
        for peer in peers:
            if peer in s[pert]["methods"]:
                out[f"{pert}: beats {peer} by > 2 SE"] = _beats(s, pert, peer)
    if "occlusion-blur" in s["blur"]["methods"]:
        best = s["blur"]["methods"][s["blur"]["best_lrp"]]["aopc"]
        occ = s["blur"]["methods"]["occlusion-blur"]["aopc"]
        out["blur: within 10 % of occlusion-blur"] = {
            "relative": (best - occ) / abs(occ),
            "met": bool(best >= 0.9 * occ),
        }
    for pert, peer in (("blur", "shap-partition"), ("uniform", "occlusion-uniform")):
        if peer in s[pert]["methods"]:
            r = _beats(s, pert, peer)
            out[f"{pert}: ahead of {peer}"] = {**r, "met": bool(r["diff"] > 0)}
    return out


def _cell(m: dict) -> str:
    return f"{m['aopc']:.3f} ± {m['stderr']:.3f}"


def table(summary: dict, models) -> str:
    """Markdown: per model, AOPC under both perturbations, paired differences against the
    best LRP rule, seconds (and the ratio to one ``decision_function``) and model
    evaluations per tile; then the issue's targets, each met or not with its number."""
    lines = []
    for model in models:
        s = summary[model]
        df = s["costs"]["decision_function"]["seconds"]
        lines.append(f"\n#### {TITLE.get(model, model)} ({s['n_tiles']} tiles)\n")
        lines.append(
            "| method | AOPC uniform noise | AOPC blur | paired vs best LRP, uniform "
            "| paired vs best LRP, blur | seconds per tile (× decision_function) "
            "| model evaluations |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for m in s["uniform"]["methods"]:
            u, b = s["uniform"]["methods"][m], s["blur"]["methods"][m]
            c = s["costs"].get(m)
            cost = f"{c['seconds']:.3f} ({c['seconds'] / df:.1f}×) | {c['evaluations']:.0f}" if c else "— | —"
            bold = "**" if m in (s["uniform"]["best_lrp"], s["blur"]["best_lrp"]) else ""
            lines.append(
                f"| {bold}{m}{bold} | {_cell(u)} | {_cell(b)} | "
                f"{u['diff_vs_best_lrp']:+.3f} ± {u['diff_stderr']:.3f} | "
                f"{b['diff_vs_best_lrp']:+.3f} ± {b['diff_stderr']:.3f} | {cost} |"
            )
        lines.append(
            f"\nBest LRP rule: uniform noise `{s['uniform']['best_lrp']}`, blur "
            f"`{s['blur']['best_lrp']}`; one `decision_function` {df:.3f} s per tile. "
            "Targets:\n"
        )
        for name, t in targets(s).items():
            if "relative" in t:
                lines.append(
                    f"- {name}: {'met' if t['met'] else '**missed**'} ({100 * t['relative']:+.1f} %)"
                )
            else:
                ok = t.get("met", t.get("beats_by_2se"))
                lines.append(
                    f"- {name}: {'met' if ok else '**missed**'} ({t['diff']:+.3f} ± {t['stderr']:.3f})"
                )
    return "\n".join(lines) + "\n"


SNAPSHOT = ROOT / "experiments" / "compare_results.json"
BEGIN = "<!-- compare-results"
END = "<!-- /compare-results -->"


def readme_block(summary: dict) -> str:
    settings = next(v for k, v in summary.items() if k.startswith("settings"))
    models = [m for m in ("hik", "chi2", "fisher") if m in summary]
    head = (
        f"{BEGIN}: generated by `python experiments/compare.py --readme` from "
        "experiments/compare_results.json -->\n"
        f"Settings: {settings['tiles']} top-scoring held-out tiles per model, "
        f"{settings['samples']} model evaluations for LIME / KernelSHAP / SHAP Partition, "
        f"region perturbation with 9×9 blocks, {settings['steps']} steps × "
        f"{settings['repeats']} repeats, {settings['train_scenes']} training scenes, seed "
        f"{settings['seed']}; AOPC mean ± standard error over tiles; paired = per-tile "
        "difference to the best LRP rule ± its standard error; seconds on one core "
        f"({settings.get('jobs', 1)} tiles at a time); {_run_times(summary)}.\n"
    )
    return head + table(summary, models) + END


def _run_times(summary: dict) -> str:
    runs = summary.get("runs") or [
        {
            "models": [m for m in ("hik", "chi2", "fisher") if m in summary],
            "seconds_total": summary.get("seconds_total"),
        }
    ]
    return "; ".join(
        f"run of {', '.join(r['models'])}: {r['seconds_total'] / 60:.1f} min"
        for r in runs
        if r.get("seconds_total")
    )


def replace_block(readme: str, block: str) -> str:
    i, j = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[:i] + block + readme[j:]


LABELS = {
    "lrp-flat": "LRP flat",
    "lrp-contribution": "LRP contrib.",
    "lrp-contribution-window": "contrib. window",
    "lrp-contribution-gradient": "contrib. grad.",
    "occlusion-uniform": "occl. noise",
    "occlusion-blur": "occl. blur",
    "lime": "LIME",
    "shap-partition": "SHAP Partition",
    "kernel-shap": "KernelSHAP",
}
ROW_LABELS = {"hik": "HIK", "chi2": "chi2", "fisher": "Fisher"}


def _label(width: int, text: str, height: int = 18) -> np.ndarray:
    """A white strip with ``text`` centred in black (OpenCV's Hershey font), (height, width, 3)."""
    import cv2

    strip = np.full((height, width, 3), 255, dtype=np.uint8)
    scale = 0.36
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(
        strip,
        text,
        (max(0, (width - w) // 2), (height + h) // 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    return strip.astype(np.float64) / 255.0


def figure(path: Path, rows: list[tuple[str, np.ndarray, dict]]) -> None:
    """One row per model: the tile, then each method's heatmap (bwr, scaled per map), with a
    header naming the methods and each row's model written over its tile."""
    pics = []
    order = [
        "lrp-flat",
        "lrp-contribution",
        "lrp-contribution-window",
        "lrp-contribution-gradient",
        "occlusion-uniform",
        "occlusion-blur",
        "lime",
        "shap-partition",
        "kernel-shap",
    ]
    order = [m for m in order if all(m in r[2] for r in rows)]
    size = rows[0][1].shape[1]
    header = [_label(size, "tile")]
    for m in order:
        header += [np.ones((18, 4, 3)), _label(size, LABELS.get(m, m))]
    for model, tile, maps in rows:
        first = np.repeat(tile[:, :, None], 3, axis=2).copy()
        first[:18] = _label(size, ROW_LABELS.get(model, model))
        parts = [first]
        for m in order:
            h = pictures.normalize_heatmaps([maps[m]])[0]
            parts += [np.ones((tile.shape[0], 4, 3)), pictures.colorize(h, "bwr") / 255.0]
        pics.append(np.hstack(parts))
    gap = np.ones((4, pics[0].shape[1], 3))
    picture = np.vstack([np.hstack(header), gap] + [p for pic in pics for p in (pic, gap)][:-1])
    pictures.save_png(path, pictures.with_colorbar(picture, "bwr"))
    (path.parent / "figure_columns.txt").write_text(
        "rows: " + ", ".join(r[0] for r in rows) + "\ncolumns: tile, " + ", ".join(order) + "\n"
    )


_WORKER: dict = {}


def _init_worker(pipe_bytes: bytes, model: str, args) -> None:
    import cv2

    cv2.setNumThreads(1)
    _WORKER.update(pipe=pickle.loads(pipe_bytes), model=model, args=args, warm=False)


def _tile_job(k: int, tile: np.ndarray, key: str) -> tuple[int, dict, dict | None]:
    """One tile in a worker process: every method, its curves, written atomically to ``key``."""
    pipe, model, args = _WORKER["pipe"], _WORKER["model"], _WORKER["args"]
    if not _WORKER["warm"]:  # compile the Numba kernels outside the timings
        for rule in chosen_rules(model, args).values():
            time_lrp(pipe, tile, rule)
        _WORKER["warm"] = True
    result, maps = evaluate_tile(pipe, model, tile, k, args)
    _atomic_json(Path(key), result)
    return k, result, maps if k == 0 else None


def explain_tiles(pipe, model: str, Xh, picks, out: Path, args, fig_rows: list) -> list[dict]:
    """Every picked tile's result, finished ones read from ``partial/``, the rest computed
    in ``args.jobs`` one-thread processes; the first tile's maps go to the figure."""
    results: dict[int, dict] = {}
    todo = []
    for k, i in enumerate(picks):
        key = out / "partial" / f"{model}_{k:02d}_{int(i):04d}.json"
        if key.is_file():
            results[k] = json.loads(key.read_text())
        else:
            todo.append((k, Xh[i], str(key)))
    first_maps = None
    if 0 in results:  # resumed: recompute the first tile's maps for the figure
        i = int(picks[0])
        first_maps = {m: time_lrp(pipe, Xh[i], r)[0] for m, r in chosen_rules(model, args).items()}
        first_maps.update(
            {
                m: explain_baseline(m, pipe, Xh[i], 1, args.samples, BLOCK, args.seed).heatmap
                for m in chosen_peers(args)
            }
        )
    if todo:
        t0 = time.perf_counter()
        with ProcessPoolExecutor(
            max_workers=max(1, args.jobs),
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(pickle.dumps(pipe), model, args),
        ) as pool:
            futures = [pool.submit(_tile_job, *job) for job in todo]
            for done, fut in enumerate(as_completed(futures), 1):
                k, result, maps = fut.result()
                results[k] = result
                if maps is not None:
                    first_maps = maps
                log(f"[{model}] tile {k + 1} done ({done}/{len(todo)} in {time.perf_counter() - t0:.0f} s)")
    fig_rows.append((model, Xh[int(picks[0])], first_maps))
    np.savez_compressed(out / f"figure_maps_{model}.npz", tile=Xh[int(picks[0])], **first_maps)
    return [results[k] for k in sorted(results)]


def resume_key(args) -> dict:
    """What the finished tiles in ``partial/`` depend on: a resumed run must match it."""
    keep = (
        "tiles",
        "samples",
        "steps",
        "repeats",
        "train_scenes",
        "heldout_scenes",
        "words",
        "variants",
        "peers",
        "seed",
    )
    rules = {m: repr(r) for model in ("hik", "chi2", "fisher") for m, r in chosen_rules(model, args).items()}
    return {"settings": {k: getattr(args, k) for k in keep}, "rules": rules, "peers": chosen_peers(args)}


def check_resume(out: Path, args) -> None:
    """Refuse to mix tiles of other settings or other rule definitions into one table."""
    key, path = resume_key(args), out / "partial" / "settings.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != key:
            diff = sorted(
                k
                for k in set(old["settings"]) | set(key["settings"])
                if old["settings"].get(k) != key["settings"].get(k)
            )
            what = ", ".join(diff) if diff else "the rule definitions or the peer methods"
            sys.exit(
                f"{out / 'partial'} holds tiles of another run ({what} differ): "
                "use another --out, or delete that folder to start again"
            )
    else:
        _atomic_json(path, key)


def run(args) -> dict:
    out = Path(args.out)
    (out / "partial").mkdir(parents=True, exist_ok=True)
    check_resume(out, args)
    t_start = time.perf_counter()
    train = generate(args.seed, args.train_scenes)
    held = generate(args.seed + 5000, args.heldout_scenes)
    X, y = tile_dataset(train)
    Xh, _ = tile_dataset(held)
    log(f"{len(X)} training tiles, {len(Xh)} held-out tiles to choose from")
    summary, fig_rows = {"settings": vars(args)}, []
    for model in args.models.split(","):
        t0 = time.perf_counter()
        pipe = build(model, args.words, args.n_jobs).fit(X, y)
        pipe.set_params(n_jobs=None)
        t_fit = time.perf_counter() - t0
        scores = np.asarray(pipe.decision_function(Xh))
        picks = np.argsort(-scores)[: args.tiles]
        log(
            f"[{model}] fitted in {t_fit:.0f} s; tiles scored {scores[picks].min():+.2f} .. "
            f"{scores[picks].max():+.2f}"
        )
        results = explain_tiles(pipe, model, Xh, picks, out, args, fig_rows)
        summary[model] = {**summarise(results), "n_tiles": len(results), "fit_seconds": t_fit}
        summary[model]["targets"] = targets(summary[model])
    models = args.models.split(",")
    summary["seconds_total"] = time.perf_counter() - t_start
    _atomic_json(out / "results.json", summary)
    text = table(summary, models)
    (out / "table.md").write_text(text)
    figure(out / "figure.png", fig_rows)
    print(text)
    log(f"done in {summary['seconds_total']:.0f} s; wrote {out / 'results.json'}, table.md, figure.png")
    return summary


def merge(dirs: list[str], out_dir: str) -> None:
    """Combine runs (e.g. one per model, or a model run again) into one table and figure;
    a model found in several runs is taken from the last."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"merged_from": dirs, "runs": []}
    rows: dict[str, tuple] = {}
    for d in dirs:
        if not (Path(d) / "results.json").is_file():  # an unfinished run: its finished tiles
            files = sorted(f for f in (Path(d) / "partial").glob("*_*_*.json"))
            if not files:
                log(f"{d}: no finished tile yet, left out")
                continue
            by_model: dict[str, list] = {}
            for f in files:
                by_model.setdefault(f.name.split("_")[0], []).append(json.loads(f.read_text()))
            for model, results in by_model.items():
                summary[model] = {**summarise(results), "n_tiles": len(results), "unfinished_run": True}
                summary[model]["targets"] = targets(summary[model])
                maps = Path(d) / f"figure_maps_{model}.npz"
                if maps.is_file():  # the first tile's maps, kept when its model finished
                    z = np.load(maps)
                    rows[model] = (model, z["tile"], {k: z[k] for k in z.files if k != "tile"})
                else:  # no maps of this run: no figure row from an older run
                    rows.pop(model, None)
            summary["runs"].append({"dir": d, "models": list(by_model), "unfinished": True})
            continue
        part = json.loads((Path(d) / "results.json").read_text())
        run_models = part["settings"]["models"].split(",")
        for model in run_models:
            summary[model] = part[model]
            summary[f"settings_{model}"] = part["settings"]
            z = np.load(Path(d) / f"figure_maps_{model}.npz")
            rows[model] = (model, z["tile"], {k: z[k] for k in z.files if k != "tile"})
        summary["runs"].append({"dir": d, "models": run_models, "seconds_total": part.get("seconds_total")})
    models = [m for m in ("hik", "chi2", "fisher") if m in rows or m in summary]
    _atomic_json(out / "results.json", summary)
    text = table(summary, models)
    (out / "table.md").write_text(text)
    figure(out / "figure.png", [rows[m] for m in models if m in rows])
    print(text)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "experiments/results/compare"))
    ap.add_argument("--models", default="hik,chi2,fisher")
    ap.add_argument("--tiles", type=int, default=16, help="top-scoring held-out tiles per model")
    ap.add_argument("--samples", type=int, default=1000, help="model evaluations of LIME / SHAP")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-scenes", type=int, default=60)
    ap.add_argument("--heldout-scenes", type=int, default=20)
    ap.add_argument("--words", type=int, default=None, help="override the 128 words per scale")
    ap.add_argument(
        "--variants",
        default="",
        help="LRP rules to keep (comma-separated; default all; lrp-flat is always kept)",
    )
    ap.add_argument("--peers", default="", help=f"subset of {','.join(PEERS)} (default all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=2, help="processes for training")
    ap.add_argument("--jobs", type=int, default=2, help="processes explaining tiles (one thread each)")
    ap.add_argument("--merge", default="", help="comma-separated result folders to combine into --out")
    ap.add_argument(
        "--readme",
        nargs="?",
        const=str(SNAPSHOT),
        default=None,
        metavar="RESULTS",
        help="rewrite README.md's table from a results.json (default: the snapshot)",
    )
    ap.add_argument("--check", action="store_true", help="with --readme: exit 1 if out of date")
    args = ap.parse_args(argv)
    if args.readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        new = replace_block(text, readme_block(json.loads(Path(args.readme).read_text())))
        if args.check:
            sys.exit(0 if new == text else 1)
        readme.write_text(new)
    elif args.merge:
        merge(args.merge.split(","), args.out)
    else:
        run(args)


if __name__ == "__main__":
    main()
