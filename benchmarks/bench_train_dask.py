"""Training features on Dask (issue 29): 1 versus 2 workers, parallel efficiency in one run.

The features stage of ``bowlrp-train --workers k`` (:class:`bowlrp.runs.train_dask.DaskStages`):
every image described and encoded by a task that writes its float32 row into a
training store. Data: ``--images`` generated VOC-format images of 500 x 375
(``bowlrp.datasets.voc_like``), config ``--config`` (default ``voc_small``; ``voc_fisher``
is the VOC experiment's), its vocabularies fitted once beforehand on 8 images (for
``voc_fisher`` with at most 40,000 descriptors and 20 EM iterations: the fit's effort
only, never the model's shape).

Both clusters are up for the whole run: a ``LocalCluster`` of 1 process and one of 2
processes, one thread each, each warmed up with one task per worker (imports, Numba
caches). Then ``--rounds`` rounds, each timing the stage on 1 worker and on 2 workers in
alternating order (1, 2 then 2, 1, ...), into a new store each time, so that the machine's
load falls on both alike. Per round the parallel efficiency ``E = T_1 / (2 T_2)``; the
result is the median over rounds, with every round's figures and the load around it.
(A cluster that is not being timed is idle: its processes only wait.)

    python benchmarks/bench_train_dask.py [--images 48] [--config voc_small] [--rounds 3] [--out DIR]

Writes ``train_dask.json`` and ``train_dask.png`` (wall per round and worker count) in
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
import numpy as np
from tqdm import tqdm

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


def start_cluster(k: int):
    """A LocalCluster of ``k`` one-thread processes and its client."""
    from distributed import Client, LocalCluster  # reason: Dask is an optional extra

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = LocalCluster(n_workers=k, threads_per_worker=1, processes=True, dashboard_address=None)
    return cluster, Client(cluster)


def warm_up(client, k: int, pipe: Pipeline, images: list[str], work: Path) -> None:
    """One image per worker: imports, Numba caches."""
    warm = DaskStages(client=client, store=work / f"warm{k}.zarr", rows_per_block=1)
    with warm.running(lambda line: None):
        warm.features(pipe, images[:k])


def measure(client, k: int, pipe: Pipeline, images: list[str], store: Path) -> dict:
    """Time the features stage on ``client``'s ``k`` workers into a new store."""
    cpu0 = sum(client.run(_cpu_seconds).values())
    load0 = _load()
    stages = DaskStages(client=client, store=store, rows_per_block=1)
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


def fitted_pipeline(config: str, images: list[str]) -> Pipeline:
    """``config``'s pipeline with vocabularies fitted on 8 images (a cheap fit for GMMs)."""
    cheap = {"max_descriptors": 40000, "max_iter": 20} if config == "voc_fisher" else None
    pipe = Pipeline.from_config(config, cheap)
    pipe.fit_vocabularies(images[:8])  # the vocabularies' quality does not matter here
    return pipe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--config", default="voc_small")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-train-dask-"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=out))
    root = make_voc_like(work / "VOC", args.images, 0, seed=0)
    images = sorted(str(p) for p in (root / "JPEGImages").glob("*.jpg"))[: args.images]
    pipe = fitted_pipeline(args.config, images)
    print(
        f"{len(images)} images 500x375, {args.config}, LocalCluster(n_workers=k, threads_per_worker=1), "
        f"{args.rounds} interleaved rounds"
    )
    clusters = {k: start_cluster(k) for k in (1, 2)}
    rounds = []
    try:
        for k, (_, client) in clusters.items():
            warm_up(client, k, pipe, images, work)
        for r in tqdm(range(args.rounds), desc="rounds"):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            row = {k: measure(clusters[k][1], k, pipe, images, work / f"round{r}-k{k}.zarr") for k in order}
            efficiency = row[1]["wall_s"] / (2 * row[2]["wall_s"])
            rounds.append(
                {
                    "round": r,
                    "order": list(order),
                    "runs": [row[1], row[2]],
                    "efficiency": round(efficiency, 3),
                }
            )
            print(
                f"  round {r} (order {order}): 1 worker {row[1]['wall_s']:.1f} s, "
                f"2 workers {row[2]['wall_s']:.1f} s, efficiency {efficiency:.3f}, "
                f"load {row[order[0]]['load_before']} -> {row[order[1]]['load_after']}"
            )
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    efficiencies = [r["efficiency"] for r in rounds]
    median = float(np.median(efficiencies))
    result = {
        "command": "python benchmarks/bench_train_dask.py " + " ".join(argv or []),
        "config": args.config,
        "rounds": rounds,
        "parallel_efficiency_median": round(median, 3),
        "cpu_count": os.cpu_count(),
    }
    (out / "train_dask.json").write_text(json.dumps(result, indent=2))
    fig, ax = plt.subplots(figsize=(6, 3))
    x = np.arange(len(rounds))
    for k, dx in ((1, -0.2), (2, 0.2)):
        ax.bar(x + dx, [r["runs"][k - 1]["wall_s"] for r in rounds], width=0.4, label=f"{k} worker(s)")
    ax.set_xticks(x, [f"round {r['round']}\nE = {r['efficiency']:.2f}" for r in rounds])
    ax.set_ylabel("wall s")
    ax.set_title(f"features of {len(images)} images ({args.config}): median efficiency {median:.2f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "train_dask.png", dpi=100)
    print(
        f"parallel efficiency T1 / (2 T2), median of {len(rounds)} rounds = {median:.3f}  "
        f"->  {out / 'train_dask.json'}"
    )
    print(
        "| round | order | 1 worker wall | 2 workers wall | efficiency | workers' CPU 1 / 2 "
        "| load before → after |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rounds:
        one, two = r["runs"]
        print(
            f"| {r['round']} | {r['order']} | {one['wall_s']} s | {two['wall_s']} s "
            f"| **{r['efficiency']}** | {one['worker_cpu_s']} / {two['worker_cpu_s']} s "
            f"| {one['load_before']} → {two['load_after']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
