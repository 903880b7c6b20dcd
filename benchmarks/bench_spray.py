"""Time and memory of a whole SpRAy fit, per stage: 500 / 2,000 / 10,000 maps here, 50,000 on Dask (issue 28).

Maps are 32 x 32 (pooled onto the CLI's 20 x 20 grid) with four planted
strategies (a blob of relevance in one of four places, 10 % of the maps in a
corner) plus noise. Every size runs in a fresh subprocess, twice:

1. **time**: one default fit (``SpRAy(random_state=0)``: clusterings spectral,
   k-means, agglomerative for k = 2..10 and HDBSCAN, the t-SNE embedding;
   stage cache off); its ``stage_seconds_`` give CPU and wall seconds of every
   stage in the order the fit runs them (pooling, kNN graph, eigenvectors,
   each clustering family, silhouettes, t-SNE), then the whole fit, the
   process's peak resident memory (``ru_maxrss``), the eigengap's k and
   whether it finds the four strategies (adjusted Rand index);
2. **memory**: the same fit under :mod:`tracemalloc`, whose ``stage_memory_``
   give each stage's peak traced memory above what was held when it started
   (NumPy arrays and Python objects; not what C libraries allocate on their own).

``--dask N --workers W`` adds a run on a local Dask cluster of ``W`` worker
processes: ``N`` maps in ``--classes`` classes written as a heatmap folder
(``*_relevance.npy`` + ``.json``, as ``bowlrp-explain --out`` writes; into
``--workdir``, removed after), then what ``bowlrp-spray --heatmaps DIR
--workers W`` runs: listing the records, reading and pooling on the workers,
and per class the fit (graph and clusterings and t-SNE as tasks; the
eigendecomposition on the driver). Stage seconds there are the driver's wall
seconds (CPU of the driver only); memory is the driver's ``ru_maxrss``.

Run on one core: the script sets ``OMP_NUM_THREADS=1`` and friends before
NumPy loads (``--threads N`` to change), openTSNE runs with ``n_jobs=1``.

    python benchmarks/bench_spray.py [--sizes 500 2000 10000] [--threads 1]
    python benchmarks/bench_spray.py --sizes --dask 50000 --workers 2 --classes 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def _limit_threads(argv) -> None:
    n = "1"
    if "--threads" in argv:
        n = argv[argv.index("--threads") + 1]
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = n


_limit_threads(sys.argv)

import resource  # noqa: E402  (after the thread limits: NumPy reads them when it loads)
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bowlrp.runs.distributed import dask_client  # noqa: E402  (imports Dask only when it starts a cluster)
from bowlrp.spray.distributed import pool_on_dask  # noqa: E402
from bowlrp.spray.heatmap_files import find_heatmaps, group_by_target  # noqa: E402
from bowlrp.spray.spectral import SpRAy, common_shape  # noqa: E402

STAGES = {
    "pooling": "pooling",
    "affinity": "kNN graph",
    "eigen": "eigenvectors",
    "spectral": "spectral",
    "kmeans": "k-means",
    "agglomerative": "agglomerative",
    "hdbscan": "HDBSCAN",
    "scores": "silhouettes",
    "tsne": "t-SNE",
}


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


def max_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_size(n: int, mode: str) -> dict:
    """One fit on ``n`` planted maps in this process: ``mode`` "time" or "memory"."""
    maps, groups = planted_maps(n)
    if mode == "memory":
        tracemalloc.start()
    cpu, wall = time.process_time(), time.perf_counter()
    sp = SpRAy(random_state=0).fit(maps)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    out = {
        "n": n,
        "seconds": sp.stage_seconds_,
        "memory": {k: v / 2**20 for k, v in sp.stage_memory_.items()},
        "whole": {"cpu": cpu, "wall": wall},
        "max_rss_mb": max_rss_mb(),
        "k": sp.n_clusters_,
        "ari": adjusted_rand_score(groups, sp.labels_),
        "tsne_by": sp.tsne_backend_,
    }
    if mode == "memory":
        out["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out


def in_subprocess(args: list[str]) -> dict:
    """Run this script with ``args`` in a fresh Python; its last line of output is JSON."""
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_folder(root: Path, n: int, classes: int) -> None:
    """``n`` planted maps as bowlrp-explain writes them, ``classes`` classes of about ``n / classes``."""
    per = [n // classes + (c < n % classes) for c in range(classes)]
    bar = tqdm(total=n, desc="writing heatmaps", file=sys.stderr, leave=False)
    for c, m in enumerate(per):
        maps, _ = planted_maps(m, seed=c)
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i, heat in enumerate(maps):
            np.save(folder / f"im{i:06d}_relevance.npy", heat)
            (folder / f"im{i:06d}.json").write_text(json.dumps({"target": f"class{c}", "score": 1.0}))
            bar.update()
    bar.close()


def dask_run(n: int, workers: int, classes: int, workdir: str | None) -> dict:
    """What ``bowlrp-spray --heatmaps DIR --workers W`` computes, timed per stage."""
    root = Path(tempfile.mkdtemp(prefix="bench_spray_", dir=workdir))
    try:
        write_folder(root, n, classes)
        seconds: dict[str, dict[str, float]] = {}

        def add(stage, cpu, wall):
            s = seconds.setdefault(stage, {"cpu": 0.0, "wall": 0.0})
            s["cpu"] += cpu
            s["wall"] += wall

        whole_cpu, whole_wall = time.process_time(), time.perf_counter()
        with dask_client(workers) as client:
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            client.wait_for_workers(workers)
            add("cluster start", time.process_time() - start_cpu, time.perf_counter() - start_wall)
            cpu, wall = time.process_time(), time.perf_counter()
            groups = group_by_target(find_heatmaps(root))
            add("listing", time.process_time() - cpu, time.perf_counter() - wall)
            per_class = []
            for target, records in groups.items():
                cpu, wall = time.process_time(), time.perf_counter()
                shape = common_shape(r.shape for r in records)
                pooled, kept = pool_on_dask(client, records, 20, shape, quiet=True)
                add("pooling", time.process_time() - cpu, time.perf_counter() - wall)
                sp = SpRAy(random_state=0).fit_pooled(pooled, shape, client=client)
                for stage, s in sp.stage_seconds_.items():
                    add(stage, s["cpu"], s["wall"])
                per_class.append({"class": target, "n": len(kept), "k": sp.n_clusters_})
        return {
            "n": n,
            "workers": workers,
            "classes": per_class,
            "seconds": seconds,
            "whole": {"cpu": time.process_time() - whole_cpu, "wall": time.perf_counter() - whole_wall},
            "max_rss_mb": max_rss_mb(),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _cell(s: dict | None) -> str:
    return "" if s is None else f"{s['cpu']:.2f} ({s['wall']:.1f})"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", type=int, default=[500, 2000, 10000])
    ap.add_argument("--threads", type=int, default=1, help="BLAS / OpenMP threads (default 1)")
    ap.add_argument("--dask", type=int, default=None, metavar="N", help="also N maps on a local Dask cluster")
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    ap.add_argument("--classes", type=int, default=5, help="classes of the Dask run (default 5)")
    ap.add_argument("--workdir", default=None, help="where the Dask run's heatmap folder is written")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="time", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one is not None:  # a child: one fit, its numbers as JSON on the last line
        print(json.dumps(one_size(args.one, args.mode)))
        return
    if args.mode == "dask":
        print(json.dumps(dask_run(args.dask, args.workers, args.classes, args.workdir)))
        return
    if args.sizes:
        print(f"CPU seconds (wall in brackets), one process per size, threads {args.threads}:")
        print("| n | " + " | ".join(STAGES.values()) + " | whole fit | peak RSS | k | ARI | t-SNE by |")
        print("|" + "---|" * (len(STAGES) + 6))
        memory_rows = []
        for n in args.sizes:
            t = in_subprocess(["--one", str(n), "--mode", "time", "--threads", str(args.threads)])
            row = [f"{n:,}", *(_cell(t["seconds"].get(s)) for s in STAGES), _cell(t["whole"])]
            row += [f"{t['max_rss_mb']:.0f} MB", str(t["k"]), f"{t['ari']:.3f}", str(t["tsne_by"])]
            print("| " + " | ".join(row) + " |", flush=True)
            m = in_subprocess(["--one", str(n), "--mode", "memory", "--threads", str(args.threads)])
            cells = [f"{m['memory'][s]:.1f}" if s in m["memory"] else "" for s in STAGES]
            memory_rows.append([f"{n:,}", *cells, f"{m['traced_peak_mb']:.1f}", f"{m['max_rss_mb']:.0f}"])
        print("\nPeak traced memory per stage, MB above the stage's start (tracemalloc; a second run):")
        print("| n | " + " | ".join(STAGES.values()) + " | whole fit (traced) | peak RSS |")
        print("|" + "---|" * (len(STAGES) + 3))
        for row in memory_rows:
            print("| " + " | ".join(row) + " |", flush=True)
    if args.dask:
        d = in_subprocess(
            [
                "--mode",
                "dask",
                "--dask",
                str(args.dask),
                "--workers",
                str(args.workers),
                "--classes",
                str(args.classes),
            ]
            + (["--workdir", args.workdir] if args.workdir else [])
            + ["--threads", str(args.threads)]
        )
        classes = ", ".join(f"{c['class']}: {c['n']:,} maps, k {c['k']}" for c in d["classes"])
        print(f"\nDask, {d['workers']} worker processes, {d['n']:,} maps ({classes}):")
        print("| stage | driver CPU s | wall s |")
        print("|---|---|---|")
        for stage, s in d["seconds"].items():
            print(f"| {STAGES.get(stage, stage)} | {s['cpu']:.1f} | {s['wall']:.1f} |")
        print(f"| whole run | {d['whole']['cpu']:.1f} | {d['whole']['wall']:.1f} |")
        print(f"driver peak RSS {d['max_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
