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

from bowlrp.datasets.polygons import STRIDE, TILE, crop_label, generate, tile_dataset  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402
from bowlrp.svm import KernelSVC  # noqa: E402


def overlapping_crops(scenes, tile: int = TILE, stride: int = STRIDE):
    """Crops every ``stride`` pixels (the thesis' test protocol) with their labels."""
    crops, labels = [], []
    for s in scenes:
        H, W = s.image.shape
        for r in range(0, H - tile + 1, stride):
            for c in range(0, W - tile + 1, stride):
                crops.append(s.image[r:r + tile, c:c + tile])
                labels.append(crop_label(s, r, c, tile))
    return crops, np.array(labels)


def features(out: Path, n_train: int, n_val: int, n_overlap: int, words: int,
             step_factor: float, seed: int, n_jobs: int, **gen) -> dict:
    tag = f"w{words}_s{step_factor:g}_t{n_train}_v{n_val}_o{n_overlap}_seed{seed}" + "".join(
        f"_{k}{v}" for k, v in sorted(gen.items()))
    path = out / f"features_{tag}.npz"
    if path.is_file():
        return dict(np.load(path)) | {"tag": tag}
    t0 = time.perf_counter()
    train = generate(seed, n_train, **gen)
    X, y = tile_dataset(train)
    scene_of = np.repeat(np.arange(n_train), len(X) // n_train)
    Xv, yv = tile_dataset(generate(seed + 5000, n_val, **gen))
    Xo, yo = overlapping_crops(generate(seed + 5000, n_overlap, **gen))
    pipe = Pipeline.from_config("polygons_hik", n_jobs=n_jobs, n_words=words)
    if step_factor != 1:
        for _name, ex, _ in pipe.channels:
            ex.set_params(steps=max(1, int(round(ex.steps * step_factor))))
    pipe.fit_vocabularies(X)
    F, Fv, Fo = pipe.features(X), pipe.features(Xv), pipe.features(Xo)
    data = {"F": F, "y": y, "scene": scene_of, "Fv": Fv, "yv": yv, "Fo": Fo, "yo": yo,
            "sizes": np.array(pipe.channel_sizes_),
            "seconds": np.array(time.perf_counter() - t0)}
    np.savez(path, **data)
    return data | {"tag": tag}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
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
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = features(out, args.train_scenes, args.heldout_scenes, args.overlap_scenes, args.words,
                 args.step_factor, args.seed, args.n_jobs)
    sizes = [int(s) for s in args.sizes.split(",") if s] or [args.train_scenes]
    for n in sizes:
        keep = d["scene"] < n
        for kernel in args.kernels.split(","):
            for C in (float(c) for c in args.C.split(",")):
                for mkl in args.mkl.split(","):
                    norm = mkl if mkl == "uniform" else float(mkl)
                    t0 = time.perf_counter()
                    clf = KernelSVC(kernel=kernel, C=C, channel_sizes=list(d["sizes"]),
                                    mkl_norm=norm, random_state=0).fit(d["F"][keep], d["y"][keep])
                    row = {"features": d["tag"], "train_scenes": n, "train_tiles": int(keep.sum()),
                           "kernel": kernel, "C": C, "mkl": mkl,
                           "acc": float(clf.score(d["Fv"], d["yv"])), "n_val": int(len(d["yv"])),
                           "acc34": float(clf.score(d["Fo"], d["yo"])), "n_34": int(len(d["yo"])),
                           "fit_seconds": round(time.perf_counter() - t0, 1),
                           "feature_seconds": round(float(d["seconds"]), 1),
                           "weights": clf.kernel_weights_[0].round(3).tolist()}
                    print(json.dumps(row), flush=True)
                    with open(out / "levers.jsonl", "a") as fh:
                        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
