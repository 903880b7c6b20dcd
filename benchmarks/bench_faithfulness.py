"""Incremental re-encoding versus full re-extraction for the faithfulness metrics (issue 26).

On a 480x360 scene with the pipelines of bench_relevance.py (one thread), each
metric is run once through incremental re-encoding (``incremental=True``, the
default), and the time a full re-extraction per evaluation would take is measured
in the same run: ``--full`` forward passes of perturbed copies of the image
(``IncrementalImage.full_score``, what ``incremental=False`` calls per step).

    speed-up = (evaluations + 1) x (seconds per full pass) / (seconds of the incremental run)

The ``+ 1`` is the forward pass every run starts with; the incremental run's own
time includes it, so the ratio is the whole metric's, not a step's. A short
``incremental=False`` run of pixel flipping and ROAD checks that both paths give
the same curve (max relative difference printed).

    python benchmarks/bench_faithfulness.py [--full 3] [--pipelines rank-hik,fisher-linear]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import scene  # noqa: E402
from bench_relevance import pipelines  # noqa: E402

from bowlrp.evaluation import IncrementalImage, faithfulness_correlation, irof, pixel_flipping, road  # noqa: E402

CASES = {
    # name: (function, keyword arguments, whether the full-pass run is measured, not estimated)
    "pixel flipping, MoRF, 100 steps of 173 px (10 % of the image)": (
        pixel_flipping,
        {"steps": 100, "fraction": 0.1},
        False,
    ),
    "IROF, 200 SLIC segments (~860 px each)": (irof, {"n_segments": 200}, False),
    "ROAD MoRF, 1, 2, 5 % removed": (road, {"fractions": (0.01, 0.02, 0.05)}, True),
    "ROAD MoRF, 10 ... 90 % removed (ROAD's fractions)": (road, {}, True),
    "faithfulness correlation, 10 subsets of 224 px": (faithfulness_correlation, {"runs": 10}, True),
}


def full_pass_seconds(pipe, image, n: int) -> float:
    """Seconds per full forward pass of a perturbed copy (median of ``n``)."""
    state = IncrementalImage(pipe, image)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(n):
        state.image = np.clip(image + rng.normal(0, 0.01, image.shape), 0, 1)
        t0 = time.perf_counter()
        state.full_score()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", type=int, default=3, help="full forward passes timed (median)")
    ap.add_argument("--pipelines", default="rank-hik,fisher-linear")
    args = ap.parse_args(argv)
    train = [scene(s, kind=s % 2) for s in range(8)]
    y = np.arange(8) % 2
    image = scene(100, kind=0)
    wanted = args.pipelines.split(",")
    with threadpool_limits(1):
        for name, pipe in pipelines().items():
            if name not in wanted:
                continue
            pipe.fit(train, y)
            explanation = pipe.explain([image])[0]  # the predicted class (IROF needs f(x) > 0)
            heat, target = explanation.heatmap, explanation.target
            t_full = full_pass_seconds(pipe, image, args.full)
            print(f"\n{name}: full forward pass {t_full * 1000:.0f} ms (median of {args.full})")
            print("| metric | evaluations | incremental run | full re-extraction run | speed-up |")
            print("|---|---|---|---|---|")
            for label, (fn, kw, measured) in CASES.items():
                t0 = time.perf_counter()
                r = fn(pipe, [image], maps=[heat], target=target, **kw)
                t_inc = time.perf_counter() - t0
                n = r.curves.shape[-1] - (0 if fn is faithfulness_correlation else 1)
                if measured:
                    t0 = time.perf_counter()
                    full = fn(pipe, [image], maps=[heat], target=target, incremental=False, **kw)
                    t_ref = time.perf_counter() - t0
                    same = np.allclose(full.curves, r.curves, rtol=1e-6, atol=1e-9)
                    how = f"{t_ref:.1f} s (measured; same curve: {same})"
                else:
                    t_ref = (n + 1) * t_full
                    how = f"{t_ref:.1f} s (estimated: {n + 1} passes)"
                print(f"| {label} | {n} | {t_inc:.1f} s | {how} | **{t_ref / t_inc:.1f}x** |", flush=True)
            pf = pixel_flipping(pipe, [image], maps=[heat], target=target, steps=100, fraction=0.1)
            pf_full = pixel_flipping(
                pipe, [image], maps=[heat], target=target, steps=2, fraction=0.002, incremental=False
            )
            rd = road(pipe, [image], maps=[heat], target=target, fractions=(0.01, 0.02))
            rd_full = road(
                pipe, [image], maps=[heat], target=target, fractions=(0.01, 0.02), incremental=False
            )
            d_pf = np.abs(pf.curves[0, :3] - pf_full.curves[0]).max() / np.abs(pf_full.curves[0]).max()
            d_rd = np.abs(rd.curves[0] - rd_full.curves[0]).max() / np.abs(rd_full.curves[0]).max()
            print(f"max relative difference incremental vs full: pixel flipping {d_pf:.1e}, ROAD {d_rd:.1e}")


if __name__ == "__main__":
    main()
