"""End-to-end explanation throughput per core, and 1 versus 2 Dask workers (issue 18).

Per image: read a 480x360 JPEG (``as_float_image``), ``Pipeline.explain`` with
the shipped ``voc_fisher`` config (dense SIFT 4/6/8/10 step 3, PCA 80, GMM
256, pyramid 1x1 + 2x2 + 3x1, linear SVM), then write the result as
``bowlrp-explain`` does (``_relevance.npy``, heatmap and overlay PNGs, JSON
record, staged and renamed together by ``bowlrp.runs.folder.publish``). BLAS, OpenMP
and Numba are held to one thread (environment variables set before NumPy is
imported, and ``threadpoolctl``), so images/s of one process = images/s per
core. The model is fitted once on generated scenes (vocabulary of 40,000
sampled descriptors, 20 EM iterations) and cached in ``--work``.

    python benchmarks/bench_throughput.py serial --images 12 --rounds 3 \
        [--compare-tree /tmp/bowlrp_before]
    python benchmarks/bench_throughput.py workers --images 24 --rounds 2

``serial`` runs the loop in a fresh subprocess per round (``--compare-tree``:
alternating with the same loop on another source tree, e.g. ``git archive``
of the commit before, so before/after are measured in one run); it prints per
stage CPU and wall seconds per image. ``workers`` maps the same per-image
function over a ``dask.distributed.LocalCluster(n_workers=k,
threads_per_worker=1)`` for k = 1 and 2 alternately in one run, and prints
images/s, the parallel efficiency ``rate_2 / (2 rate_1)`` and each worker's
peak resident memory (``ru_maxrss``). ``uptime`` is printed with every figure:
this 2-core machine is shared.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def uptime() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def make_images(folder: Path, n: int) -> list[Path]:
    """``n`` generated 480x360 JPEG scenes (cached)."""
    import cv2

    sys.path.insert(0, str(HERE))
    from _scenes import scene

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i:04d}.jpg"
        if not path.is_file():
            cv2.imwrite(str(path), (scene(1000 + i, kind=i % 2) * 255).astype(np.uint8))
        paths.append(path)
    return paths


def fitted_model(work: Path) -> Path:
    """The voc_fisher pipeline fitted on 8 generated scenes, saved once in ``work``."""
    path = work / "voc_fisher.skops"
    if path.is_file():
        return path
    sys.path.insert(0, str(HERE))
    from _scenes import scene

    from bowlrp.model_files import save
    from bowlrp.pipeline import Pipeline

    pipe = Pipeline.from_config("voc_fisher", {"max_descriptors": 40000, "max_iter": 20})
    pipe.fit([scene(s, kind=s % 2) for s in range(8)], np.arange(8) % 2)
    work.mkdir(parents=True, exist_ok=True)
    save(pipe, path)
    return path


def process_image(pipe, path: Path, out: Path) -> dict:
    """Read, explain and write one image; CPU and wall seconds of each stage."""
    import io

    from bowlrp._utils.validation import as_float_image
    from bowlrp.image import display_scale
    from bowlrp.runs.folder import picture_bytes, publish

    times = {}
    c, w = time.process_time(), time.perf_counter()

    def lap(name):
        nonlocal c, w
        c2, w2 = time.process_time(), time.perf_counter()
        times[name] = (c2 - c, w2 - w)
        c, w = c2, w2

    image = as_float_image(path)
    lap("read")
    e = pipe.explain([image])[0]
    lap("explain")
    buffer = io.BytesIO()
    np.save(buffer, e.heatmap, allow_pickle=False)
    scale = display_scale(e.heatmap, 99.5)
    heat, over = picture_bytes(image, e.heatmap, scale, "bwr")
    record = {**e.summary(), "image": str(path), "display_scale": scale}
    stem = out / path.stem
    publish(
        {
            Path(f"{stem}_relevance.npy"): buffer.getvalue(),
            Path(f"{stem}_heatmap.png"): heat,
            Path(f"{stem}_overlay.png"): over,
            Path(f"{stem}.json"): json.dumps(record, default=str).encode(),
        }
    )
    lap("write")
    return times


def _serial_child(args) -> None:
    """One round in this process: warm-up image, then all images; JSON on stdout."""
    from threadpoolctl import threadpool_limits

    from bowlrp.model_files import load

    threadpool_limits(1)
    pipe = load(args.model)
    paths = sorted(Path(args.images_dir).glob("*.jpg"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    process_image(pipe, paths[0], out)  # warm-up: Numba caches, first-call costs
    decision = []
    for p in paths[:3]:  # the ratio explain / decision_function, same images, this process
        t = time.process_time()
        pipe.decision_function([str(p)])
        decision.append(time.process_time() - t)
    rows = [process_image(pipe, p, out) for p in paths]
    summary = {
        stage: [float(np.mean([r[stage][0] for r in rows])), float(np.mean([r[stage][1] for r in rows]))]
        for stage in rows[0]
    }
    explain_cpu = [r["explain"][0] for r in rows[:3]]
    summary["explain_over_decision"] = float(np.mean(explain_cpu) / np.mean(decision))
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(summary))


def serial(args, work: Path, model: Path, images: Path) -> None:
    trees = [("current", str(ROOT))]
    if args.compare_tree:
        trees.insert(0, ("compare", str(Path(args.compare_tree).resolve())))
    print(f"{args.images} images 480x360, voc_fisher, one thread; per image: CPU s (wall s)")
    for r in range(args.rounds):
        for label, tree in trees:
            env = {**os.environ, "PYTHONPATH": tree}
            load = uptime()
            cmd = [
                sys.executable,
                __file__,
                "_child",
                "--model",
                str(model),
                "--images-dir",
                str(images),
                "--out",
                str(work / f"out-{label}"),
            ]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            s = json.loads(res.stdout.strip().splitlines()[-1])
            total_cpu = sum(s[k][0] for k in ("read", "explain", "write"))
            total_wall = sum(s[k][1] for k in ("read", "explain", "write"))
            stages = "  ".join(f"{k} {s[k][0]:.3f} ({s[k][1]:.3f})" for k in ("read", "explain", "write"))
            print(
                f"  round {r} {label:8s} load {load}  {stages}  total {total_cpu:.3f} ({total_wall:.3f})"
                f" -> {1 / total_cpu:.2f} images/s per core (CPU), {1 / total_wall:.2f} (wall); "
                f"explain/decision_function {s['explain_over_decision']:.2f}; "
                f"peak RSS {s['peak_rss_mb']:.0f} MB",
                flush=True,
            )


def _worker_task(model: str, path: str, out: str) -> dict:
    """A Dask task: the model is loaded once per worker process."""
    from distributed import get_worker
    from threadpoolctl import threadpool_limits

    from bowlrp.model_files import load

    worker = get_worker()
    pipe = getattr(worker, "_bench_pipe", None)
    if pipe is None:
        threadpool_limits(1)
        pipe = worker._bench_pipe = load(model)
    return process_image(pipe, Path(path), Path(out))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def workers(args, work: Path, model: Path, images: Path) -> None:
    import logging

    from distributed import Client, LocalCluster, wait

    paths = sorted(images.glob("*.jpg"))
    out = work / "out-workers"
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(paths)} images 480x360, voc_fisher, LocalCluster(n_workers=k, threads_per_worker=1)")
    for r in range(args.rounds):
        rates = {}
        for k in (1, 2):
            with (
                LocalCluster(
                    n_workers=k,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                ) as cluster,
                Client(cluster) as client,
            ):
                warm = [
                    client.submit(_worker_task, str(model), str(paths[i]), str(out), pure=False, workers=[w])
                    for i, w in enumerate(client.scheduler_info()["workers"])
                ]
                wait(warm)  # each worker loaded the model and explained one image
                load = uptime()
                t = time.perf_counter()
                futures = client.map(
                    _worker_task,
                    [str(model)] * len(paths),
                    [str(p) for p in paths],
                    [str(out)] * len(paths),
                    pure=False,
                )
                client.gather(futures)
                wall = time.perf_counter() - t
                peaks = client.run(_peak_rss_mb)
            rates[k] = len(paths) / wall
            print(
                f"  round {r} workers {k}: {wall:6.1f} s, {rates[k]:.2f} images/s "
                f"({rates[k] / k:.2f} per worker); load before {load}, after {uptime()}; "
                f"peak RSS per worker {', '.join(f'{v:.0f} MB' for v in peaks.values())}",
                flush=True,
            )
        print(f"  round {r} parallel efficiency rate_2 / (2 rate_1) = {rates[2] / (2 * rates[1]):.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["serial", "workers", "_child"])
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default="/tmp/bowlrp_throughput")
    ap.add_argument(
        "--compare-tree",
        default=None,
        help="another source tree (e.g. `git archive` of an older commit) timed alternately",
    )
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--images-dir", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.mode == "_child":
        _serial_child(args)
        return 0
    sys.path.insert(0, str(ROOT))
    work = Path(args.work)
    model = fitted_model(work)
    images = work / f"images{args.images}"
    make_images(images, args.images)
    (serial if args.mode == "serial" else workers)(args, work, model, images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
