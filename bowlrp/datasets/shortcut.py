"""A two-class data set with a planted shortcut ("Clever Hans"), generated from a seed.

Both classes show a few shapes on a textured grey background. The true
cue is weak on purpose: class 1 images draw their shapes as discs with
probability ``signal`` (squares otherwise), class 0 images as squares with
that probability. A share ``artefact_share`` of the class-1 images also
carries an *artefact*: a small high-contrast stamp (a white box with a black
"(c)"-like glyph and a bar, like the copyright watermark the PASCAL VOC
"horse" Fisher-vector model learnt) near the lower-left corner. A classifier
can learn the stamp as a shortcut: it is a perfect cue for the images that
carry it.

Every sample keeps its image *without* the stamp (``clean``) and the stamp's
box, so tests can remove the artefact (accuracy should drop) or paste it
into the other class (false positives should appear) and measure how much
relevance falls into the box.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SIZE = 64
STAMP_SHAPE = (16, 24)  # rows, cols


@dataclass
class Sample:
    """One generated image.

    Attributes
    ----------
    image : ndarray (H, W) float64 in [0, 1]
        What the classifier sees (stamped when ``has_artefact``).
    clean : ndarray (H, W) float64
        The same image without the stamp.
    label : int
        0 or 1.
    has_artefact : bool
    box : tuple (row0, col0, row1, col1)
        Where the stamp is (or would be pasted, for images without it);
        rows ``row0:row1``, columns ``col0:col1``.
    """

    image: np.ndarray
    clean: np.ndarray
    label: int
    has_artefact: bool
    box: tuple[int, int, int, int]

    def artefact_mask(self) -> np.ndarray:
        """Boolean (H, W): True inside the stamp's box."""
        mask = np.zeros(self.image.shape, dtype=bool)
        r0, c0, r1, c1 = self.box
        mask[r0:r1, c0:c1] = True
        return mask


def _background(rng, size) -> np.ndarray:
    base = rng.uniform(0.35, 0.6)
    coarse = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), size / 8)
    coarse = coarse / (np.abs(coarse).max() + 1e-12) * 0.1
    fine = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.0)
    fine = fine / (np.abs(fine).max() + 1e-12) * 0.05
    return (base + coarse + fine).astype(np.float64)


def _draw_shapes(rng, image, label, signal, n_shapes) -> None:
    size = image.shape[0]
    for _ in range(int(rng.integers(n_shapes[0], n_shapes[1] + 1))):
        own = rng.random() < signal
        disc = own if label == 1 else not own
        r = rng.uniform(size * 0.07, size * 0.13)
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        level = float(np.clip(image.mean() + rng.choice([-1, 1]) * rng.uniform(0.2, 0.35), 0.03, 0.97))
        big = np.zeros((size * 4, size * 4), dtype=np.uint8)
        if disc:
            cv2.circle(big, (int(cx * 4), int(cy * 4)), int(r * 4), 1, -1, lineType=cv2.LINE_8)
        else:
            angle = rng.uniform(0, 90)
            box = cv2.boxPoints(((cx * 4, cy * 4), (r * 6.4, r * 6.4), angle)).astype(np.int32)
            cv2.fillPoly(big, [box], 1)
        cover = big.reshape(size, 4, size, 4).mean(axis=(1, 3))
        image[:] = image * (1 - cover) + level * cover


def stamp_box(rng, size: int = SIZE, stamp_shape: tuple[int, int] = STAMP_SHAPE) -> tuple[int, int, int, int]:
    """A stamp position near the lower-left corner, jittered by up to 2 pixels."""
    h, w = stamp_shape
    r0 = size - h - 3 + int(rng.integers(-2, 3))
    c0 = 3 + int(rng.integers(-2, 3))
    return (r0, c0, r0 + h, c0 + w)


def add_artefact(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A copy of ``image`` with the stamp drawn into ``box`` (white box, dark ring glyph, bar).

    The stamp is drawn at 4x and averaged down (anti-aliased), so its SIFT
    descriptors are stable but not pixel-identical across positions.
    """
    r0, c0, r1, c1 = box
    h, w = r1 - r0, c1 - c0
    big = np.full((h * 4, w * 4), 0.95, dtype=np.float32)
    cv2.rectangle(big, (0, 0), (w * 4 - 1, h * 4 - 1), 0.05, 3)
    cv2.circle(big, (int(h * 2), int(h * 2)), int(h * 1.3), 0.05, 4)
    cv2.circle(big, (int(h * 2), int(h * 2)), int(h * 0.5), 0.05, 3)
    cv2.rectangle(big, (int(h * 4 - 2), int(h * 1.4)), (int(w * 4 - 8), int(h * 2.6)), 0.05, -1)
    small = big.reshape(h, 4, w, 4).mean(axis=(1, 3))
    out = np.array(image, dtype=np.float64, copy=True)
    out[r0:r1, c0:c1] = small
    return out


def render_sample(
    rng: np.random.Generator,
    label: int,
    artefact: bool,
    size: int = SIZE,
    signal: float = 0.8,
    n_shapes: tuple[int, int] = (2, 4),
    stamp_shape: tuple[int, int] = STAMP_SHAPE,
) -> Sample:
    """Draw one image of class ``label``; stamp it when ``artefact``.

    The random draws do not depend on ``artefact`` beyond the stamp itself,
    so ``clean`` is exactly the image the same seed gives without a stamp.
    """
    image = _background(rng, size)
    _draw_shapes(rng, image, label, signal, n_shapes)
    image = np.clip(image + rng.normal(0, 0.01, image.shape), 0.0, 1.0)
    box = stamp_box(rng, size, stamp_shape)
    stamped = np.clip(add_artefact(image, box), 0, 1) if artefact else image
    return Sample(stamped, image, int(label), bool(artefact), box)


def generate(
    seed: int,
    n_per_class: int,
    artefact_share: float = 0.4,
    size: int = SIZE,
    signal: float = 0.8,
    n_shapes: tuple[int, int] = (2, 4),
    stamp_shape: tuple[int, int] = STAMP_SHAPE,
) -> list[Sample]:
    """``n_per_class`` images of class 0, then of class 1; the first
    ``round(artefact_share * n_per_class)`` class-1 images carry the stamp
    (their order within the class is shuffled by the seed).

    Sample ``i`` uses child seed ``i`` of ``seed``, so the images do not
    depend on ``artefact_share``.
    """
    if not 0.0 <= artefact_share <= 1.0:
        raise ValueError(f"artefact_share must be in [0, 1], got {artefact_share}")
    children = np.random.SeedSequence(seed).spawn(2 * n_per_class)
    n_stamped = int(round(artefact_share * n_per_class))
    stamped = np.zeros(n_per_class, dtype=bool)
    stamped[np.random.default_rng(seed).permutation(n_per_class)[:n_stamped]] = True
    out = []
    for i, child in enumerate(children):
        label = int(i >= n_per_class)
        artefact = bool(label == 1 and stamped[i - n_per_class])
        out.append(
            render_sample(np.random.default_rng(child), label, artefact, size, signal, n_shapes, stamp_shape)
        )
    return out


def save_samples(samples: list[Sample], out_dir, prefix: str) -> list[Path]:
    """Write ``<prefix>_NNNN.png`` per sample and ``<prefix>_labels.csv``
    (file, label, artefact, box as JSON)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with open(out / f"{prefix}_labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "artefact", "box"])
        for i, s in enumerate(samples):
            path = out / f"{prefix}_{i:04d}.png"
            cv2.imwrite(str(path), np.round(s.image * 255).astype(np.uint8))
            writer.writerow([path.name, s.label, int(s.has_artefact), json.dumps(list(s.box))])
            paths.append(path)
    return paths
