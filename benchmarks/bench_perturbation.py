"""Incremental re-encoding versus full recomputation for region perturbation (issue 6).

A 100-step x 10-repeat MoRF curve (9 x 9 blocks, uniform noise) on a 480x360
image with the pipelines of bench_relevance.py; the full recomputation is timed
on the first --full-steps steps of the same curve (1000 full passes would take
about as many seconds), and the speed-up is the ratio of the per-step times
measured in this run. Also checks that both paths give the same f. Each
incremental curve starts with a forward pass of the image; the second line
per pipeline times the same curves started from one shared state (copied per
curve), as ``region_perturbation`` runs the curves of an image, and checks
that they are identical.

    python benchmarks/bench_perturbation.py [--steps 100 --repeats 10 --full-steps 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import scene  # noqa: E402
from bench_relevance import pipelines  # noqa: E402

from bowlrp.evaluation import IncrementalImage  # noqa: E402
from bowlrp.evaluation.perturbation import (
    block_grid,
    block_scores,
    make_perturbation,
    order_blocks,
    perturbation_curve,
)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--full-steps", type=int, default=10)
    args = ap.parse_args(argv)
    train = [scene(s, kind=s % 2) for s in range(8)]
    y = np.arange(8) % 2
    image = scene(100, kind=0)
    noise = make_perturbation("uniform")
    print(f"480x360 image, MoRF, {args.steps} steps x {args.repeats} repeats, 9x9 blocks")
    for name, pipe in pipelines().items():
        pipe.fit(train, y)
        heat = pipe.explain([image], target=1)[0].heatmap
        blocks = block_grid(image.shape, 9)
        order = order_blocks(block_scores(heat, blocks), "morf", np.random.default_rng(0))
        perturbation_curve(pipe, image, order, blocks, 2, noise, np.random.default_rng(0), 1)  # warm-up
        t0 = time.perf_counter()
        curves = [
            perturbation_curve(
                pipe, image, order, blocks, args.steps, noise, np.random.default_rng(r), target=1
            )
            for r in range(args.repeats)
        ]
        t_inc = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = perturbation_curve(
            pipe,
            image,
            order,
            blocks,
            args.full_steps,
            noise,
            np.random.default_rng(0),
            target=1,
            incremental=False,
        )
        t_full = time.perf_counter() - t0
        per_inc = t_inc / (args.steps * args.repeats)
        per_full = t_full / args.full_steps
        diff = np.abs(curves[0][: args.full_steps + 1] - full).max() / np.abs(full).max()
        print(
            f"  {name:14s} incremental curve set {t_inc:7.1f} s ({per_inc * 1000:6.1f} ms/step); "
            f"full recomputation {per_full * 1000:7.1f} ms/step; speed-up {per_full / per_inc:5.1f}x; "
            f"max relative difference {diff:.1e}"
        )
        t0 = time.perf_counter()
        start = IncrementalImage(pipe, image, 1)
        shared = [
            perturbation_curve(
                pipe, image, order, blocks, args.steps, noise, np.random.default_rng(r), target=1, start=start
            )
            for r in range(args.repeats)
        ]
        t_shared = time.perf_counter() - t0
        per_shared = t_shared / (args.steps * args.repeats)
        same = all(np.array_equal(a, b) for a, b in zip(shared, curves))
        print(
            f"  {'':14s} shared start          {t_shared:7.1f} s ({per_shared * 1000:6.1f} ms/step); "
            f"speed-up {per_full / per_shared:5.1f}x; curves identical: {same}"
        )


if __name__ == "__main__":
    main()
