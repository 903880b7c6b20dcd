"""Cost of the randomisation sanity check in explanations per image (issue 26).

The method of the first measurement (BENCHMARKS.md, "Randomisation sanity checks"):
:func:`bowlrp.evaluation.randomisation_check` with LRP against plain
``Pipeline.explain`` of the same images, one image at a time, in one run; the ratio
``check time / explanation time`` is the check's cost in explanations per image
(``layers + 1`` is what the explanations alone cost). The model is ``polygons_hik``
with ``n_words=32`` (two SIFT scales, rank mapping, HIK, lp-norm MKL: three layers
``svm``, ``mkl``, ``vocabulary``) trained on the 75 tiles of ``generate(0, 3)``,
checked on ``--tiles`` tiles (102 x 102) of ``generate(1, 2)`` (the first note used the
10 of ``generate(1, 1)``; two scenes give up to 50).

Two ratios per row: the first note's (the check's time over a separate loop of
explanations just before it), and one measured within the check (its time per image
over the time of one of its own explanations, clocked around ``Pipeline.explain``),
which a load that changes between the two loops does not move. Each row is run
``--repeats`` times, the rows interleaved; medians.

Rows ``before``: the four similarity measures as they were computed before they were
made cheap (SciPy's ``rankdata``, scikit-image's ``structural_similarity`` and
``hog`` per map, kept below as ``BEFORE``), swapped in for the run; rows ``after``:
the measures of :mod:`bowlrp.evaluation.similarity`. Both give the same numbers
(printed: the largest difference between the two runs' similarities).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        python benchmarks/bench_sanity.py [--tiles 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import rankdata
from skimage.feature import hog
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bowlrp import Pipeline  # noqa: E402
from bowlrp.datasets.polygons import generate, tile_dataset  # noqa: E402
from bowlrp.evaluation import similarity  # noqa: E402
from bowlrp.evaluation.randomisation import randomisation_check  # noqa: E402


def _unit(a):
    m = np.abs(np.asarray(a, dtype=np.float64))
    top = float(m.max()) if m.size else 0.0
    return m / top if top > 0 else m


def _ssim_before(a, b):
    side = min(a.shape)
    window = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(a, b, win_size=window, data_range=1.0))


def _hog_before(a):
    cell = min(8, min(a.shape) // 2)
    return hog(_unit(a), orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2))


#: the measures as computed before (features once per map, compared per pair)
BEFORE = {
    "spearman": similarity.Measure("spearman", lambda a: rankdata(np.abs(a).ravel()), similarity.pearson),
    "spearman-signed": similarity.Measure(
        "spearman-signed", lambda a: rankdata(a.ravel()), similarity.pearson
    ),
    "ssim": similarity.Measure("ssim", _unit, _ssim_before),
    "hog": similarity.Measure("hog", _hog_before, similarity.pearson),
}


def clocks():
    return time.perf_counter(), time.process_time()


class ExplainClock:
    """Adds up the time the check spends in ``Pipeline.explain`` (every call of the LRP
    explainer inside :func:`randomisation_check`), so the check's cost in explanations is
    measured within the same call (a load that changes between two loops does not move it)."""

    def __init__(self):
        self.wall = self.cpu = 0.0
        self.maps = 0
        self.real = Pipeline.explain

    def __enter__(self):
        clock = self

        def timed(model, images, *args, **kwargs):
            w, c = clocks()
            out = clock.real(model, images, *args, **kwargs)
            w1, c1 = clocks()
            clock.wall += w1 - w
            clock.cpu += c1 - c
            clock.maps += len(images)
            return out

        Pipeline.explain = timed
        return self

    def __exit__(self, *exc):
        Pipeline.explain = self.real


def one_row(model, test, mode, measures, code, after) -> dict:
    """One check with the ``before`` or ``after`` measures; its times and ratios."""
    similarity._MEASURES.update(BEFORE if code == "before" else after)
    try:
        w0, c0 = clocks()
        for im in test:
            model.explain([im])
        w1, c1 = clocks()
        with ExplainClock() as inside:
            r = randomisation_check(model, test, "lrp", mode=mode, verbose=False, measures=measures)
        w2, c2 = clocks()
    finally:
        similarity._MEASURES.update(after)
    n = len(test)
    return {
        "result": r,
        "explain": ((w1 - w0) / n, (c1 - c0) / n),
        "check": ((w2 - w1) / n, (c2 - c1) / n),
        # the first note's method: the check against a separate loop of explanations
        "ratio": ((w2 - w1) / (w1 - w0), (c2 - c1) / (c1 - c0)),
        # within the check: its time over the time of one of its own explanations
        "inside": ((w2 - w1) / n / (inside.wall / inside.maps), (c2 - c1) / n / (inside.cpu / inside.maps)),
        "outside": ((w2 - w1 - inside.wall) / n, (c2 - c1 - inside.cpu) / n),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="rounds over the rows (interleaved); medians")
    args = ap.parse_args(argv)
    train, y = tile_dataset(generate(0, 3))
    test = tile_dataset(generate(1, 2))[0][: args.tiles]
    model = Pipeline.from_config("polygons_hik", n_words=32).fit(train, y)
    model.explain(test[:1])  # compile / warm up
    after = dict(similarity._MEASURES)
    rng = np.random.default_rng(0)
    for measure in after.values():  # compile the Numba kernels before timing
        measure(rng.normal(size=(102, 102)), rng.normal(size=(102, 102)))
    rows = [
        ("cascading", ("spearman",), "after"),
        ("cascading", None, "before"),
        ("cascading", None, "after"),
        ("independent", None, "before"),
        ("independent", None, "after"),
    ]
    found: dict = {row: [] for row in rows}
    for _ in range(args.repeats):
        for row in rows:
            found[row].append(one_row(model, test, *row, after))

    def med(row, key, k):
        return float(np.median([f[key][k] for f in found[row]]))

    print(
        f"{len(test)} tiles of {test[0].shape}, {args.repeats} rounds (medians); "
        f"python {sys.version.split()[0]}"
    )
    print(
        "| mode | measures | code | one explanation / image (CPU) | check / image (CPU) | check outside its "
        "explanations / image (CPU) | ratio check / explanation, separate loop (wall, CPU) | ratio within "
        "the check (wall, CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        mode, measures, code = row
        layers = len(found[row][0]["result"].layers)
        print(
            f"| {mode} | {'all four' if measures is None else ', '.join(measures)} | {code} | "
            f"{med(row, 'explain', 1) * 1e3:.1f} ms | {med(row, 'check', 1) * 1e3:.1f} ms | "
            f"{med(row, 'outside', 1) * 1e3:.1f} ms | "
            f"{med(row, 'ratio', 0):.2f}, {med(row, 'ratio', 1):.2f} | "
            f"**{med(row, 'inside', 0):.2f}, {med(row, 'inside', 1):.2f}** (layers + 1 = {layers + 1}) |"
        )
    for mode in ("cascading", "independent"):
        a = found[(mode, None, "before")][0]["result"]
        b = found[(mode, None, "after")][0]["result"]
        worst = max(float(np.max(np.abs(a.measures[m] - b.measures[m]))) for m in a.measures)
        print(
            f"{mode}: largest difference between before and after, over every measure, layer and "
            f"image: {worst:.3g}"
        )
        print(f"{mode}: LRP passes: {b.passed}; mean Spearman |R| per layer {np.round(b.mean(), 3).tolist()}")


if __name__ == "__main__":
    main()
