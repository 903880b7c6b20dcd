"""Time and memory of a whole SpRAy fit, per stage, for n = 500, 2,000 and 10,000 relevance maps (issue 28).

Maps are 32 x 32 with four planted strategies (a blob of relevance in one of
four places, 10 % of the maps in a corner) plus noise. Per n, each stage of
one default fit (``SpRAy(random_state=0)``: every clustering family of the
default, k = 2..10, the t-SNE embedding) is timed on its own, in the order
the fit runs them: pooling onto 20 x 20, the kNN graph, the Laplacian
eigendecomposition, each clustering family, t-SNE; then the whole fit once
more (``fit`` on the maps, stage cache off), its peak traced memory, and
whether the eigengap finds the four strategies (adjusted Rand index).

Run on one core: the script sets ``OMP_NUM_THREADS=1`` and friends before
NumPy loads (``--threads N`` to change), openTSNE runs with ``n_jobs=1``.

    python benchmarks/bench_spray.py [--sizes 500 2000 10000] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys


def _limit_threads(argv) -> None:
    n = "1"
    if "--threads" in argv:
        n = argv[argv.index("--threads") + 1]
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = n


_limit_threads(sys.argv)

import time  # noqa: E402  (after the thread limits: NumPy reads them when it loads)
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from bowlrp.spray import analyses  # noqa: E402
from bowlrp.spray.spectral import (  # noqa: E402
    SpRAy,
    knn_affinity,
    laplacian_eigenvalues,
    normalize_pooled,
    pool_maps,
)


def planted_maps(n: int, seed: int = 0, side: int = 32):
    rng = np.random.default_rng(seed)
    centres = [(26, 5), (10, 10), (10, 22), (22, 20)]
    shares = [0.1, 0.3, 0.3, 0.3]
    groups = rng.choice(4, n, p=shares)
    yy, xx = np.mgrid[:side, :side]
    maps = np.empty((n, side, side))
    for i, g in enumerate(groups):
        cy, cx = centres[g]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
        maps[i] = blob + rng.normal(0, 0.05, (side, side))
    return maps, groups


def timed(fn):
    """(CPU seconds of this process, wall seconds, result)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.process_time() - c, time.perf_counter() - t, out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[500, 2000, 10000])
    ap.add_argument("--threads", type=int, default=1, help="BLAS / OpenMP threads (default 1)")
    args = ap.parse_args(argv)
    sp0 = SpRAy(random_state=0)
    families = sp0.clusterings
    print(f"CPU seconds (wall in brackets); threads {args.threads}; t-SNE backend per n in the last column.")
    head = [
        "n",
        "pooling",
        "kNN graph",
        "eigenvectors",
        *families,
        "t-SNE",
        "whole fit",
        "peak memory",
        "k",
        "ARI",
    ]
    print("| " + " | ".join(head) + " | t-SNE by |")
    print("|" + "---|" * (len(head) + 1))
    for n in args.sizes:
        maps, groups = planted_maps(n)
        cells = []
        c, w, pooled = timed(lambda maps=maps: pool_maps(maps, 20))
        cells.append((c, w))
        X = normalize_pooled(pooled, sp0.normalize)
        k = int(np.ceil(np.log(n)))
        c, w, W = timed(lambda X=X, k=k: knn_affinity(X, k))
        cells.append((c, w))
        c, w, (values, vectors) = timed(lambda W=W: laplacian_eigenvalues(W, 11))
        cells.append((c, w))
        E = analyses.spectral_embedding(W, vectors)
        for fam in families:
            c, w, _ = timed(
                lambda fam=fam, E=E, X=X, k=k: analyses.cluster_family(fam, E, X, list(range(2, 11)), 0, k)
            )
            cells.append((c, w))
        backend = analyses.resolve_tsne_backend("auto", n)
        c, w, _ = timed(lambda X=X, backend=backend: analyses.tsne_embedding(X, 7.0, 6.0, (0, 0), backend))
        cells.append((c, w))
        c, w, sp = timed(lambda maps=maps: SpRAy(random_state=0).fit(maps))
        cells.append((c, w))
        tracemalloc.start()
        SpRAy(random_state=0).fit(maps)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        ari = adjusted_rand_score(groups, sp.labels_)
        row = [f"{n:,}"] + [f"{c:.2f} ({w:.1f})" for c, w in cells]
        row += [f"{peak:.0f} MB", str(sp.n_clusters_), f"{ari:.3f}", sp.tsne_backend_]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
