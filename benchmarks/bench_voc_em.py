"""EM iterations of the VOC GMM on a real descriptor sample, this tree against another (issue 29).

``bench_gmm.py`` times the streamed EM on synthetic mixtures; this script times it on
what the VOC experiment fits: ``--images`` trainval images of a VOC-format data set
described with a fitted model's extractor, ``--per-image`` descriptors drawn from each
(seeded), projected with the model's PCA to float32 (1M x 80 by default), and EM
iterations started from the model's own fitted GMM (so the posteriors are as peaked as
a converged VOC vocabulary's). Each tree (this one and every ``--compare-tree``) runs
``--iters`` single iterations (``streamed_em(max_iter=1)``) in a child process with the
default threads; wall and process CPU seconds per iteration, and the mean
log-likelihood reached (the trees must agree).

    python benchmarks/bench_voc_em.py --model M --voc-root R [--images 250]
        [--per-image 4000] [--iters 2] [--compare-tree DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bowlrp.datasets.voc import read_voc  # noqa: E402
from bowlrp.encoding.gmm import log_likelihood_terms, square_features  # noqa: E402
from bowlrp.model_files import load  # noqa: E402

CHILD = r"""
import json, sys, time
sys.path.insert(0, {tree!r})
import numpy as np
from bowlrp.encoding import gmm
X = np.load({sample!r})
start = np.load({start!r})
m, c, w = start["means"], start["covariances"], start["weights"]
rows = []
for _ in range({iters}):
    t0, c0 = time.perf_counter(), time.process_time()
    fit = gmm.streamed_em(X, m, c, w, max_iter=1, tol=0.0)
    rows.append([time.perf_counter() - t0, time.process_time() - c0])
    m, c, w = fit.means, fit.covariances, fit.weights
print(json.dumps({{"iterations": rows, "lower_bound": fit.lower_bound}}))
"""


def sample(model: str, root: str, images: int, per_image: int, work: Path) -> tuple[Path, Path, float]:
    """The projected float32 sample and the model's GMM, saved in ``work``; entries within 45 nats."""
    pipe = load(model)
    extractor, vocabulary = pipe.extractors_[0], pipe.encoders_[0].vocabulary_
    rng = np.random.default_rng(0)
    parts = []
    for path in read_voc(root, "trainval").paths[:images]:
        d = extractor.describe(str(path)).data
        parts.append(d[np.sort(rng.choice(len(d), min(per_image, len(d)), replace=False))])
    X = vocabulary.project(np.concatenate(parts)).astype(np.float32)
    np.save(work / "sample.npy", X)
    np.savez(
        work / "start.npz",
        means=vocabulary.means_,
        covariances=vocabulary.covariances_,
        weights=vocabulary.weights_,
    )
    W, const = log_likelihood_terms(vocabulary.means_, vocabulary.covariances_, vocabulary.weights_)
    V = square_features(X[:20000].astype(np.float64)) @ W + const
    near = float(((V - V.max(1, keepdims=True)) > -45).sum(1).mean())
    return work / "sample.npy", work / "start.npz", near


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a fitted voc_fisher model (its extractor, PCA and GMM)")
    ap.add_argument("--voc-root", required=True)
    ap.add_argument("--images", type=int, default=250)
    ap.add_argument("--per-image", type=int, default=4000)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--compare-tree", action="append", default=[])
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-voc-em-"))
    t = time.perf_counter()
    X_path, start_path, near = sample(args.model, args.voc_root, args.images, args.per_image, work)
    n, d = np.load(X_path, mmap_mode="r").shape
    print(
        f"sample {n:,} x {d} float32 from {args.images} images ({time.perf_counter() - t:.0f} s); "
        f"entries within 45 nats of their row maximum: {near:.1f} of 256"
    )
    trees = [("current", str(HERE.parent))] + [
        (Path(p).name, str(Path(p).resolve())) for p in args.compare_tree
    ]
    print("| tree | per iteration: wall s, CPU s | mean log-likelihood | load |")
    print("|---|---|---|---|")
    for name, tree in trees[::-1]:
        code = CHILD.format(tree=tree, sample=str(X_path), start=str(start_path), iters=args.iters)
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        cells = "; ".join(f"{w:.1f}, {c:.1f}" for w, c in got["iterations"])
        print(f"| {name} | {cells} | {got['lower_bound']:.12f} | {os.getloadavg()[0]:.1f} |")
    for f in (X_path, start_path):
        f.unlink()
    work.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
