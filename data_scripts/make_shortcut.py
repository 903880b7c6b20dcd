"""Generate the planted-shortcut data set (nothing is downloaded).

    python data_scripts/make_shortcut.py --out data/shortcut --train 60 --test 40 --share 0.5 --seed 0

writes ``train_NNNN.png`` / ``test_NNNN.png`` (64 x 64 grey; class 0 first,
then class 1) and ``train_labels.csv`` / ``test_labels.csv`` (file, label,
artefact, stamp box). A share of the class-1 images carries a stamp near the
lower-left corner that a classifier can learn as a shortcut. Importable: the
functions live in :mod:`bowlrp.datasets.shortcut` and are re-exported here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bowlrp.datasets.shortcut import (
    generate,
    save_samples,
)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/shortcut")
    ap.add_argument("--train", type=int, default=60, help="training images per class")
    ap.add_argument("--test", type=int, default=40, help="test images per class")
    ap.add_argument("--share", type=float, default=0.5, help="share of class-1 images with the stamp")
    ap.add_argument(
        "--signal",
        type=float,
        default=0.8,
        help="probability that a shape is of its class's kind (discs for 1, squares for 0)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    train = generate(args.seed, args.train, args.share, signal=args.signal)
    test = generate(args.seed + 1000, args.test, args.share, signal=args.signal)
    save_samples(train, out, "train")
    save_samples(test, out, "test")
    print(f"wrote {len(train)} training and {len(test)} test images to {out}")


if __name__ == "__main__":
    main()
