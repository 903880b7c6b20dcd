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

``--baseline PATH`` (a ``contribution_rotated.py`` of another checkout) adds, for
``polygons-hik``, the rotated per-descriptor kernel alone: its calls during one explain
with ``Contribution()`` are recorded, then replayed in ``--repeats`` interleaved rounds
through this checkout's ``project_rotated_scalar`` and the baseline's (process CPU; the
maps must agree to 1e-9), and the median of the paired ratios is printed.

    python benchmarks/bench_pixel_rules.py [--repeats 3] [--pipelines rank-hik,polygons-hik,fisher-linear]
    python benchmarks/bench_pixel_rules.py --pipelines polygons-hik --repeats 15 \
        --baseline /tmp/before_d1d/bowlrp/descriptors/contribution_rotated.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import scene  # noqa: E402

import bowlrp.descriptors.contribution as contribution_module  # noqa: E402
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


def rotated_kernel_pair(pipe: Pipeline, image: np.ndarray, baseline: str, repeats: int) -> str:
    """Paired CPU time of ``project_rotated_scalar``: this checkout's against ``baseline``'s.

    The kernel's calls during one explain with ``Contribution()`` are recorded (arguments
    copied), then replayed in ``repeats`` interleaved rounds, each on a fresh zero map.
    Returns the report line: per-explain milliseconds (best) and the median paired ratio.
    """
    spec = importlib.util.spec_from_file_location("baseline_contribution_rotated", baseline)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    new = contribution_module.project_rotated_scalar
    calls = []

    def record(*args):
        calls.append([np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args])
        return new(*args)

    contribution_module.project_rotated_scalar = record
    try:
        explain_trace(pipe, pipe.forward_one(image), None, Contribution())
    finally:
        contribution_module.project_rotated_scalar = new

    def replay(kernel):
        maps = []
        for args in calls:
            out = np.zeros_like(args[6])
            left = kernel(*args[:6], out, args[7])
            maps.append((out, left))
        return maps

    for (a, la), (b, lb) in zip(replay(new), replay(old.project_rotated_scalar)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * max(np.abs(b).max(), 1e-300))
        np.testing.assert_allclose(la, lb, rtol=1e-9, atol=1e-15)
    t_new, t_old = [], []
    for _ in range(repeats):
        for kernel, times in ((new, t_new), (old.project_rotated_scalar, t_old)):
            c = time.process_time()
            replay(kernel)
            times.append(time.process_time() - c)
    ratio = np.array(t_new) / np.array(t_old)
    n = sum(len(a[0]) for a in calls)
    return (
        f"    rotated kernel ({len(calls)} calls, {n} descriptors): this {min(t_new) * 1000:.1f} ms, "
        f"baseline {min(t_old) * 1000:.1f} ms (best); paired ratio this / baseline median "
        f"{np.median(ratio):.3f} (range {ratio.min():.3f}-{ratio.max():.3f}); maps equal to 1e-9"
    )


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
    ap.add_argument("--baseline", help="contribution_rotated.py of another checkout (paired kernel timing)")
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
        if args.baseline and name == "polygons-hik":
            print(rotated_kernel_pair(pipe, image, args.baseline, args.repeats))


if __name__ == "__main__":
    main()
