"""How far to trust a heatmap: the evaluation suite on the polygons models and the shortcut data.

    python experiments/polygons.py --out experiments/results/polygons      # the two models
    python experiments/evaluation_suite.py --polygons-models experiments/results/polygons \\
        --out experiments/results/evaluation_suite

Runs :func:`bowlrp.evaluation.suite.evaluate_suite` (every family) for LRP, occlusion
and a random map on

* **polygons**: ``--tiles`` held-out 102 x 102 tiles of the polygons experiment
  (the same draw: :func:`experiments.polygons.select_tiles`, half positive), explained
  for the class "polygon"; the ground truth of localisation is the polygons' pixels
  of each tile; for each model in ``--polygons-models`` (``polygons_hik.pkl``,
  ``polygons_chi2.pkl``, pickles written by that experiment, loaded as trusted);
* **shortcut**: the small hard-assignment HIK model of ``experiments/shortcut_spray.py``
  trained on the shortcut data (60 images per class, half the class-1 images stamped),
  explained for class 1 on the stamped test images; the ground truth is the stamp's box.

Writes per data set and model a folder with ``suite.json``, ``suite.csv``, figures and
``report.html`` (:func:`bowlrp.evaluation.suite_report.write_suite_report`), and
``answers.json`` (per family and metric: the winner, the runner-up, the paired
difference with its standard error; seconds per family) and ``answers.md`` (the
tables; the README's is :func:`compact_table`). ``--combine A.json B.json`` renders
the README's table from several runs' ``answers.json``. ``--n-jobs N`` spreads each
suite's parts over N processes, ``--workers N`` over a local Dask cluster of N
processes (the same numbers either way).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bowlrp.datasets import polygons as polygon_data  # noqa: E402
from bowlrp.datasets import shortcut as shortcut_data  # noqa: E402
from bowlrp.evaluation.suite import SuiteSettings, evaluate_suite  # noqa: E402
from bowlrp.evaluation.suite_report import write_suite_report  # noqa: E402
from bowlrp.model_files import load  # noqa: E402
from bowlrp.runs.distributed import dask_client  # noqa: E402

METHODS = ("lrp", "occlusion", "random")


def log(msg: str) -> None:
    print(f"[suite] {msg}", flush=True)


def _experiment(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def polygon_tiles(n_tiles: int, seed: int = 0, n_val: int = 6):
    """The polygons experiment's evaluation tiles and each tile's polygon-pixel mask."""
    scenes = polygon_data.generate(seed + 5000, n_val)
    crops, labels, masks = [], [], []
    tile, stride = polygon_data.TILE, polygon_data.STRIDE
    for s in scenes:  # the order of polygon_data.overlapping_tiles
        H, W = s.image.shape
        polygons = np.isin(s.mask, sorted(s.polygon_ids()))
        for r in range(0, H - tile + 1, stride):
            for c in range(0, W - tile + 1, stride):
                crops.append(s.image[r : r + tile, c : c + tile])
                labels.append(polygon_data.crop_label(s, r, c, tile))
                masks.append(polygons[r : r + tile, c : c + tile])
    idx = _experiment("polygons").select_tiles(np.array(labels), n_tiles, seed)
    return [crops[i] for i in idx], [masks[i] for i in idx], np.array(labels)[idx]


def shortcut_set(n_images: int, seed: int = 0):
    """The shortcut model (trained here) and up to ``n_images`` stamped test images with their stamp masks."""
    make_model = _experiment("shortcut_spray").make_model
    train = shortcut_data.generate(seed, 60, 0.5, signal=0.8)
    model = make_model("bow", seed).fit([s.image for s in train], [s.label for s in train])
    test = [s for s in shortcut_data.generate(seed + 1000, 40, 0.5, signal=0.8) if s.has_artefact][:n_images]
    return model, [s.image for s in test], [s.artefact_mask() for s in test]


def answers(result) -> dict:
    out = {}
    for metric in result.metrics:
        lead = result.lead(metric)
        out[metric] = {
            "family": result.family(metric),
            "higher_is_better": result.higher_is_better(metric),
            "means": {m: r.mean for m, r in result.metrics[metric].items()},
            "stderr": {m: r.sem for m, r in result.metrics[metric].items()},
            "lead": lead,
            "sentence": result.sentence(metric),
        }
    return {
        "n_images": result.n_images,
        "seconds": result.seconds,
        "metrics": out,
        "verdicts": result.verdicts(),
    }


def table(all_answers: dict) -> str:
    """The README's table: per data set and metric, the winner and its paired lead over the runner-up."""
    lines = [
        "| data, model | metric | better | winner | runner-up | paired difference | z |",
        "|---|---|---|---|---|---|---|",
    ]
    for setname, a in all_answers.items():
        for metric, d in a["metrics"].items():
            lead = d["lead"]
            better = "↑" if d["higher_is_better"] else "↓"
            lines.append(
                f"| {setname} (n = {a['n_images']}) | {metric} | {better} | {lead['winner']} "
                f"({d['means'][lead['winner']]:.3g}) | {lead['runner_up']} "
                f"({d['means'][lead['runner_up']]:.3g}) | {lead['difference']:+.3g} ± "
                f"{lead['stderr']:.2g} | {lead['z']:.1f} |"
            )
    return "\n".join(lines)


def compact_table(all_answers: dict) -> str:
    """One row per metric, one column per data set: the winner, its lead over the runner-up, z."""
    sets = list(all_answers)
    metrics = list(dict.fromkeys(m for a in all_answers.values() for m in a["metrics"]))
    head = "| family | metric | better | " + " | ".join(
        f"{s} (n = {all_answers[s]['n_images']})" for s in sets
    )
    lines = [head + " |", "|---|---|---|" + "---|" * len(sets)]
    for metric in metrics:
        first = next(a["metrics"][metric] for a in all_answers.values() if metric in a["metrics"])
        cells = []
        for s in sets:
            d = all_answers[s]["metrics"].get(metric)
            lead = d and d["lead"]
            if not lead:
                cells.append("–")
                continue
            if lead["n"] < 2:
                cells.append(f"{lead['winner']} (n = {lead['n']}: no standard error)")
                continue
            if lead["difference"] == 0:
                cells.append(f"{lead['winner']} = {lead['runner_up']}")
                continue
            cells.append(
                f"{lead['winner']}, {lead['difference']:+.2g} ± {lead['stderr']:.1g} over "
                f"{lead['runner_up']} ({lead['z']:.1f} SE)"
            )
        better = "↑" if first["higher_is_better"] else "↓"
        lines.append(f"| {first['family']} | {metric} | {better} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_one(
    name, model, images, masks, target, families, out: Path, settings, record, n_jobs=None, client=None
) -> dict:
    log(f"{name}: {len(images)} images, families {families}")
    t0 = time.perf_counter()
    result = evaluate_suite(
        model,
        images,
        METHODS,
        families,
        masks,
        target,
        settings,
        progress=False,
        report=lambda s: log(f"{name}: {s}"),
        n_jobs=n_jobs,
        client=client,
    )
    result.record = record
    seconds = time.perf_counter() - t0
    write_suite_report(result, out / name)
    a = answers(result)
    a["total_seconds"] = seconds
    log(f"{name}: {seconds:.0f} s; per family {json.dumps({k: round(v) for k, v in result.seconds.items()})}")
    return a


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--polygons-models", default=None, help="folder of polygons_hik.pkl / polygons_chi2.pkl")
    ap.add_argument("--models", default="hik,chi2", help="which polygons models")
    ap.add_argument("--tiles", type=int, default=40, help="polygons evaluation tiles, drawn half positive")
    ap.add_argument("--shortcut-images", type=int, default=20, help="stamped shortcut test images (0: skip)")
    ap.add_argument("--families", default="all", help="comma-separated families, or all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="experiments/results/evaluation_suite")
    ap.add_argument("--combine", nargs="+", default=None, help="answers.json files: print the README's table")
    spread = ap.add_mutually_exclusive_group()
    spread.add_argument("--n-jobs", type=int, default=None, help="spread the suite's parts over N processes")
    spread.add_argument(
        "--workers", type=int, default=None, help="spread the suite's parts over a local Dask cluster of N"
    )
    args = ap.parse_args(argv)
    if args.combine:
        found = {}
        for path in args.combine:
            found.update(json.loads(Path(path).read_text()))
        print(compact_table(found))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    families = args.families.split(",")
    settings = SuiteSettings(seed=args.seed)
    with dask_client(args.workers) as client:  # None without --workers
        found = run_all(args, out, families, settings, client)
    (out / "answers.json").write_text(json.dumps(found, indent=1, default=str))
    (out / "answers.md").write_text(table(found) + "\n\n" + compact_table(found) + "\n")
    print(compact_table(found))


def run_all(args, out: Path, families, settings, client) -> dict:
    """Every data set and model asked for; their answers by name."""
    spread = {"n_jobs": args.n_jobs, "client": client}
    found = {}
    if args.shortcut_images:
        model, images, masks = shortcut_set(args.shortcut_images, args.seed)
        record = {"data": "shortcut", "model": "bow (hard assignment, 32 words, HIK)", "target": 1}
        found["shortcut, BoW HIK"] = run_one(
            "shortcut", model, images, masks, 1, families, out, settings, record, **spread
        )
    if args.polygons_models:
        tiles, masks, labels = polygon_tiles(args.tiles, args.seed)
        for kind in args.models.split(","):
            path = Path(args.polygons_models) / f"polygons_{kind}.pkl"
            model = load(path, trusted=True)
            record = {
                "data": "polygons",
                "model": str(path),
                "target": 1,
                "positive_tiles": int(labels.sum()),
            }
            name = f"polygons_{kind}"
            found[f"polygons, {kind}"] = run_one(
                name, model, tiles, masks, 1, families, out, settings, record, **spread
            )
            (out / "answers.json").write_text(json.dumps(found, indent=1, default=str))
    return found


if __name__ == "__main__":
    main()
