"""Synthetic natural-looking test scenes for benchmarks (nothing is downloaded)."""

import cv2
import numpy as np


def scene(seed: int, height: int = 360, width: int = 480, kind: int = 0) -> np.ndarray:
    """A grey scene with smooth shading, textured shapes and noise, values in [0, 1].

    ``kind`` 0 draws mostly polygons, 1 mostly discs (two separable classes).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    img = 0.4 + 0.2 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(4 * yy + rng.uniform(0, 6))
    canvas = (img * 255).astype(np.uint8)
    for _ in range(25):
        level = int(rng.integers(0, 255))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(10, 45))
        if (rng.random() < 0.8) == (kind == 0):
            n = int(rng.integers(3, 8))
            angles = rng.uniform(0, 2 * np.pi) + np.arange(n) * 2 * np.pi / n
            pts = np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)]).astype(np.int32)
            cv2.fillPoly(canvas, [pts], level)
        else:
            cv2.circle(canvas, (cx, cy), r, level, -1)
    out = canvas / 255.0 + rng.normal(0, 0.03, canvas.shape)
    return np.clip(out, 0, 1)
