"""Does a fresh run of ``make polygons-experiment`` reproduce the committed snapshot?

    python experiments/snapshot_check.py experiments/results/polygons/metrics.json

compares a fresh ``metrics.json`` with ``experiments/polygons_metrics.json`` field by
field and prints every difference (exit code 1 if there is one).

What must match, and how closely:

* **exactly**: every string, boolean, ``None`` and integer, i.e. the schema, the
  settings, the data set sizes, the number of support vectors, the tile counts, the
  kernel names and the polygon / round-shape counts. These are decisions (which
  crops, which support vectors), and a different decision is a different result;
* **within a relative tolerance of 1e-6** (:data:`RTOL`, with an absolute floor of
  :data:`ATOL` for values near zero): every other number (accuracies, kernel
  weights, AOPC and their standard errors, relevance shares, Taylor residuals).
  On one machine with the pinned libraries two runs are byte-identical; the
  tolerance leaves room for the last bits that another BLAS or CPU may round
  differently, and for nothing more: the smallest real change measured (an
  accuracy moving by one tile of 1014) is 1e-3.

Timings are not compared; they live in ``timings.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent / "polygons_metrics.json"
#: Relative tolerance of real-valued results (see the module docstring).
RTOL = 1e-6
#: Absolute tolerance for real values near zero (e.g. a Taylor residual of 4e-10).
ATOL = 1e-9


def _exact(value) -> bool:
    return value is None or isinstance(value, (str, bool, int))


def differences(snapshot, fresh, path: str = "") -> list[str]:
    """Every field where ``fresh`` differs from ``snapshot`` beyond what is allowed.

    Parameters
    ----------
    snapshot, fresh : the two parsed ``metrics.json`` documents
    path : str
        Where in the document these values sit (for the messages).

    Returns
    -------
    list of str
        One line per difference, ``"models.hik.n_support_vectors: 498 != 497"``; empty if
        ``fresh`` reproduces ``snapshot``.
    """
    where = path or "(top)"
    if isinstance(snapshot, dict) and isinstance(fresh, dict):
        out = []
        for key in sorted(set(snapshot) | set(fresh)):
            name = f"{path}.{key}" if path else str(key)
            if key not in fresh:
                out.append(f"{name}: missing from the fresh run")
            elif key not in snapshot:
                out.append(f"{name}: not in the snapshot")
            else:
                out.extend(differences(snapshot[key], fresh[key], name))
        return out
    if isinstance(snapshot, list) and isinstance(fresh, list):
        if len(snapshot) != len(fresh):
            return [f"{where}: {len(snapshot)} items != {len(fresh)}"]
        out = []
        for i, (a, b) in enumerate(zip(snapshot, fresh)):
            out.extend(differences(a, b, f"{path}[{i}]"))
        return out
    if _exact(snapshot) or _exact(fresh):
        same = snapshot == fresh and type(snapshot) is type(fresh)
        return [] if same else [f"{where}: {snapshot!r} != {fresh!r} (must match exactly)"]
    if isinstance(snapshot, float) and isinstance(fresh, float):
        if math.isclose(snapshot, fresh, rel_tol=RTOL, abs_tol=ATOL):
            return []
        return [f"{where}: {snapshot!r} != {fresh!r} (relative tolerance {RTOL:g})"]
    return [f"{where}: {snapshot!r} and {fresh!r} are of different kinds"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fresh", type=Path, help="metrics.json of a fresh run")
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT, help="the committed snapshot")
    args = parser.parse_args(argv)
    found = differences(json.loads(args.snapshot.read_text()), json.loads(args.fresh.read_text()))
    for line in found:
        print(line)
    print(f"{len(found)} difference(s) between {args.snapshot} and {args.fresh}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
