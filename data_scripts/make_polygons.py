"""Generate the polygons-versus-round-shapes data set (nothing is downloaded).

    python data_scripts/make_polygons.py --out data/polygons --train 40 --test 6 --seed 0

writes ``train_NNN.png`` / ``test_NNN.png`` scenes with ``_mask.png`` (shape id
per pixel) and ``.json`` (shape table), and ``train_labels.csv`` with one row
per non-overlapping 102 x 102 training crop. Importable: the functions live in
:mod:`bowlrp.datasets.polygons` and are re-exported here.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from bowlrp.datasets.polygons import (
    generate,
    save_scenes,
    training_crops,
)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/polygons")
    ap.add_argument("--train", type=int, default=40, help="training scenes")
    ap.add_argument("--test", type=int, default=6, help="test scenes")
    ap.add_argument("--size", type=int, default=510, help="scene side in pixels")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    train = generate(args.seed, args.train, args.size, args.size)
    test = generate(args.seed + 1, args.test, args.size, args.size)
    save_scenes(train, out, "train")
    save_scenes(test, out, "test")
    with open(out / "train_labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["scene", "row", "col", "label"])
        for i, s in enumerate(train):
            _, labels, origins = training_crops(s)
            for (r, c), y in zip(origins, labels):
                writer.writerow([f"train_{i:03d}", r, c, int(y)])
    print(f"wrote {len(train)} training and {len(test)} test scenes to {out}")


if __name__ == "__main__":
    main()
