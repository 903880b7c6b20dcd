"""One polygons tile explained per descriptor (Flat, Contribution) and inside it (NEON).

    python experiments/neon_figure.py [--out docs/neon_polygons.png] [--model FILE]

Trains configs/polygons_hik.yaml with 64 words per scale (instead of 128, for speed) on
the non-overlapping 102 x 102 crops of ``--train-scenes`` generated scenes (seed 0),
or loads ``--model``; takes the positive tile of a held-out scene (seed 1) with the
highest score and draws, side by side: the tile, ``Flat()`` (the default pixel rule),
``Contribution()`` per descriptor and ``Neon()`` + ``Contribution(per_dimension=True)``
(docs/neon.md). Each panel's title has ``sum R_p + bias + residual`` against ``f(x)``.
The PNG is written atomically; an existing file is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import bowlrp  # noqa: E402
from bowlrp._utils.atomic import atomic_write_bytes  # noqa: E402
from bowlrp.datasets.polygons import STRIDE, TILE, generate, overlapping_tiles, tile_dataset  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402
from bowlrp.rules import Contribution, Epsilon, Flat, Neon  # noqa: E402

PANELS = {
    "Flat (per descriptor)": [Epsilon(0.0), Flat()],
    "Contribution (per descriptor)": [Epsilon(0.0), Contribution()],
    "NEON + Contribution (per dimension)": [Neon(), Contribution(per_dimension=True)],
}


def train_model(n_scenes: int) -> Pipeline:
    """polygons_hik with 64 words per scale, on the crops of ``n_scenes`` scenes (seed 0)."""
    crops, labels = tile_dataset(generate(0, n_scenes))
    pipe = Pipeline.from_config("polygons_hik")
    for _, _, enc in pipe.channels:
        enc.vocabulary.set_params(n_words=64, max_descriptors=20000)
    return pipe.fit(crops, labels)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "neon_polygons.png")
    ap.add_argument("--model", type=Path, default=None, help="a fitted polygons model file (bowlrp.load)")
    ap.add_argument("--train-scenes", type=int, default=6)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        sys.exit(f"{args.out} exists; pass --overwrite to replace it")
    pipe = bowlrp.load(args.model) if args.model else train_model(args.train_scenes)
    crops, labels, _ = overlapping_tiles(generate(1, 1))
    positive = np.flatnonzero(labels == 1)
    scores = pipe.decision_function([crops[i] for i in positive])
    tile = crops[positive[int(np.argmax(scores))]]
    fig, axes = plt.subplots(1, 1 + len(PANELS), figsize=(4.2 * (1 + len(PANELS)), 4.4))
    axes[0].imshow(tile, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"polygons tile {TILE}x{TILE} (stride {STRIDE})")
    axes[0].axis("off")
    for ax, (name, rules) in zip(axes[1:], tqdm(PANELS.items(), desc="explaining", leave=False)):
        e = pipe.explain([tile], rules=rules)[0]
        total = e.heatmap.sum() + e.bias_relevance + e.absorbed + e.residual
        e.plot(ax=ax, title=f"{name}\nsum R_p + bias + rest = {total:.4f}, f(x) = {e.score:.4f}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(args.out, buffer.getvalue())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
