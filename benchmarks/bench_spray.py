"""Time and memory of SpRAy ``fit`` for n = 500, 2,000 and 10,000 relevance maps (issue 14).

Maps are 64 x 64 with four planted strategies (a blob of relevance in one of
four places, 10 % of the maps in a corner) plus noise. Per n: pooling onto
20 x 20, the spectral part (kNN graph, Laplacian eigenvalues, spectral
clustering) and the t-SNE embedding, each timed in this run (best of
--repeats), the peak traced memory of one fit, and whether the eigengap finds
the four strategies (adjusted Rand index of the labels).

    python benchmarks/bench_spray.py [--sizes 500 2000 10000] [--repeats 1] [--no-tsne]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from sklearn.metrics import adjusted_rand_score

from bowlrp.spray.spectral import SpRAy, pool_maps


def planted_maps(n: int, seed: int = 0, side: int = 64):
    rng = np.random.default_rng(seed)
    centres = [(52, 10), (20, 20), (20, 44), (44, 40)]
    shares = [0.1, 0.3, 0.3, 0.3]
    groups = rng.choice(4, n, p=shares)
    yy, xx = np.mgrid[:side, :side]
    maps = np.empty((n, side, side))
    for i, g in enumerate(groups):
        cy, cx = centres[g]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 6.0**2))
        maps[i] = blob + rng.normal(0, 0.05, (side, side))
    return maps, groups


def best_of(fn, repeats):
    """(wall seconds, CPU seconds of this process, result) of the fastest of ``repeats`` runs."""
    best, out = (np.inf, np.inf), None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - t, time.process_time() - c))
    return best[0], best[1], out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[500, 2000, 10000])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-tsne", action="store_true", help="skip the t-SNE embedding")
    args = ap.parse_args(argv)
    print("Times: wall (CPU of this process, all threads). The machine may be shared: CPU is the steadier.")
    print(
        "| n | pooling | kNN + eigenvalues + clustering | t-SNE | peak memory (no t-SNE) | clusters | ARI |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        maps, groups = planted_maps(n)

        def pool(maps=maps):
            return pool_maps(maps, 20)

        w_pool, c_pool, pooled = best_of(pool, args.repeats)

        def spectral(pooled=pooled):
            return SpRAy(random_state=0, embedding=False).fit_pooled(pooled)

        def everything(pooled=pooled):
            return SpRAy(random_state=0).fit_pooled(pooled)

        w_spec, c_spec, sp = best_of(spectral, args.repeats)
        w_all, c_all, full = best_of(everything, args.repeats) if not args.no_tsne else (np.nan,) * 3
        tracemalloc.start()
        spectral()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        ari = adjusted_rand_score(groups, sp.labels_)
        assert args.no_tsne or full.embedding_.shape == (n, 2)
        print(
            f"| {n:,} | {w_pool:.2f} s ({c_pool:.2f}) | {w_spec:.2f} s ({c_spec:.2f}) | "
            f"{w_all - w_spec:.1f} s ({c_all - c_spec:.1f}) | {peak:.0f} MB | {sp.n_clusters_} | "
            f"{ari:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
