"""Training features on Dask (issue 29): 1 versus 2 workers, parallel efficiency in one run.

The features stage of ``bowlrp-train --workers k`` (:class:`bowlrp.runs.train_dask.DaskStages`):
every image described and encoded by a task that writes its float32 row into a
training store. Data: ``--images`` generated VOC-format images of 500 x 375
(``bowlrp.datasets.voc_like``), config ``--config`` (default ``voc_small``), its
vocabularies fitted once beforehand. For k = 1, then 2: a ``LocalCluster`` of k
processes with one thread each; one warm-up task per worker (imports, Numba caches),
then the stage timed (wall), with the workers' CPU seconds and the load average
around it. Parallel efficiency ``E = T_1 / (2 T_2)`` from the two timings of this run.

    python benchmarks/bench_train_dask.py [--images 48] [--config voc_small] [--out DIR]

Writes ``train_dask.json`` and ``train_dask.png`` (wall and CPU per worker count) in
``--out`` (default: a new temporary folder) and prints the table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the file backend

from bowlrp.datasets.voc_like import make_voc_like  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402
from bowlrp.runs.train_dask import DaskStages  # noqa: E402


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load() -> float:
    return os.getloadavg()[0]


def measure(k: int, pipe: Pipeline, images: list[str], work: Path) -> dict:
    """Time the features stage on a fresh LocalCluster of ``k`` one-thread processes."""
    from distributed import Client, LocalCluster

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = LocalCluster(n_workers=k, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    try:
        warm = DaskStages(client=client, store=work / f"warm{k}.zarr", rows_per_block=1)
        with warm.running(lambda line: None):  # one image per worker: imports, Numba caches
            warm.features(pipe, images[:k])
        cpu0 = sum(client.run(_cpu_seconds).values())
        load0 = _load()
        stages = DaskStages(client=client, store=work / f"run{k}.zarr", rows_per_block=1, progress=True)
        started = time.perf_counter()
        with stages.running(lambda line: None):
            X = stages.features(pipe, images)
        wall = time.perf_counter() - started
        cpu = sum(client.run(_cpu_seconds).values()) - cpu0
        return {
            "workers": k,
            "images": len(images),
            "features": int(X.shape[1]),
            "wall_s": round(wall, 2),
            "images_per_s": round(len(images) / wall, 3),
            "worker_cpu_s": round(cpu, 2),
            "load_before": round(load0, 1),
            "load_after": round(_load(), 1),
        }
    finally:
        client.close()
        cluster.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--config", default="voc_small")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-train-dask-"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=out))
    root = make_voc_like(work / "VOC", args.images, 0, seed=0)
    images = sorted(str(p) for p in (root / "JPEGImages").glob("*.jpg"))[: args.images]
    pipe = Pipeline.from_config(args.config)
    pipe.fit_vocabularies(images[:8])  # the vocabularies' quality does not matter here
    print(f"{len(images)} images 500x375, {args.config}, LocalCluster(n_workers=k, threads_per_worker=1)")
    rows = []
    for k in (1, 2):
        row = measure(k, pipe, images, work)
        rows.append(row)
        print(
            f"  {k} worker(s): {row['wall_s']:7.1f} s wall, {row['images_per_s']:.2f} images/s, "
            f"workers' CPU {row['worker_cpu_s']:.1f} s, load {row['load_before']} -> {row['load_after']}"
        )
    efficiency = rows[0]["wall_s"] / (2 * rows[1]["wall_s"])
    result = {
        "command": "python benchmarks/bench_train_dask.py " + " ".join(argv or []),
        "config": args.config,
        "runs": rows,
        "parallel_efficiency": round(efficiency, 3),
        "cpu_count": os.cpu_count(),
    }
    (out / "train_dask.json").write_text(json.dumps(result, indent=2))
    fig, ax = plt.subplots(figsize=(5, 3))
    ks = [r["workers"] for r in rows]
    ax.bar([k - 0.2 for k in ks], [r["wall_s"] for r in rows], width=0.4, label="wall s")
    ax.bar([k + 0.2 for k in ks], [r["worker_cpu_s"] for r in rows], width=0.4, label="workers' CPU s")
    ax.set_xticks(ks)
    ax.set_xlabel("Dask workers")
    ax.set_title(f"features of {len(images)} images: efficiency {efficiency:.2f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "train_dask.png", dpi=100)
    print(f"parallel efficiency T1 / (2 T2) = {efficiency:.3f}  ->  {out / 'train_dask.json'}")
    print("| workers | wall | images/s | workers' CPU | load before → after |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['wall_s']} s | {r['images_per_s']} | {r['worker_cpu_s']} s | "
            f"{r['load_before']} → {r['load_after']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
