"""Cost of the pixel rules: explain / decision_function with each projection (issue 17).

A synthetic scene (benchmarks/_scenes.py, --height x --width); dense SIFT (VLFeat
backend when cyvlfeat is installed, else OpenCV; unrotated: the separable fast path)
at bin sizes 4/6/8/10, step 3; a rank-mapping HIK pipeline (64 words) and a
Fisher-vector pipeline (PCA 32, GMM 16, linear); and the polygons HIK model's
rotated OpenCV SIFT (bin sizes 6 and 9, step = bin size, 64 words; the per-pixel
kernel);
best of --repeats of wall time and of process CPU time (the CPU time is the fairer
figure on a shared, oversubscribed machine), all ratios measured in this run. The
target is explain <= 1.3 x decision_function with the new projection.

    python benchmarks/bench_pixel_rules.py [--repeats 3] [--pipelines rank-hik,polygons-hik,fisher-linear]
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
from bowlrp.classifier.svm import KernelSVC  # noqa: E402
from bowlrp.explanation import explain_trace  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402
from bowlrp.rules import Contribution, Flat, SIFTBins  # noqa: E402


def best_of(fn, repeats):
    """(best wall seconds, best process CPU seconds) over ``repeats`` calls."""
    wall = cpu = np.inf
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return wall, cpu


def polygons_hik() -> Pipeline:
    """configs/polygons_hik.yaml with 64 words per scale (rotated OpenCV SIFT, b = 6 and 9)."""
    pipe = Pipeline.from_config("polygons_hik")
    for _, _, enc in pipe.channels:
        enc.vocabulary.set_params(n_words=64, max_descriptors=10000)
    return pipe


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--width", type=int, default=480)
    ap.add_argument("--pipelines", default="rank-hik,polygons-hik,fisher-linear")
    args = ap.parse_args(argv)
    sift = DenseSIFT(bin_sizes=[4, 6, 8, 10], steps=3)
    pipes = {
        "rank-hik": (
            Pipeline(
                [
                    (
                        "bow",
                        sift,
                        RankMapping(
                            KMeansVocabulary(64, max_descriptors=10000, random_state=0), base=2.4, n_nearest=8
                        ),
                    )
                ],
                KernelSVC("hik"),
                random_state=0,
            ),
            {},
        ),
        "polygons-hik": (polygons_hik(), {}),
        "fisher-linear": (
            Pipeline(
                [
                    (
                        "fv",
                        sift,
                        FisherVector(
                            GMMVocabulary(
                                16, pca_components=32, max_descriptors=10000, max_iter=20, random_state=0
                            )
                        ),
                    )
                ],
                KernelSVC("linear"),
                random_state=0,
            ),
            {"siftbins": SIFTBins(), "contribution-perdimension": Contribution(per_dimension=True)},
        ),
    }
    pipes = {k: pipes[k] for k in args.pipelines.split(",")}
    size = {"height": args.height, "width": args.width}
    train = [scene(s, kind=s % 2, **size) for s in range(4)]
    y = np.arange(4) % 2
    image = scene(100, kind=0, **size)
    print(
        f"{args.height}x{args.width} image, {' '.join(sys.argv)}; best of {args.repeats} (wall / process CPU)"
    )
    for name, (pipe, extra) in pipes.items():
        pipe.fit(train, y)
        rules = {
            "flat": Flat(),
            "contribution": Contribution(),
            "contribution-noblur": Contribution(through_blur=False),
            "contribution-window": Contribution("window"),
            "contribution-gradient": Contribution("gradient"),
            **extra,
        }
        for rule in rules.values():  # warm-up (Numba compilation)
            explain_trace(pipe, pipe.forward_one(image), None, rule)
        w_fwd, c_fwd = best_of(lambda p=pipe: p.decision_function([image]), args.repeats)
        n = len(pipe.forward_one(image).channels[0].descriptors)
        print(f"  {name}: N={n} descriptors, decision_function {w_fwd * 1000:.0f} / {c_fwd * 1000:.0f} ms")
        for rname, rule in rules.items():
            w, c = best_of(
                lambda p=pipe, r=rule: explain_trace(p, p.forward_one(image), None, r), args.repeats
            )
            print(
                f"    explain with {rname:20s} {w * 1000:7.0f} / {c * 1000:7.0f} ms   ratio "
                f"{w / w_fwd:.2f} / {c / c_fwd:.2f}"
            )


if __name__ == "__main__":
    main()
