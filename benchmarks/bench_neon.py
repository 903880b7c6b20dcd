"""Cost of NEON inside the descriptor (issue 27, docs/neon.md) against the forward pass.

On a 180x240 scene (``_scenes.scene``), three word pipelines:

- ``polygons-hik``: configs/polygons_hik.yaml with 64 words per scale (rotated OpenCV
  SIFT, b = 6 and 9, rank mapping n = 4, HIK), as ``bench_relevance.py --contribution``;
- ``rank-512``: dense SIFT 4/6/8/10 step 3, 512 words, rank mapping base 2.4, n = 8, HIK;
- ``soft-64-all``: the same SIFT, 64 words, soft assignment over all 64 words (s = V).

Per pipeline, in ``--repeats`` rounds of paired calls (process CPU time): decision_function,
then explain with ``Flat()``, ``Contribution()`` (per descriptor) and ``Neon()`` +
``Contribution(per_dimension=True)``: the median of the per-round ratios to
decision_function and their range. Then the encoder step alone, summed over channels:
``encoder.relevance`` per descriptor, with NEON per dimension (plus the PCA step when there
is one), and the encoder's forward pass ``encode_one`` — NEON's extra cost in forward passes.

One thread: the BLAS / OpenMP / Numba thread counts are set to 1 before numpy is imported
(as in ``bench_defaults.py``). NEON's cost is BLAS products; with the default thread count
on a loaded 2-core machine the idle BLAS thread's spinning was counted as process CPU time
(rank-512: NEON 9.5 x ``encode_one`` with the default threads, 3.1 x with one, same load).

    python benchmarks/bench_neon.py [--repeats 5]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import scene  # noqa: E402
from bench_pixel_rules import polygons_hik  # noqa: E402

import bowlrp  # noqa: E402
from bowlrp import DenseSIFT, KMeansVocabulary, RankMapping, SoftAssignment  # noqa: E402
from bowlrp.classifier.svm import KernelSVC  # noqa: E402
from bowlrp.explanation import explain_trace  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402
from bowlrp.rules import Contribution, Epsilon, Flat, Neon  # noqa: E402

RULES = {
    "flat": Flat(),
    "contribution": Contribution(),
    "neon+contribution-perdim": [Neon(), Contribution(per_dimension=True)],
}


def pipelines() -> dict:
    sift = DenseSIFT(bin_sizes=[4, 6, 8, 10], steps=3)
    return {
        "polygons-hik": polygons_hik(),
        "rank-512": Pipeline(
            [
                (
                    "bow",
                    sift,
                    RankMapping(
                        KMeansVocabulary(512, max_descriptors=20000, random_state=0), base=2.4, n_nearest=8
                    ),
                )
            ],
            KernelSVC("hik"),
            random_state=0,
        ),
        "soft-64-all": Pipeline(
            [
                (
                    "bow",
                    sift,
                    SoftAssignment(KMeansVocabulary(64, max_descriptors=10000, random_state=0), beta=2.0),
                )
            ],
            KernelSVC("hik"),
            random_state=0,
        ),
    }


def encoder_step(pipe, trace, R_dims):
    """CPU seconds of (per-descriptor relevance, NEON per dimension + PCA, forward encoding)."""
    t_plain = t_neon = t_fwd = 0.0
    for u, ct in enumerate(trace.channels):
        enc = pipe.encoders_[u]
        R = R_dims[pipe.classifier_.channel_slices_[u]]
        c = time.process_time()
        enc.relevance(R, ct.encoding, Epsilon(0.0))
        t_plain += time.process_time() - c
        c = time.process_time()
        _, per_dim = enc.relevance(R, ct.encoding, Neon(), per_dimension=True)
        enc.vocabulary_.relevance(per_dim, ct.descriptors)
        t_neon += time.process_time() - c
        c = time.process_time()
        enc.encode_one(ct.descriptors)
        t_fwd += time.process_time() - c
    return t_plain, t_neon, t_fwd


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pipelines", default=",".join(pipelines()))
    args = ap.parse_args(argv)
    size = {"height": 180, "width": 240}
    train = [scene(s, kind=s % 2, **size) for s in range(4)]
    y = np.arange(4) % 2
    image = scene(100, kind=0, **size)
    print(
        f"180x240 scene, bowlrp from {Path(bowlrp.__file__).parent}; "
        f"{args.repeats} paired rounds, process CPU"
    )
    wanted = args.pipelines.split(",")
    for name, pipe in pipelines().items():
        if name not in wanted:
            continue
        pipe.fit(train, y)
        for rule in RULES.values():  # warm-up (Numba compilation)
            explain_trace(pipe, pipe.forward_one(image), None, rule)
        times = {"decision_function": [], **{r: [] for r in RULES}}
        step = {"per descriptor": [], "neon per dimension": [], "encode_one": []}
        for _ in range(args.repeats):
            c = time.process_time()
            pipe.decision_function([image])
            times["decision_function"].append(time.process_time() - c)
            for rname, rule in RULES.items():
                c = time.process_time()
                explain_trace(pipe, pipe.forward_one(image), None, rule)
                times[rname].append(time.process_time() - c)
            trace = pipe.forward_one(image)
            dims = explain_trace(pipe, trace, None, Flat())
            R_dims = np.concatenate([ch.dimension_relevance for ch in dims.channels])
            for key, t in zip(step, encoder_step(pipe, trace, R_dims)):
                step[key].append(t)
        fwd = np.array(times["decision_function"])
        n = sum(len(ch.descriptors) for ch in pipe.forward_one(image).channels)
        print(f"  {name}: N={n} descriptors (all channels), decision_function best {fwd.min() * 1000:.0f} ms")
        for rname in RULES:
            ratios = np.array(times[rname]) / fwd
            print(
                f"    explain {rname:26s} best {min(times[rname]) * 1000:6.0f} ms  median paired ratio "
                f"{np.median(ratios):.2f} (range {ratios.min():.2f}-{ratios.max():.2f})"
            )
        enc_fwd = np.array(step["encode_one"])
        for key in ("per descriptor", "neon per dimension"):
            ratios = np.array(step[key]) / enc_fwd
            print(
                f"    encoder relevance {key:20s} best {min(step[key]) * 1000:6.1f} ms  / encode_one "
                f"(best {enc_fwd.min() * 1000:.1f} ms): median {np.median(ratios):.2f} "
                f"(range {ratios.min():.2f}-{ratios.max():.2f})"
            )


if __name__ == "__main__":
    main()
