"""Peak memory of the classifier stage on memory-mapped float32 features (issue 29).

The VOC experiment keeps its training features in a float32 ``.npy`` opened with
``numpy.lib.format.open_memmap`` (``experiments/voc.py``, ``features_on_disk``): written
a chunk of rows at a time, then read by ``KernelSVC.fit`` (validation, Gram matrix in
column blocks). At VOC 2007 scale (5,011 x 327,680 float32) the file is 6.6 GB; every
page a pass touches counts in the process's resident set unless it is released.

This script writes ``--rows`` x ``--dims`` random float32 features into such a file the
way ``features_on_disk`` does (chunks of 32 rows, flush after each), then fits a linear
``KernelSVC`` on the memory-mapped file as the experiment does (one weight vector per
class: ``fit(..., compress_linear="auto")``, or ``fit`` then ``compress_linear()`` in a
tree without it), each phase in its own child process, and
reports each child's peak resident set (``ru_maxrss``) against the file's size.
``--tree DIR`` runs the children on another copy of the package (e.g. ``git archive``
of an older commit) for a paired comparison in one run.

    python benchmarks/bench_fit_memory.py [--rows 2000] [--dims 327680] [--tree DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

WRITE = """
import resource, sys, time
import numpy as np
from numpy.lib.format import open_memmap
sys.path.insert(0, {tree!r})
from bowlrp._utils import mapped  # noqa: F401  (missing in trees before it existed)
path, n, d, release = {path!r}, {rows}, {dims}, {release}
X = open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
rng = np.random.default_rng(0)
t = time.perf_counter()
for start in range(0, n, 32):
    stop = min(n, start + 32)
    X[start:stop] = rng.random((stop - start, d), dtype=np.float32) - 0.5
    X.flush()
    if release:
        mapped.release_pages(X)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - t)
"""

FIT = """
import resource, sys, time
import numpy as np
sys.path.insert(0, {tree!r})
from bowlrp.classifier.svm import KernelSVC
X = np.load({path!r}, mmap_mode="r")
y = (np.arange(X.shape[0]) % 3 == 0).astype(int)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
svc = KernelSVC(kernel="linear", C=1.0)
try:  # as the VOC experiment fits: one weight vector per class
    svc.fit(X, y, compress_linear="auto")
except TypeError:  # a tree before fit(compress_linear=): fit, then compress
    svc.fit(X, y).compress_linear()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - t, before)
"""


def child(code: str) -> list[float]:
    """Run ``code`` in a fresh interpreter; the numbers it prints."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return [float(v) for v in out.stdout.split()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--dims", type=int, default=327_680)
    ap.add_argument("--tree", action="append", default=[], help="another package tree to compare")
    ap.add_argument(
        "--work", type=Path, default=None, help="folder for the feature file (default: temporary)"
    )
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-fit-memory-", dir=args.work))
    path = work / "features.npy"
    trees = [("current", str(HERE.parent))] + [(Path(t).name, str(Path(t).resolve())) for t in args.tree]
    size_mb = args.rows * args.dims * 4 / 2**20
    print(f"{args.rows} x {args.dims} float32 = {size_mb:,.0f} MB memory-mapped; peak RSS per child process")
    rows = []
    wrote = child(
        WRITE.format(tree=trees[0][1], path=str(path), rows=args.rows, dims=args.dims, release=True)
    )
    wrote_kept = child(
        WRITE.format(tree=trees[0][1], path=str(path), rows=args.rows, dims=args.dims, release=False)
    )
    rows.append(
        {"phase": "write, pages released after each chunk", "peak_rss_mb": wrote[0], "seconds": wrote[1]}
    )
    rows.append({"phase": "write, pages kept", "peak_rss_mb": wrote_kept[0], "seconds": wrote_kept[1]})
    for name, tree in trees:
        fit = child(FIT.format(tree=tree, path=str(path)))
        rows.append(
            {"phase": f"KernelSVC.fit, {name}", "peak_rss_mb": fit[0], "seconds": fit[1], "start_mb": fit[2]}
        )
    print("| phase | peak RSS | seconds |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['phase']} | {r['peak_rss_mb']:,.0f} MB | {r['seconds']:.1f} |")
    (work / "fit_memory.json").write_text(json.dumps({"file_mb": size_mb, "rows": rows}, indent=2))
    path.unlink()
    print(f"-> {work / 'fit_memory.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
