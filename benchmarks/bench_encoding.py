"""Descriptor extraction and Fisher encoding on a 480x360 image (issue 2).

Prints descriptor count and extraction time at the PASCAL setting (bin sizes
4, 6, 8, 10, step 3) for each backend, and Fisher encoding time for K = 256,
D = 80 with bowlrp and with VLFeat's ``fisher`` on the same inputs, as a ratio
measured in one run (best of ``--repeats``).

    python benchmarks/bench_encoding.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import scene  # noqa: E402

from bowlrp import DenseSIFT, FisherVector, GMMVocabulary  # noqa: E402
from bowlrp.descriptors import Descriptors, vlfeat_available  # noqa: E402


def best_of(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    image = scene(0)
    backends = ["opencv"] + (["vlfeat"] if vlfeat_available() else [])
    descriptors = None
    print("image 360x480, dense SIFT bin sizes 4/6/8/10, step 3")
    for backend in backends:
        ex = DenseSIFT(bin_sizes=[4, 6, 8, 10], steps=3, backend=backend).fit()
        ex.describe(image)  # warm-up
        t, d = best_of(lambda ex=ex: ex.describe(image), args.repeats)
        print(f"  {backend:7s} descriptors {len(d):6d}   extraction {t * 1000:7.1f} ms")
        descriptors = d
    from sklearn.decomposition import PCA

    # PCA 128 -> 80 done once up front, so that bowlrp and VLFeat encode identical inputs
    train = [DenseSIFT(backend=backends[-1]).describe(scene(s)) for s in (1, 2)]
    pca = PCA(80, random_state=0).fit(np.vstack([d.data for d in train]))

    def reduced(d):
        return Descriptors(
            pca.transform(d.data), d.centers, d.half_widths, d.orientations, d.shapes, d.scales, d.image_shape
        )

    fv = FisherVector(
        GMMVocabulary(256, max_descriptors=30000, max_iter=20, random_state=0), normalization="power+l2"
    ).fit([reduced(d) for d in train])
    d80 = reduced(descriptors)
    projected = d80.data.astype(np.float64)
    v = fv.vocabulary_
    fv.encode_one(d80)  # warm-up (Numba)
    t_ours, (x_ours, _) = best_of(lambda: fv.encode_one(d80), args.repeats)
    print(f"Fisher encoding K=256 D=80 N={len(d80)}: bowlrp {t_ours * 1000:7.1f} ms")
    if vlfeat_available():
        from cyvlfeat.fisher import fisher

        args_v = (
            projected.astype(np.float32),
            v.means_.astype(np.float32),
            v.covariances_.astype(np.float32),
            v.weights_.astype(np.float32),
        )
        fisher(*args_v, improved=True)
        t_vl, x_vl = best_of(lambda: fisher(*args_v, improved=True), args.repeats)
        print(
            f"  VLFeat fisher (float32) {t_vl * 1000:7.1f} ms; ratio bowlrp / VLFeat = "
            f"{t_ours / t_vl:.2f}; max |difference| {np.abs(x_ours - x_vl).max():.2e}"
        )
        args_64 = tuple(a.astype(np.float64) for a in args_v[:1]) + (v.means_, v.covariances_, v.weights_)
        t_vl64, _ = best_of(lambda: fisher(*args_64, improved=True), args.repeats)
        print(
            f"  VLFeat fisher (float64) {t_vl64 * 1000:7.1f} ms; ratio bowlrp / VLFeat = "
            f"{t_ours / t_vl64:.2f}"
        )


if __name__ == "__main__":
    main()
