"""The VOC experiment's per-image costs, this tree against another, in one run (issue 29).

The two stages of ``make voc-experiment`` that grow with the data set are per image:

* **training features**: ``Pipeline.features`` of one trainval image (what
  ``features_on_disk`` does a chunk at a time);
* **test pass**: one forward pass of a test image (``Pipeline.forward_one``), its
  scores for every class, and the explanation of every class the image shows
  (``explain_trace``), as ``describe_once`` does for the images it explains.

With a fitted model of a run (``--model``, e.g. ``OUT/cache/<config>-<hash>/model.pkl``
of ``make voc-experiment``) and its VOC-format data (``--voc-root``), each tree (this
one and every ``--compare-tree``, e.g. ``git archive`` of an older commit) measures
``--images`` images of each split in a child process with one BLAS / OpenMP / Numba
thread, in process CPU seconds; the trees alternate over ``--rounds`` rounds, so the
machine's load falls on all alike. The ratio of two trees in one run is the figure to
carry to a measured run's stage times (their absolute seconds carry the load).

    python benchmarks/bench_voc_per_image.py --model M --voc-root R [--images 6]
        [--rounds 2] [--compare-tree DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys, time
sys.path.insert(0, {tree!r})
import numpy as np
from bowlrp.datasets.voc import read_voc
from bowlrp.explanation import explain_trace
from bowlrp.model_files import load

pipe = load({model!r})
pipe.set_params(n_jobs=None, verbose=False)
n = {images}
train = read_voc({root!r}, "trainval")
test = read_voc({root!r}, "test")
cpu = time.process_time
pipe.features([str(train.paths[0])])  # warm-up: Numba caches, BLAS
out = {{"features": [], "forward": [], "explain": [], "explanations": 0}}
for path in train.paths[1 : 1 + n]:
    t = cpu()
    pipe.features([str(path)])
    out["features"].append(cpu() - t)
for i in range(n):
    t = cpu()
    trace = pipe.forward_one(str(test.paths[i]))
    x = trace.features.astype(np.float32)[None, :]
    pipe.classifier_.decision_function(x)
    out["forward"].append(cpu() - t)
    t = cpu()
    shown = np.flatnonzero(test.labels[i] == 1)
    for k in shown:
        explain_trace(pipe, trace, int(k))
    out["explanations"] += len(shown)
    out["explain"].append(cpu() - t)
print(json.dumps(out))
"""


def child(tree: str, model: str, root: str, images: int) -> dict:
    """One tree's per-image CPU seconds, measured in a fresh one-thread interpreter."""
    threads = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    env = {**os.environ, **dict.fromkeys(threads, "1")}
    code = CHILD.format(tree=tree, model=model, root=root, images=images)
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a fitted model file of a VOC run")
    ap.add_argument("--voc-root", required=True, help="its VOC-format data (trainval and test splits)")
    ap.add_argument("--images", type=int, default=6, help="images per split and tree")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--compare-tree", action="append", default=[], help="another package tree")
    ap.add_argument("--out", type=Path, default=None, help="JSON of every figure (optional)")
    args = ap.parse_args(argv)
    trees = [("current", str(HERE.parent))] + [
        (Path(t).name, str(Path(t).resolve())) for t in args.compare_tree
    ]
    print(
        f"load average {os.getloadavg()[0]:.1f}; {args.images} images per split, one thread, CPU s per image"
    )
    rows = []
    for r in range(args.rounds):
        order = trees if r % 2 == 0 else trees[::-1]
        for name, tree in order:
            got = child(tree, args.model, args.voc_root, args.images)
            n = len(got["forward"])
            row = {
                "round": r,
                "tree": name,
                "features_s": sum(got["features"]) / len(got["features"]),
                "forward_s": sum(got["forward"]) / n,
                "explain_s": sum(got["explain"]) / n,
                "explanation_s": sum(got["explain"]) / max(1, got["explanations"]),
                "explanations_per_image": got["explanations"] / n,
                "load": round(os.getloadavg()[0], 1),
            }
            row["test_image_s"] = row["forward_s"] + row["explain_s"]
            rows.append(row)
    print(
        "| round | tree | training features | test: forward + scores | test: explanations (each) "
        "| test image | load |"
    )
    print("|---|---|---|---|---|---|---|")
    for x in rows:
        print(
            f"| {x['round']} | {x['tree']} | {x['features_s']:.3f} | {x['forward_s']:.3f} | "
            f"{x['explain_s']:.3f} ({x['explanation_s']:.3f} × {x['explanations_per_image']:.2f}) | "
            f"{x['test_image_s']:.3f} | {x['load']} |"
        )
    if len(trees) > 1:
        for name, _ in trees[1:]:
            for key in ("features_s", "test_image_s"):
                cur = sum(x[key] for x in rows if x["tree"] == "current")
                old = sum(x[key] for x in rows if x["tree"] == name)
                print(f"{key}: {name} / current = {old / cur:.3f}")
    if args.out is not None:
        args.out.write_text(json.dumps({"argv": argv or sys.argv[1:], "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
