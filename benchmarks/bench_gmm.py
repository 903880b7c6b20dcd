"""GMM vocabulary (issue 29): peak memory and time per EM iteration, streamed vs scikit-learn.

Data: ``N`` float32 descriptors in 80 dimensions drawn from a random 256-component
diagonal mixture (PCA'd SIFT stand-in). Each measurement runs in its own process
(peak resident memory from ``resource.getrusage``, data generation included):

* streamed EM (``bowlrp.encoding.gmm``) at ``--n`` (default 1M): k-means++ start,
  then ``--iters`` EM iterations timed one by one;
* at ``--compare-n`` (default 250k), both scikit-learn's
  ``GaussianMixture(covariance_type="diag")`` and the streamed EM from the same
  start: time per iteration = (fit with ``1 + iters`` iterations - fit with 1) / iters,
  so the start and scikit-learn's final E-step cancel; the ratio is from this run.

    python benchmarks/bench_gmm.py [--n 1000000] [--compare-n 250000] [--iters 3]

``--versus PATH``: instead, the EM iteration of this checkout against another one's
(``PATH`` holds that version's ``bowlrp``, e.g. an exported older commit), at
``--compare-n`` and ``--n``: per size, one process per version, in turn (old, new,
old, new: ``--rounds`` rounds), each generating the data, starting from the cheap
start, running one untimed iteration and then ``--iters`` timed ones (wall and CPU
seconds of each ``streamed_em(max_iter=1)``, continued from the last); peak resident
memory of each process; load average before and after each. The fits are compared:
the new version's parameters after the timed iterations against the old one's.

    python benchmarks/bench_gmm.py --versus /tmp/before [--compare-n 250000] [--n 1000000] [--iters 3]
        [--rounds 1] [--scales 1 2]

``--scales LO HI`` (every mode): the components' deviations (default 0.2 0.6, well
separated; 1 2 overlap like a GMM on PCA'd SIFT).

``--posteriors``: instead, on the 480x360 scene of ``_scenes.py`` with the Fisher
pipeline of ``bench_relevance.py`` (SIFT 4/6/8/10 step 3, PCA 80, GMM 256, pyramid
1x1 + 2x2 + 3x1, linear SVM), one thread: the posteriors (``sparse_posteriors``) with
float64 and with mixed-precision log-likelihoods, then ``decision_function`` and
``explain`` with each (best of ``--repeats``; CPU seconds beside wall seconds).

    python benchmarks/bench_gmm.py --posteriors [--repeats 3]

``--dask``: instead, the E-step on Dask workers (``bowlrp.runs.dask_em.DaskEStep``,
issue 29) at ``--compare-n`` from the cheap start: the wall and CPU seconds of each
EM iteration's E-step on the driver (serial, Numba's default threads), on a
LocalCluster of 1 worker process and on one of 2 (one thread each), interleaved on
the same iterations in a rotating order (the first iteration, with the workers'
start-up, is left out of the means); the three sums are compared bit for bit.

    python benchmarks/bench_gmm.py --dask [--compare-n 250000] [--iters 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from bowlrp.encoding import fisher
from bowlrp.encoding.fisher import sparse_posteriors
from bowlrp.encoding.gmm import kmeans_plusplus_start, log_likelihood_terms, serial_estep, streamed_em

D, K = 80, 256


#: Standard deviations of the generated components, uniform in this range (``--scales``).
SCALES = (0.2, 0.6)


def make_data(n: int, seed: int = 0) -> np.ndarray:
    """(n, 80) float32 from a random diagonal mixture, written in blocks (no float64 copy).

    Centres N(0, 1), deviations uniform in :data:`SCALES`: (0.2, 0.6) gives well separated
    components (after a few EM iterations ~1 entry per row within 45 nats of its largest),
    (1, 2) overlapping ones like a GMM on PCA'd SIFT (~120-210 of 256; a VOC-like GMM: ~149).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (K, D))
    scales = rng.uniform(*SCALES, (K, D))
    out = np.empty((n, D), dtype=np.float32)
    for start in range(0, n, 65536):
        m = min(65536, n - start)
        k = rng.integers(0, K, m)
        out[start : start + m] = centres[k] + rng.standard_normal((m, D)) * scales[k]
    return out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cheap_start(data: np.ndarray):
    """Means from random rows, unit variances, uniform priors (the same for both)."""
    rng = np.random.default_rng(1)
    means = data[rng.choice(len(data), K, replace=False)].astype(np.float64)
    return means, np.ones((K, D)), np.full(K, 1.0 / K)


def child(kind: str, n: int, iters: int) -> dict:
    data = make_data(n)
    out = {"kind": kind, "n": n}
    if kind == "em-iters":
        streamed_em(data[: 4 * K], *cheap_start(data[: 4 * K]), max_iter=1)  # warm-up (Numba)
        fit = streamed_em(data, *cheap_start(data), max_iter=1)  # untimed first iteration
        start = (fit.means, fit.covariances, fit.weights)
        out["within_45_nats"] = near_maximal_entries(data[:4096], *start)
        wall, cpu = [], []
        for _ in range(iters):
            t, c = time.perf_counter(), time.process_time()
            fit = streamed_em(data, *start, max_iter=1)
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            start = (fit.means, fit.covariances, fit.weights)
        out.update(
            iter_s=wall, iter_cpu_s=cpu, means=fit.means.tolist(), covariances=fit.covariances.tolist()
        )
        out["version"] = str(Path(sys.modules["bowlrp"].__file__).parent.parent)
    elif kind == "streamed-full":
        streamed_em(data[: 4 * K], *cheap_start(data[: 4 * K]), max_iter=1)  # warm-up (Numba)
        t = time.perf_counter()
        start = kmeans_plusplus_start(data, K, 1e-6, random_state=0)
        out["init_s"] = time.perf_counter() - t
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            fit = streamed_em(data, *start, max_iter=1)
            times.append(time.perf_counter() - t)
            start = (fit.means, fit.covariances, fit.weights)
        out["iter_s"] = times
    else:
        means, variances, weights = cheap_start(data)

        def run(max_iter):
            t = time.perf_counter()
            if kind == "sklearn":
                from sklearn.mixture import GaussianMixture  # only the scikit-learn child needs it

                GaussianMixture(
                    K,
                    covariance_type="diag",
                    reg_covar=1e-6,
                    max_iter=max_iter,
                    tol=0.0,
                    init_params="random_from_data",
                    means_init=means,
                    weights_init=weights,
                    precisions_init=1.0 / variances,
                    random_state=0,
                ).fit(data.astype(np.float64))
            else:
                streamed_em(data, means, variances, weights, max_iter=max_iter, tol=0.0)
            return time.perf_counter() - t

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run(1)  # warm-up (Numba compilation, page faults)
            one = run(1)
            many = run(1 + iters)
        out["iter_s"] = [(many - one) / iters]
    out["peak_mb"] = peak_mb()
    return out


def near_maximal_entries(rows: np.ndarray, means, covariances, weights) -> float:
    """Mean count per row of log-likelihoods within 45 nats of the row's largest (float64)."""
    W, const = log_likelihood_terms(means, covariances, weights)
    x = rows.astype(np.float64)
    v = np.hstack([x * x, x]) @ W + const
    return float((v >= v.max(1, keepdims=True) - 45.0).sum(1).mean())


def versus_bench(old_path: str, sizes: list[int], iters: int, rounds: int) -> None:
    """The EM iteration of ``old_path``'s bowlrp and of this checkout's, in turn, per size."""
    new_path = str(Path(__file__).resolve().parent.parent)
    print(
        f"D = {D}, K = {K}, component deviations in {SCALES}; old: {old_path}, new: {new_path}; "
        "one process per measurement"
    )
    for n in sizes:
        results = {"old": [], "new": []}
        for _ in range(rounds):
            for name, path in (("old", old_path), ("new", new_path)):
                before = os.getloadavg()[0]
                r = spawn("em-iters", n, iters, pythonpath=path)
                r["load"] = (before, os.getloadavg()[0])
                results[name].append(r)
                print(
                    f"  N = {n:,} {name}: iterations {', '.join(f'{t:.2f}' for t in r['iter_s'])} s wall, "
                    f"{', '.join(f'{t:.2f}' for t in r['iter_cpu_s'])} s CPU; peak {r['peak_mb']:,.0f} MB; "
                    f"entries within 45 nats {r['within_45_nats']:.0f} of {K}; load {r['load'][0]:.1f} -> "
                    f"{r['load'][1]:.1f}",
                    flush=True,
                )
        mean = {
            k: (np.mean([r["iter_s"] for r in v]), np.mean([r["iter_cpu_s"] for r in v]))
            for k, v in results.items()
        }
        peak = {k: max(r["peak_mb"] for r in v) for k, v in results.items()}
        a, b = results["old"][-1], results["new"][-1]
        rel = max(
            float(np.max(np.abs(np.subtract(b[name], a[name])) / np.abs(a[name]).max()))
            for name in ("means", "covariances")
        )
        print(
            f"N = {n:,}: per EM iteration old {mean['old'][0]:.2f} s wall / {mean['old'][1]:.2f} s CPU "
            f"(peak {peak['old']:,.0f} MB), new {mean['new'][0]:.2f} s wall / {mean['new'][1]:.2f} s CPU "
            f"(peak {peak['new']:,.0f} MB); old / new {mean['old'][0] / mean['new'][0]:.2f} wall, "
            f"{mean['old'][1] / mean['new'][1]:.2f} CPU; parameters after {iters + 1} iterations differ by "
            f"{rel:.1e} (relative to their largest)",
            flush=True,
        )


def posteriors_bench(repeats: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import numba  # one thread for the Numba kernels as well
    from _scenes import scene  # the benchmark scenes
    from bench_relevance import pipelines  # the Fisher pipeline measured there
    from threadpoolctl import threadpool_limits  # BLAS at one thread

    numba.set_num_threads(1)
    pipe = pipelines()["fisher-linear"]
    with threadpool_limits(1):
        pipe.fit([scene(s, kind=s % 2) for s in range(8)], np.arange(8) % 2)
        image = scene(100, kind=0)
        encoder = pipe.encoders_[0]
        vocab = encoder.vocabulary_
        data = vocab.project(pipe.forward_one(image).channels[0].descriptors.data)
        gmm = (vocab.means_, vocab.covariances_, vocab.weights_, encoder.posterior_threshold)
        print(f"480x360 scene, N = {len(data):,} descriptors, K = {len(vocab.weights_)}; one thread")
        rows = {}
        for precision in ("float64", "mixed", "float64", "mixed"):
            fisher.POSTERIOR_PRECISION = precision
            pipe.explain([image])  # warm-up (Numba compilation)
            post = best_of(lambda p=precision: sparse_posteriors(data, *gmm, precision=p), repeats)
            fwd = best_of(lambda: pipe.decision_function([image]), repeats)
            exp = best_of(lambda: pipe.explain([image]), repeats)
            old = rows.get(precision)
            rows[precision] = [min(a, b) for a, b in zip(old, post + fwd + exp)] if old else post + fwd + exp
        for precision, (pw, pc, fw, fc, ew, ec) in rows.items():
            print(
                f"  {precision:8s} posteriors {pw * 1e3:6.0f} ms wall / {pc * 1e3:6.0f} ms CPU; "
                f"decision_function {fw * 1e3:6.0f} / {fc * 1e3:6.0f} ms; "
                f"explain {ew * 1e3:6.0f} / {ec * 1e3:6.0f} ms; "
                f"explain / decision_function {ew / fw:.2f} (CPU {ec / fc:.2f}); "
                f"{1 / ec:.2f} images/s per core"
            )
        (a, b) = rows["mixed"], rows["float64"]
        print(
            f"  mixed / float64 (CPU): posteriors {a[1] / b[1]:.2f}, decision_function {a[3] / b[3]:.2f}, "
            f"explain {a[5] / b[5]:.2f}"
        )


def cpu_seconds(client) -> float:
    """CPU seconds of the workers' processes (the driver's own without a client)."""
    if client is None:
        return time.process_time()
    return float(sum(client.run(time.process_time).values()))


def dask_bench(n: int, iters: int) -> None:
    """The E-step on the driver, on 1 worker and on 2 workers, interleaved on the same iterations.

    Both clusters run at once (idle when not measured); each EM iteration's E-step is
    run by the three in a rotating order with the same parameters, so a change of
    the machine's load falls on all three alike; their sums are compared bit for bit
    and the fit goes on with them.
    """
    from bowlrp.runs.dask_em import DaskEStep  # the runs layer: only this mode needs Dask
    from bowlrp.runs.distributed import start_client  # LocalCluster of processes, 1 thread each

    data = make_data(n)
    start = cheap_start(data)
    streamed_em(data[: 4 * K], *cheap_start(data[: 4 * K]), max_iter=1)  # warm-up (Numba)
    print(f"N = {n:,}, D = {D}, K = {K}; {iters} EM iterations timed after a first one")
    c1, cluster1 = start_client(1)
    c2, cluster2 = start_client(2)
    labels = ("driver", "1 worker", "2 workers")
    clients = {"driver": None, "1 worker": c1, "2 workers": c2}
    esteps = {"driver": serial_estep, "1 worker": DaskEStep(c1), "2 workers": DaskEStep(c2)}
    wall = {k: [] for k in labels}
    cpu = {k: [] for k in labels}
    same = []
    loads = [os.getloadavg()[0]]

    @contextlib.contextmanager
    def interleaved(chunks):
        with contextlib.ExitStack() as stack:
            runs = {k: stack.enter_context(esteps[k](chunks)) for k in labels}

            def run(W, const):
                it = len(wall["driver"])
                sums = {}
                for k in labels[it % 3 :] + labels[: it % 3]:  # a rotating order
                    c, t = cpu_seconds(clients[k]), time.perf_counter()
                    sums[k] = list(runs[k](W, const))
                    wall[k].append(time.perf_counter() - t)
                    cpu[k].append(cpu_seconds(clients[k]) - c)
                ref = sums["driver"]
                same.append(
                    all(
                        a[0] == b[0] and all(np.array_equal(x, y) for x, y in zip(a[1:], b[1:]))
                        for k in labels[1:]
                        for a, b in zip(sums[k], ref)
                    )
                )
                loads.append(os.getloadavg()[0])
                return ref

            yield run

    try:
        streamed_em(data, *start, max_iter=1 + iters, tol=0.0, estep=interleaved)
    finally:
        c1.close()
        cluster1.close()
        c2.close()
        cluster2.close()
    print(f"  load average (1 min) during the run: {', '.join(f'{x:.1f}' for x in loads)}")
    mean = {k: (float(np.mean(wall[k][1:])), float(np.mean(cpu[k][1:]))) for k in labels}
    for k in labels:
        print(
            f"  {k:10s} E-step per iteration {mean[k][0]:7.2f} s wall, {mean[k][1]:7.2f} s CPU "
            f"({'workers' if clients[k] else 'driver, Numba threads'}); iterations "
            f"{', '.join(f'{t:.2f}' for t in wall[k])} s"
            + (f"; chunks on {esteps[k].workers_} worker(s)" if clients[k] else "")
        )
    (t1, u1), (t2, u2) = mean["1 worker"], mean["2 workers"]
    print(
        f"  1 worker / 2 workers per iteration: {t1 / t2:.2f}; parallel efficiency T1 / (2 T2) = "
        f"{t1 / (2 * t2):.2f}; workers' CPU 2 / 1: {u2 / u1:.2f}"
    )
    print(f"  every iteration's sums equal on the driver, 1 worker and 2 workers bit for bit: {all(same)}")


def best_of(fn, repeats: int) -> list[float]:
    """[best wall seconds, best CPU seconds] of ``repeats`` calls."""
    wall, cpu = np.inf, np.inf
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - w)
        cpu = min(cpu, time.process_time() - c)
    return [wall, cpu]


def spawn(kind: str, n: int, iters: int, pythonpath: str | None = None) -> dict:
    """Run ``--child kind`` in a new process (with ``bowlrp`` from ``pythonpath`` if given)."""
    cmd = [sys.executable, __file__, "--child", kind, "--n", str(n), "--iters", str(iters)]
    cmd += ["--scales", *map(str, SCALES)]
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": pythonpath}
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    global SCALES  # --scales: the generated data of this process and of its children
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--compare-n", type=int, default=250_000)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--posteriors", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dask", action="store_true")
    ap.add_argument("--versus", default=None, metavar="PATH")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--scales", type=float, nargs=2, default=SCALES, metavar=("LO", "HI"))
    args = ap.parse_args(argv)
    SCALES = tuple(args.scales)
    if args.versus:
        versus_bench(args.versus, [args.compare_n, args.n], args.iters, args.rounds)
        return
    if args.dask:
        dask_bench(args.compare_n, args.iters)
        return
    if args.posteriors:
        posteriors_bench(args.repeats)
        return
    if args.child:
        print(json.dumps(child(args.child, args.n, args.iters)))
        return
    print(f"D = {D}, K = {K}; peak = max resident memory of the measuring process")
    full = spawn("streamed-full", args.n, args.iters)
    its = ", ".join(f"{t:.1f}" for t in full["iter_s"])
    print(
        f"streamed, N = {args.n:,}: k-means++ start {full['init_s']:.1f} s, EM iterations {its} s, "
        f"peak {full['peak_mb']:,.0f} MB"
    )
    sk = spawn("sklearn", args.compare_n, args.iters)
    ours = spawn("streamed", args.compare_n, args.iters)
    ratio = ours["iter_s"][0] / sk["iter_s"][0]
    print(
        f"N = {args.compare_n:,}, per EM iteration: scikit-learn {sk['iter_s'][0]:.2f} s "
        f"(peak {sk['peak_mb']:,.0f} MB), streamed {ours['iter_s'][0]:.2f} s "
        f"(peak {ours['peak_mb']:,.0f} MB); ratio streamed / scikit-learn {ratio:.2f}"
    )


if __name__ == "__main__":
    main()
