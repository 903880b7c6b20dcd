"""Write the generated VOC-format data set (bowlrp.datasets.voc_like).

    python data_scripts/make_voc_like.py --out data/voc_like [--trainval 200 --test 200 --seed 0]
    python data_scripts/make_voc_like.py --out data/voc20 --classes 20 --trainval 700 --test 300

Then e.g. ``bowlrp-train --config voc_small --data data/voc_like --classes disc --out m.pkl``
or ``make voc-experiment VOC_ROOT=data/voc_like CONFIG=voc_small``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bowlrp.datasets.voc_like import CLASSES, CLASSES_20, make_voc_like  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="root to create (JPEGImages/, Annotations/, ImageSets/)")
    ap.add_argument("--trainval", type=int, default=100)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--height", type=int, default=375)
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument(
        "--classes",
        type=int,
        choices=(4, 20),
        default=4,
        help="4 shapes (default) or 20 classes as in VOC (five shapes x four colour families)",
    )
    args = ap.parse_args(argv)
    classes = CLASSES_20 if args.classes == 20 else CLASSES
    root = make_voc_like(
        args.out,
        args.trainval,
        args.test,
        args.seed,
        (args.height, args.width),
        classes=classes,
        progress=True,
    )
    print(f"VOC-format data set in {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
