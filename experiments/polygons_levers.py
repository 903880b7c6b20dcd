"""Which levers move the polygons models' held-out accuracy? (issue 16)

    python experiments/polygons_levers.py --out /tmp/levers --train-scenes 60 --words 128

Describes and encodes generated scenes once per feature setting (vocabulary
size ``--words``, grid-step factor ``--step-factor``; features cached in
``--out``), then fits the SVM stage alone for every kernel (HIK, exp-chi2),
``C``, MKL norm and training-set size (the first ``n`` training scenes;
vocabularies are always fitted on all ``--train-scenes``) and scores

* ``acc``: non-overlapping held-out crops (what ``experiments/polygons.py`` reports),
* ``acc34``: held-out crops every 34 pixels (the thesis' counting, 2.4.3).

Appends one JSON line per setting to ``--out/levers.jsonl`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bowlrp.classifier.svm import KernelSVC  # noqa: E402
from bowlrp.datasets.polygons import TILE, generate, overlapping_tiles, tile_dataset  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402


def features(
    out: Path,
    n_train: int,
    n_val: int,
    n_overlap: int,
    words: int,
    step_factor: float,
    seed: int,
    n_jobs: int,
    **gen,
) -> dict:
    tag = f"w{words}_s{step_factor:g}_t{n_train}_v{n_val}_o{n_overlap}_seed{seed}" + "".join(
        f"_{k}{v}" for k, v in sorted(gen.items())
    )
    path = out / f"features_{tag}.npz"
    if path.is_file():
        return dict(np.load(path)) | {"tag": tag}
    t0 = time.perf_counter()
    train = generate(seed, n_train, **gen)
    X, y = tile_dataset(train)
    scene_of = np.repeat(np.arange(n_train), len(X) // n_train)
    Xv, yv = tile_dataset(generate(seed + 5000, n_val, **gen))
    Xo, yo, _ = overlapping_tiles(generate(seed + 5000, n_overlap, **gen))
    pipe = Pipeline.from_config("polygons_hik", n_jobs=n_jobs, n_words=words)
    if step_factor != 1:
        for _name, ex, _ in pipe.channels:
            ex.set_params(steps=max(1, int(round(ex.steps * step_factor))))
    pipe.fit_vocabularies(X)
    F, Fv, Fo = pipe.features(X), pipe.features(Xv), pipe.features(Xo)
    data = {
        "F": F,
        "y": y,
        "scene": scene_of,
        "Fv": Fv,
        "yv": yv,
        "Fo": Fo,
        "yo": yo,
        "sizes": np.array(pipe.channel_sizes_),
        "seconds": np.array(time.perf_counter() - t0),
    }
    np.savez(path, **data)
    return data | {"tag": tag}


def error_breakdown(pred: np.ndarray, y: np.ndarray, scenes, tile: int = TILE) -> dict:
    """Error rates of non-overlapping held-out crops by what they show.

    ``cut``: some polygon is only partly inside the crop (between 2 % and 98 % of
    its pixels), where the label (centre of mass inside) is decided by a few
    pixels; ``radius``: of the single polygon whose centre lies inside.
    """
    from bowlrp.datasets.polygons import training_crops

    rows = []
    for s in scenes:
        _, labels, origins = training_crops(s, tile)
        sizes = {sh["id"]: max(int((s.mask == sh["id"]).sum()), 1) for sh in s.shapes}
        for (r, c), label in zip(origins, labels):
            win = s.mask[r : r + tile, c : c + tile]
            cut, radii = False, []
            for sh in s.shapes:
                if sh["kind"] != "polygon":
                    continue
                share = (win == sh["id"]).sum() / sizes[sh["id"]]
                cut |= bool(0.02 < share < 0.98)
                cy, cx = sh["centroid"]
                if r <= cy < r + tile and c <= cx < c + tile:
                    radii.append(sh["radius"])
            rows.append((label, cut, radii[0] if len(radii) == 1 else 0.0))
    label, cut, radius = (np.array(v) for v in zip(*rows))
    err = pred != y
    groups = {
        "positive": label == 1,
        "negative": label == 0,
        "negative, a polygon cut by the border": (label == 0) & cut,
        "negative, no polygon part": (label == 0) & ~cut,
        "positive, a polygon cut by the border": (label == 1) & cut,
        "positive, no polygon cut": (label == 1) & ~cut,
    }
    for lo, hi in ((9, 13), (13, 17), (17, 21), (21, 25)):
        groups[f"one polygon, radius {lo}-{hi} px"] = (radius >= lo) & (radius < hi)
    return {
        k: {
            "n": int(m.sum()),
            "errors": int(err[m].sum()),
            "error_rate": float(err[m].mean()) if m.any() else None,
        }
        for k, m in groups.items()
    }


def table(rows: list[dict]) -> str:
    """Markdown: lever | setting | HIK acc | chi2 acc | time, pairing the two kernels' rows."""
    pairs: dict = {}
    for r in rows:
        key = (r["features"], r["train_scenes"], r["C"], r["mkl"])
        pairs.setdefault(key, {})[r["kernel"]] = r
    lines = [
        "| features | train scenes | C | MKL | HIK acc (non-overlap / every 34 px) | "
        "χ² acc (non-overlap / every 34 px) | SVM fit s (HIK / χ²) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (feat, n, C, mkl), k in pairs.items():

        def cell(name, k=k):
            r = k.get(name)
            return f"{100 * r['acc']:.1f} / {100 * r['acc34']:.1f}" if r else "—"

        fits = " / ".join(str(k[n]["fit_seconds"]) if n in k else "—" for n in ("hik", "exp_chi2"))
        lines.append(f"| {feat} | {n} | {C:g} | {mkl} | {cell('hik')} | {cell('exp_chi2')} | {fits} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-scenes", type=int, default=60)
    ap.add_argument("--heldout-scenes", type=int, default=20)
    ap.add_argument("--overlap-scenes", type=int, default=4)
    ap.add_argument("--words", type=int, default=128)
    ap.add_argument("--step-factor", type=float, default=1.0)
    ap.add_argument("--sizes", default="", help="comma-separated training-scene counts")
    ap.add_argument("--C", default="10")
    ap.add_argument("--mkl", default="2")
    ap.add_argument("--kernels", default="hik,exp_chi2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument(
        "--radius", default=None, help="generator lever: shape radius range 'lo,hi' in pixels (default 9,24)"
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="print the error breakdown of the first setting (non-overlapping crops)",
    )
    ap.add_argument("--table", action="store_true", help="print the table of levers.jsonl and stop")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.table:
        print(table([json.loads(line) for line in (out / "levers.jsonl").read_text().splitlines()]))
        return
    out.mkdir(parents=True, exist_ok=True)
    gen = {"radius": tuple(float(v) for v in args.radius.split(","))} if args.radius else {}
    d = features(
        out,
        args.train_scenes,
        args.heldout_scenes,
        args.overlap_scenes,
        args.words,
        args.step_factor,
        args.seed,
        args.n_jobs,
        **gen,
    )
    sizes = [int(s) for s in args.sizes.split(",") if s] or [args.train_scenes]
    for n in sizes:
        keep = d["scene"] < n
        for kernel in args.kernels.split(","):
            for C in (float(c) for c in args.C.split(",")):
                for mkl in args.mkl.split(","):
                    norm = mkl if mkl == "uniform" else float(mkl)
                    t0 = time.perf_counter()
                    clf = KernelSVC(
                        kernel=kernel, C=C, channel_sizes=list(d["sizes"]), mkl_norm=norm, random_state=0
                    ).fit(d["F"][keep], d["y"][keep])
                    row = {
                        "features": d["tag"],
                        "train_scenes": n,
                        "train_tiles": int(keep.sum()),
                        "kernel": kernel,
                        "C": C,
                        "mkl": mkl,
                        "acc": float(clf.score(d["Fv"], d["yv"])),
                        "n_val": int(len(d["yv"])),
                        "acc34": float(clf.score(d["Fo"], d["yo"])),
                        "n_34": int(len(d["yo"])),
                        "fit_seconds": round(time.perf_counter() - t0, 1),
                        "feature_seconds": round(float(d["seconds"]), 1),
                        "weights": clf.kernel_weights_[0].round(3).tolist(),
                    }
                    print(json.dumps(row), flush=True)
                    if args.breakdown:
                        args.breakdown = False
                        scenes = generate(args.seed + 5000, args.heldout_scenes, **gen)
                        print(
                            json.dumps(error_breakdown(clf.predict(d["Fv"]), d["yv"], scenes), indent=1),
                            flush=True,
                        )
                    with open(out / "levers.jsonl", "a") as fh:
                        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
