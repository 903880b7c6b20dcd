"""Cost of the pixel rules: explain / decision_function with each projection (issue 17).

A 480x360 synthetic scene (benchmarks/_scenes.py); dense SIFT (OpenCV backend unless
cyvlfeat is installed) at bin sizes 4/6/8/10, step 3; a rank-mapping HIK pipeline
(128 words) and a Fisher-vector pipeline (PCA 32, GMM 32, linear); best of
--repeats, all ratios measured in this run. The target is explain <= 1.3 x
decision_function with the new projection.

    python benchmarks/bench_pixel_rules.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import scene  # noqa: E402

from bowlrp import DenseSIFT, FisherVector, GMMVocabulary, KMeansVocabulary, RankMapping  # noqa: E402
from bowlrp.explanation import explain_trace  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402
from bowlrp.rules import Contribution, Flat, SIFTBins  # noqa: E402
from bowlrp.svm import KernelSVC  # noqa: E402


def best_of(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    sift = DenseSIFT(bin_sizes=[4, 6, 8, 10], steps=3)
    pipes = {
        "rank-hik": (Pipeline([("bow", sift, RankMapping(
            KMeansVocabulary(128, max_descriptors=20000, random_state=0), base=2.4, n_nearest=8))],
            KernelSVC("hik"), random_state=0), {}),
        "fisher-linear": (Pipeline([("fv", sift, FisherVector(
            GMMVocabulary(32, pca_components=32, max_descriptors=20000, max_iter=20, random_state=0)))],
            KernelSVC("linear"), random_state=0), {"siftbins": SIFTBins()}),
    }
    train = [scene(s, kind=s % 2) for s in range(6)]
    y = np.arange(6) % 2
    image = scene(100, kind=0)
    print(f"480x360 image, {sys.argv[0]} --repeats {args.repeats}; times are best of the repeats")
    for name, (pipe, extra) in pipes.items():
        pipe.fit(train, y)
        rules = {"flat": Flat(), "contribution": Contribution(),
                 "contribution-noblur": Contribution(through_blur=False),
                 "contribution-window": Contribution("window"), **extra}
        for rule in rules.values():  # warm-up (Numba compilation)
            explain_trace(pipe, pipe.forward_one(image), None, rule)
        t_fwd = best_of(lambda p=pipe: p.decision_function([image]), args.repeats)
        n = len(pipe.forward_one(image).channels[0].descriptors)
        print(f"  {name}: N={n} descriptors, decision_function {t_fwd * 1000:.0f} ms")
        for rname, rule in rules.items():
            t = best_of(lambda p=pipe, r=rule: explain_trace(p, p.forward_one(image), None, r),
                        args.repeats)
            print(f"    explain with {rname:20s} {t * 1000:7.0f} ms   ratio {t / t_fwd:.2f}")


if __name__ == "__main__":
    main()
