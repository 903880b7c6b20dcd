"""Heatmaps as pictures (normalisation, colour maps, overlays, edges, masks, PNG files;
docs/math.md §3) and as grids (sum-pooling onto ``grid x grid`` cells, the input of SpRAy
and of a relevance store's pooled maps).

Heatmaps are normalised by ``max_p |R_p|`` (of one image, or of a set of
images with ``normalize="global"`` so magnitudes stay comparable) to
[-1, 1] and coloured with zero at the centre of the colour map: ``bwr``
(default, diverging), ``seismic``, or the papers' ``jet`` (blue negative,
green about zero, red positive).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps

from ._utils.atomic import atomic_write_bytes
from ._utils.validation import as_float_image, opencv_message

COLORMAPS = ("bwr", "seismic", "jet", "coolwarm", "RdBu_r", "gray")
#: Default display clipping: the 99.5th percentile of |R| maps to full colour.
DEFAULT_PERCENTILE = 99.5


def display_scale(heatmaps, percentile: float | None = DEFAULT_PERCENTILE) -> float:
    """The |R| that a display maps to full colour: a percentile of |R| (or the maximum).

    Parameters
    ----------
    heatmaps : ndarray or list of ndarray
        One map, or several that share one scale.
    percentile : float in (0, 100] or None
        ``None`` or 100: symmetric absolute maximum (zennit's ``symmetric``);
        otherwise ``percentile(|R|, q)`` over the nonzero pixels, so one
        extreme spot cannot take the whole colour range.

    Returns
    -------
    float
        ``s >= 0``; the display shows ``clip(R / s, -1, 1)``.
    """
    maps = heatmaps if isinstance(heatmaps, (list, tuple)) else [heatmaps]
    values = [np.abs(np.asarray(h, dtype=np.float64)).ravel() for h in maps]
    values = np.concatenate(values) if values else np.zeros(0)
    values = values[values > 0]
    if values.size == 0:
        return 0.0
    if percentile is None or percentile >= 100:
        return float(values.max())
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    return float(np.percentile(values, percentile))


def normalize_heatmaps(
    heatmaps, mode: str = "image", percentile: float | None = DEFAULT_PERCENTILE
) -> list[np.ndarray]:
    """Heatmaps scaled for display to [-1, 1]: ``clip(R / s, -1, 1)``.

    ``s`` is :func:`display_scale` of each map (``mode="image"``) or of all maps
    together (``"global"``, magnitudes stay comparable). ``percentile=None``
    divides by ``max |R|`` without clipping. The raw maps are not changed.
    """
    if mode not in ("image", "global"):
        raise ValueError(f"normalize must be 'image' or 'global', got {mode!r}")
    maps = [np.asarray(h, dtype=np.float64) for h in heatmaps]
    if mode == "global":
        scales = [display_scale(maps, percentile)] * len(maps)
    else:
        scales = [display_scale(h, percentile) for h in maps]
    return [np.clip(h / s, -1, 1) if s > 0 else h.copy() for h, s in zip(maps, scales)]


def colorize(heatmap: np.ndarray, colormap: str = "bwr") -> np.ndarray:
    """RGB uint8 (H, W, 3) of a heatmap already in [-1, 1] (0 maps to the colour map's centre)."""
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


def _tick_label(value: float) -> str:
    return "0" if value == 0 else f"{value:+.2g}"


def with_colorbar(picture: np.ndarray, colormap: str = "bwr", scale: float | None = None) -> np.ndarray:
    """Append a colour bar with ticks to the right of an RGB picture.

    Parameters
    ----------
    picture : ndarray (H, W, 3), float in [0, 1]
    scale : float or None
        The relevance shown at full colour (from :func:`display_scale`); ticks
        are labelled ``+scale``, ``+scale/2``, ``0``, ... in relevance units.
        None: labels in display units (+1 ... -1).
    """
    h = picture.shape[0]
    pad_y = 6  # room for the first and last labels, centred on the bar's ends
    bar_h = max(h, 60) - 2 * pad_y
    bar = colorbar(bar_h, colormap)
    font, size, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1
    top = 1.0 if scale is None or scale <= 0 else float(scale)
    labels = [(_tick_label(top * v), v) for v in (1.0, 0.5, 0.0, -0.5, -1.0)]
    label_w = max(cv2.getTextSize(t, font, size, thick)[0][0] for t, _ in labels) + 10
    panel = np.full((bar_h + 2 * pad_y, 4 + bar.shape[1] + label_w, 3), 255, np.uint8)
    panel[pad_y : pad_y + bar_h, 4 : 4 + bar.shape[1]] = (bar * 255).round().astype(np.uint8)
    for text, v in labels:
        y = pad_y + int(round((1 - v) / 2 * (bar_h - 1)))
        x0 = 4 + bar.shape[1]
        panel[y, x0 : x0 + 4] = 0
        cv2.putText(panel, text, (x0 + 6, y + 4), font, size, (0, 0, 0), thick, cv2.LINE_AA)
    pic = picture
    if panel.shape[0] > h:
        pad = np.ones((panel.shape[0] - h, pic.shape[1], 3))
        pic = np.vstack([pic, pad])
    return np.hstack([pic, panel / 255.0])


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
    :func:`bowlrp._utils.atomic.atomic_write_bytes` (temporary file in the same
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
    return np.hstack([h, gap, heatmap_on_edges(image, heatmap, colormap), gap, mask_positive(image, heatmap)])


# -- heatmaps as grids (SpRAy's input; the pooled maps a relevance store keeps) ----------


def as_maps(maps) -> list[np.ndarray]:
    """A list of finite 2-D float64 arrays from an (n, H, W) array or a list of 2-D arrays."""
    if isinstance(maps, np.ndarray):
        if maps.ndim != 3:
            raise ValueError(
                f"maps must be an (n, H, W) array or a list of 2-D arrays, got an array of shape {maps.shape}"
            )
        out = list(maps.astype(np.float64, copy=False))
    else:
        out = []
        for i, m in enumerate(maps):
            a = np.asarray(m, dtype=np.float64)
            if a.ndim != 2:
                raise ValueError(f"map {i} has shape {a.shape}; every map must be 2-D (H, W)")
            out.append(a)
    for i, a in enumerate(out):
        if a.size == 0:
            raise ValueError(f"map {i} is empty")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"map {i} contains NaN or infinite values")
    return out


def common_shape(shapes) -> tuple[int, int]:
    """The most frequent shape (ties: the largest area), the one all maps are resized to."""
    counts = Counter(tuple(int(v) for v in s) for s in shapes)
    return max(counts, key=lambda s: (counts[s], s[0] * s[1], s))


def _pooling_matrix(length: int, cells: int) -> np.ndarray:
    """(cells, length) weights: the share of pixel ``p`` that falls into cell ``i``.

    Cell ``i`` covers ``[i * length / cells, (i + 1) * length / cells)``; a pixel
    straddling two cells is split by overlap, so every column sums to 1.
    """
    edges = np.arange(cells + 1) * (length / cells)
    lo = np.maximum(edges[:-1, None], np.arange(length)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(1, length + 1)[None, :])
    return np.clip(hi - lo, 0.0, None)


def pool_maps(maps, grid: int = 20, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Resize every map to one shape, then sum-pool it onto ``grid x grid`` cells.

    ``P[i, a, b] = sum_{h, w} Pr[a, h] M_i[h, w] Pc[b, w]`` with the overlap
    weights of :func:`_pooling_matrix`, so the total relevance of a map (after
    resizing) is kept: ``P[i].sum() == resize(M_i).sum()``.

    Parameters
    ----------
    maps : (n, H, W) array or list of 2-D arrays (shapes may differ)
    grid : int
    shape : (H, W) or None
        Common shape; None: :func:`common_shape` of the maps.

    Returns
    -------
    ndarray (n, grid, grid) float64
    """
    maps = as_maps(maps)
    if grid < 1:
        raise ValueError(f"grid must be positive, got {grid}")
    if shape is None:
        shape = common_shape(m.shape for m in maps)
    H, W = int(shape[0]), int(shape[1])
    pr, pc = _pooling_matrix(H, grid), _pooling_matrix(W, grid)
    out = np.empty((len(maps), grid, grid))
    for i, m in enumerate(maps):
        if m.shape != (H, W):
            # INTER_AREA averages blocks when shrinking; bilinear when enlarging
            shrink = m.shape[0] >= H and m.shape[1] >= W
            try:
                m = cv2.resize(m, (W, H), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            except cv2.error as exc:  # one line, not OpenCV's "(-215:Assertion failed) ..."
                raise ValueError(
                    f"map {i} of shape {m.shape} cannot be resized to {H} x {W} ({opencv_message(exc)})"
                ) from None
        out[i] = pr @ m @ pc.T
    return out
