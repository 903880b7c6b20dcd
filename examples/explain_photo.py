"""Train a small polygons-versus-circles model, explain one image, save the pictures.

    python examples/explain_photo.py --out explained/            # about a minute on 2 cores
    python examples/explain_photo.py --image my.png --out explained/

Writes ``heatmap.png`` (with a colour bar in relevance units), ``overlay.png``
and ``relevance.npy``, and prints the score and the conservation check.
"""

import argparse
from pathlib import Path

import numpy as np

import bowlrp
from bowlrp import image as pictures
from bowlrp.datasets.polygons import generate, tile_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", help="image to explain (default: a generated test scene)")
    ap.add_argument("--out", default="explained")
    ap.add_argument("--scenes", type=int, default=16, help="training scenes (102x102 tiles each)")
    ap.add_argument("--words", type=int, default=64, help="visual words per SIFT scale")
    args = ap.parse_args()

    tiles, labels = tile_dataset(generate(seed=0, n_images=args.scenes, height=306, width=306))
    model = bowlrp.Pipeline.from_config("polygons_hik", n_words=args.words).fit(tiles, labels)
    image = args.image or generate(seed=1, n_images=1, height=204, width=306)[0].image

    explanation = model.explain([image], target=1, tile=102, stride=34)[0]  # class "polygon"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scale = pictures.display_scale(explanation.heatmap)  # 99.5th percentile of |R|
    shown = np.clip(explanation.heatmap / scale, -1, 1)
    heat = pictures.with_colorbar(pictures.colorize(shown) / 255.0, scale=scale)
    (out / "heatmap.png").write_bytes(pictures.encode_png(heat))
    (out / "overlay.png").write_bytes(
        pictures.encode_png(pictures.overlay(image, explanation.heatmap, scale=scale))
    )
    np.save(out / "relevance.npy", explanation.heatmap)
    print(
        f"score {explanation.score:+.4f}, bias {explanation.bias_relevance:+.4f}, "
        f"sum of pixel relevance {explanation.heatmap.sum():+.4f}"
    )
    print("conservation:", explanation.conservation())
    print(f"wrote {out}/heatmap.png, overlay.png, relevance.npy")


if __name__ == "__main__":
    main()
