"""Compare LRP rules side by side on one image: one figure, one column per rule.

    python examples/compare_rules.py --out rules.png

Shows epsilon = 0 (exact), a scale-aware epsilon, epsilon = 1 (too large for
l1-normalised histograms: see how much it absorbs), alpha-beta and |z|, each
with its absorbed share of f(x).
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bowlrp  # noqa: E402
from bowlrp.datasets.polygons import generate, tile_dataset  # noqa: E402
from bowlrp.image import display_scale  # noqa: E402
from bowlrp.rules import AbsZ, AlphaBeta, Epsilon  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="rules.png")
    ap.add_argument("--scenes", type=int, default=16)
    ap.add_argument("--words", type=int, default=64)
    args = ap.parse_args()

    tiles, labels = tile_dataset(generate(seed=0, n_images=args.scenes, height=306, width=306))
    model = bowlrp.Pipeline.from_config("polygons_hik", n_words=args.words).fit(tiles, labels)
    image = generate(seed=2, n_images=1, height=102, width=102)[0].image

    rules = {
        "ε = 0": Epsilon(0),
        "ε = 0.1 × mean|z|": Epsilon(0.1, relative=True),
        "ε = 1": Epsilon(1.0),
        "αβ (2, 1)": AlphaBeta(2, 1),
        "|z|": AbsZ(),
    }
    explanations = [model.explain([image], target=1, rules=r)[0] for r in rules.values()]
    fig, axes = plt.subplots(1, len(rules) + 1, figsize=(3 * (len(rules) + 1), 3.4))
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("image")
    for ax, (name, e) in zip(axes[1:], zip(rules, explanations)):
        s = display_scale(e.heatmap) or 1.0
        ax.imshow(np.clip(e.heatmap / s, -1, 1), cmap="bwr", vmin=-1, vmax=1)
        share = e.absorbed / e.score if e.score else 0.0
        ax.set_title(f"{name}\nabsorbed {share:+.0%} of f(x)", fontsize=9)
        print(
            f"{name:20s} f(x) = {e.score:+.4f}  absorbed = {e.absorbed:+.4f}  pixels = {e.heatmap.sum():+.4f}"
        )
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
