"""Heatmap pictures: normalisation, colour maps, overlays, edges, masks, PNG files (SPEC 3).

Heatmaps are normalised by ``max_p |R_p|`` (of one image, or of a set of
images with ``normalize="global"`` so magnitudes stay comparable) to
[-1, 1] and coloured with zero at the centre of the colour map: ``bwr``
(default, diverging), ``seismic``, or the papers' ``jet`` (blue negative,
green about zero, red positive).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ._atomic import atomic_write_bytes
from ._validation import as_float_image

COLORMAPS = ("bwr", "seismic", "jet", "coolwarm", "RdBu_r")


def normalize_heatmaps(heatmaps, mode: str = "image") -> list[np.ndarray]:
    """Scale heatmaps to [-1, 1] by ``max |R|`` per image (``"image"``) or over all (``"global"``)."""
    if mode not in ("image", "global"):
        raise ValueError(f"normalize must be 'image' or 'global', got {mode!r}")
    maps = [np.asarray(h, dtype=np.float64) for h in heatmaps]
    if mode == "global":
        scale = max((float(np.abs(h).max()) for h in maps), default=0.0)
        return [h / scale if scale > 0 else h.copy() for h in maps]
    return [h / np.abs(h).max() if np.abs(h).max() > 0 else h.copy() for h in maps]


def colorize(heatmap: np.ndarray, colormap: str = "bwr") -> np.ndarray:
    """RGB uint8 (H, W, 3) of a heatmap already in [-1, 1] (0 maps to the colour map's centre)."""
    from matplotlib import colormaps

    if colormap not in colormaps:
        raise ValueError(f"unknown colormap {colormap!r}; try one of {COLORMAPS}")
    values = (np.clip(heatmap, -1, 1) + 1) / 2
    return (colormaps[colormap](values)[..., :3] * 255).round().astype(np.uint8)


def _rgb(image) -> np.ndarray:
    img = as_float_image(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img


def overlay(image, heatmap: np.ndarray, colormap: str = "bwr", alpha: float = 0.6) -> np.ndarray:
    """Heatmap blended over the image, weighted by ``|R|`` so zero relevance shows the image."""
    img = _rgb(image)
    color = colorize(heatmap, colormap) / 255.0
    weight = alpha * np.clip(np.abs(heatmap), 0, 1)[..., None]
    return ((1 - weight) * img + weight * color).clip(0, 1)


def edges(image) -> np.ndarray:
    """Binary edge map (Canny on the grey image), shape (H, W) bool."""
    img = _rgb(image)
    grey = (img @ np.array([0.299, 0.587, 0.114]) * 255).astype(np.uint8)
    return cv2.Canny(grey, 50, 150) > 0


def heatmap_on_edges(image, heatmap: np.ndarray, colormap: str = "bwr") -> np.ndarray:
    """The coloured heatmap shown only on the image's edges (grey elsewhere), as in the papers."""
    color = colorize(heatmap, colormap) / 255.0
    out = np.full(color.shape, 0.5)
    e = edges(image)
    out[e] = color[e]
    return out


def mask_positive(image, heatmap: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """The image where the normalised relevance exceeds ``threshold``, black elsewhere."""
    img = _rgb(image)
    return img * (heatmap > threshold)[..., None]


def colorbar(height: int, colormap: str = "bwr", width: int = 16) -> np.ndarray:
    """A vertical colour bar from +1 (top) to -1 (bottom), RGB float in [0, 1]."""
    values = np.linspace(1, -1, height)[:, None].repeat(width, axis=1)
    return colorize(values, colormap) / 255.0


def with_colorbar(picture: np.ndarray, colormap: str = "bwr") -> np.ndarray:
    """Append a colour bar (and a white gap) to the right of an RGB picture."""
    h = picture.shape[0]
    gap = np.ones((h, 4, 3))
    return np.hstack([picture, gap, colorbar(h, colormap)])


def _as_bgr_uint8(picture: np.ndarray) -> np.ndarray:
    pic = np.asarray(picture)
    if pic.dtype != np.uint8:
        pic = (np.clip(pic, 0, 1) * 255).round().astype(np.uint8)
    return pic[:, :, ::-1] if pic.ndim == 3 else pic


def encode_png(picture: np.ndarray) -> bytes:
    """PNG bytes of an RGB float [0, 1] or uint8 picture (``cv2.imencode``; no file involved)."""
    ok, buffer = cv2.imencode(".png", _as_bgr_uint8(picture))
    if not ok:  # pragma: no cover - imencode fails only for unsupported arrays
        raise ValueError(f"could not encode a picture of shape {np.shape(picture)} as PNG")
    return buffer.tobytes()


def write_png(path, picture: np.ndarray) -> Path:
    """Write an RGB float [0, 1] or uint8 picture as PNG, atomically.

    The PNG is encoded in memory and written with Python file I/O through
    :func:`bowlrp._atomic.atomic_write_bytes` (temporary file in the same
    folder, fsync, rename; mode ``0o666 & ~umask``): OpenCV never sees the
    path, so names that are not valid UTF-8 work, and an interrupted write
    leaves no partial file.
    """
    return atomic_write_bytes(path, encode_png(picture))


def save_png(path, picture: np.ndarray) -> Path:
    """Like :func:`write_png`, creating the parent folder first."""
    path = Path(os.fsdecode(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_png(path, picture)


def triplet(image, heatmap: np.ndarray, colormap: str = "bwr") -> np.ndarray:
    """The papers' figure row: heatmap | heatmap on edges | image masked by positive relevance."""
    h = colorize(heatmap, colormap) / 255.0
    gap = np.ones((h.shape[0], 4, 3))
    return np.hstack([h, gap, heatmap_on_edges(image, heatmap, colormap), gap,
                      mask_positive(image, heatmap)])
