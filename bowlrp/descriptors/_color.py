"""Colour conversions feeding the descriptor extractors (all outputs in [0, 1])."""

from __future__ import annotations

import numpy as np

COLOR_MODES = ("grey", "gray", "opponent", "rgb")  # "gray" is the same as "grey"


def to_grey(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB image in [0, 1]; grey images pass through. Shape (H, W)."""
    if image.ndim == 2:
        return image
    return image @ np.array([0.299, 0.587, 0.114])


def color_channels(image: np.ndarray, mode: str) -> list[np.ndarray]:
    """Split a [0, 1] image into the channels a colour mode describes.

    ``grey``: one luma channel. ``rgb``: R, G, B. ``opponent``: O1 = (R-G)/sqrt 2,
    O2 = (R+G-2B)/sqrt 6, O3 = (R+G+B)/sqrt 3, each rescaled linearly to [0, 1]
    (gradient-based descriptors are normalised, so the rescaling only matters for
    thresholds). Grey images given to a colour mode are replicated to three channels.
    """
    if mode not in COLOR_MODES:
        raise ValueError(f"color must be one of {COLOR_MODES}, got {mode!r}")
    if mode in ("grey", "gray"):
        return [to_grey(image)]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    r, g, b = image[:, :, 0], image[:, :, 1], image[:, :, 2]
    if mode == "rgb":
        return [r, g, b]
    o1 = (r - g) / np.sqrt(2.0)
    o2 = (r + g - 2.0 * b) / np.sqrt(6.0)
    o3 = (r + g + b) / np.sqrt(3.0)
    return [
        (o1 + 1.0 / np.sqrt(2.0)) / np.sqrt(2.0),
        (o2 + 2.0 / np.sqrt(6.0)) / (4.0 / np.sqrt(6.0)),
        o3 / np.sqrt(3.0),
    ]
