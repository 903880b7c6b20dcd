"""Cost of the relevance pass relative to the forward pass (issue 4).

For a 480x360 image, a Fisher-vector pipeline (dense SIFT 4/6/8/10 step 3,
PCA 80, GMM 256, pyramid 1x1 + 2x2 + 3x1, linear SVM) and a rank-mapping HIK
pipeline (same SIFT, 512 words, rank p = 2.4, n = 8): time(explain) /
time(decision_function), both measured in this run (best of --repeats), and
the peak traced memory of both. Then, on a small image, the deliberately naive
relevance pass that builds the dense N x V matrix of z_ld, against ours.

    python benchmarks/bench_relevance.py [--repeats 3]

``--contribution`` (issue 27) measures instead the better pixel rules against the
forward pass on a 180x240 scene: ``Contribution()`` on the polygons HIK model
(rotated OpenCV SIFT, b = 6 and 9, 64 words) and ``Contribution(per_dimension=True)``
on the Fisher-vector model of ``bench_pixel_rules.py`` (SIFT 4-10 step 3, PCA 32,
GMM 16, linear), ``Flat()`` beside them. Process CPU time, in ``--repeats`` rounds of
paired calls (decision_function, then each explain): the median of the per-round
ratios, their range, and the ratio of the best times.

    python benchmarks/bench_relevance.py --contribution [--repeats 7]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import scene  # noqa: E402
from bench_pixel_rules import polygons_hik  # noqa: E402

import bowlrp  # noqa: E402
from bowlrp import DenseSIFT, FisherVector, GMMVocabulary, KMeansVocabulary, RankMapping  # noqa: E402
from bowlrp.classifier.svm import KernelSVC  # noqa: E402
from bowlrp.explanation import explain_trace  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402
from bowlrp.rules import Contribution, Flat  # noqa: E402


def best_of(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def peak_mb(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def pipelines():
    sift = DenseSIFT(bin_sizes=[4, 6, 8, 10], steps=3)
    fv = Pipeline(
        [
            (
                "fv",
                sift,
                FisherVector(
                    GMMVocabulary(256, pca_components=80, max_descriptors=40000, max_iter=20, random_state=0),
                    pyramid=((1, 1), (2, 2), (3, 1)),
                    normalization="cell-l2+power+l2",
                ),
            )
        ],
        KernelSVC("linear"),
        random_state=0,
    )
    bow = Pipeline(
        [
            (
                "bow",
                sift,
                RankMapping(
                    KMeansVocabulary(512, max_descriptors=40000, random_state=0), base=2.4, n_nearest=8
                ),
            )
        ],
        KernelSVC("hik"),
        random_state=0,
    )
    return {"fisher-linear": fv, "rank-hik": bow}


def naive_fisher_relevance(encoder, trace, R):
    """Dense z matrix (N x V) from the formulas of docs/math.md, then R_l = sum_d z_ld R_d / z_d."""
    mu, sigma, prior = encoder.gmm_parameters()
    L = trace.codes["data"]
    gamma = trace.codes["posteriors"].toarray()
    N = L.shape[0]
    t = (L[:, None, :] - mu[None]) / sigma[None]
    psi = np.hstack(
        [
            (gamma[:, :, None] * t / np.sqrt(prior)[None, :, None]).reshape(N, -1),
            (gamma[:, :, None] * (t**2 - 1) / np.sqrt(2 * prior)[None, :, None]).reshape(N, -1),
        ]
    )
    block = psi.shape[1]
    Z = np.zeros((N, trace.cell_counts.size * block))
    for lev in range(trace.cell_ids.shape[1]):
        for c in np.unique(trace.cell_ids[:, lev]):
            rows = trace.cell_ids[:, lev] == c
            Z[rows, c * block : (c + 1) * block] += psi[rows] / trace.cell_counts[c]
    zd = Z.sum(0)
    reached = np.any(Z != 0, axis=0)
    coef = np.divide(R, zd, out=np.zeros_like(R), where=reached & (zd != 0))
    uniform = R[~(reached & (zd != 0))].sum() / N  # dimensions no descriptor reached
    return Z @ coef + uniform, Z.nbytes


def contribution_cases(repeats):
    """Issue 27: explain / decision_function with the better pixel rules, paired rounds."""
    size = {"height": 180, "width": 240}
    train = [scene(s, kind=s % 2, **size) for s in range(4)]
    y = np.arange(4) % 2
    image = scene(100, kind=0, **size)
    fisher = Pipeline(
        [
            (
                "fv",
                DenseSIFT(bin_sizes=[4, 6, 8, 10], steps=3),
                FisherVector(
                    GMMVocabulary(16, pca_components=32, max_descriptors=10000, max_iter=20, random_state=0)
                ),
            )
        ],
        KernelSVC("linear"),
        random_state=0,
    )
    cases = {
        "polygons-hik (rotated)": (polygons_hik(), {"flat": Flat(), "contribution": Contribution()}),
        "fisher-linear": (
            fisher,
            {"flat": Flat(), "contribution-perdimension": Contribution(per_dimension=True)},
        ),
    }
    print(f"180x240 scene, bowlrp from {Path(bowlrp.__file__).parent}; {repeats} paired rounds, process CPU")
    for name, (pipe, rules) in cases.items():
        pipe.fit(train, y)
        for rule in rules.values():  # warm-up (Numba compilation)
            explain_trace(pipe, pipe.forward_one(image), None, rule)
        times = {"decision_function": [], **{r: [] for r in rules}}
        for _ in range(repeats):
            c = time.process_time()
            pipe.decision_function([image])
            times["decision_function"].append(time.process_time() - c)
            for rname, rule in rules.items():
                c = time.process_time()
                explain_trace(pipe, pipe.forward_one(image), None, rule)
                times[rname].append(time.process_time() - c)
        fwd = np.array(times["decision_function"])
        n = len(pipe.forward_one(image).channels[0].descriptors)
        print(f"  {name}: N={n} (first channel), decision_function best {fwd.min() * 1000:.0f} ms")
        for rname in rules:
            t = np.array(times[rname])
            ratios = t / fwd
            print(
                f"    {rname:26s} best {t.min() * 1000:6.0f} ms  ratio of bests {t.min() / fwd.min():.2f}  "
                f"median paired ratio {np.median(ratios):.2f} (range {ratios.min():.2f}-{ratios.max():.2f})"
            )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--contribution", action="store_true", help="the issue-27 pixel-rule cases only")
    args = ap.parse_args(argv)
    if args.contribution:
        contribution_cases(args.repeats)
        return
    train = [scene(s, kind=s % 2) for s in range(8)]
    y = np.arange(8) % 2
    image = scene(100, kind=0)
    print("480x360 image; ratios and memory measured in this run")
    fitted = {}
    for name, pipe in pipelines().items():
        pipe.fit(train, y)
        fitted[name] = pipe
        pipe.explain([image])  # warm-up (Numba compilation)
        t_fwd = best_of(lambda p=pipe: p.decision_function([image]), args.repeats)
        t_exp = best_of(lambda p=pipe: p.explain([image]), args.repeats)
        m_fwd = peak_mb(lambda p=pipe: p.decision_function([image]))
        m_exp = peak_mb(lambda p=pipe: p.explain([image]))
        trace = pipe.forward_one(image)
        n_desc = len(trace.channels[0].descriptors)
        print(
            f"  {name:14s} V={pipe.channel_sizes_[0]:7d} N={n_desc}  decision_function "
            f"{t_fwd * 1000:7.1f} ms  explain {t_exp * 1000:7.1f} ms  ratio {t_exp / t_fwd:.2f}   "
            f"peak memory {m_fwd:6.0f} MB vs {m_exp:6.0f} MB"
        )
    pipe = fitted["fisher-linear"]
    small = scene(101)[:72, :96]
    trace = pipe.forward_one(small)
    ct = trace.channels[0]
    R = np.random.default_rng(0).normal(size=pipe.channel_sizes_[0])
    encoder = pipe.encoders_[0]
    encoder.relevance(R, ct.encoding)
    t_ours = best_of(lambda: encoder.relevance(R, ct.encoding), args.repeats)
    t0 = time.perf_counter()
    naive, nbytes = naive_fisher_relevance(encoder, ct.encoding, R)
    t_naive = time.perf_counter() - t0
    ours = encoder.relevance(R, ct.encoding)
    print(
        f"naive dense-z relevance on a 72x96 image (N={len(ct.descriptors)}, V={R.size}): "
        f"{t_naive * 1000:.0f} ms and a {nbytes / 2**20:.0f} MB z matrix; bowlrp "
        f"{t_ours * 1000:.1f} ms ({t_naive / t_ours:.0f}x faster); max relative difference "
        f"{np.abs(naive - ours).max() / np.abs(ours).max():.1e}"
    )


if __name__ == "__main__":
    main()
