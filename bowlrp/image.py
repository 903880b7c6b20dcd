"""Heatmaps as pictures (normalisation, colour maps, overlays, edges, masks, PNG files;
docs/math.md §3) and as grids (sum-pooling onto ``grid x grid`` cells, the input of SpRAy
and of a relevance store's pooled maps).

Heatmaps are scaled for display by :func:`display_scale` (a percentile of
``|R_p|``, of one image or of a set of images with ``normalize="global"`` so
magnitudes stay comparable) to [-1, 1] and coloured with zero at the centre of
the colour map: ``bwr`` (default, diverging), ``seismic``, the papers' ``jet``
(blue negative, green about zero, red positive), or the LRP papers'
black-fire-red ``coldnhot`` (zero black, positive red to yellow, negative blue
to cyan; zennit's name) and its positive half ``fire``.

:func:`overlay`, :func:`triplet` and :func:`heatmap_picture` take **raw**
relevance and scale it themselves (``clip``: the ``--clip`` percentile of the
CLI, ``None`` or ``"max"``: divide by ``max |R|``); pass ``scale=`` to use a scale
computed elsewhere (``scale=1.0`` for a map already in [-1, 1]).
:func:`colorize`, :func:`heatmap_on_edges` and :func:`mask_positive` take maps
already in display units.

matplotlib is imported only when a matplotlib colour map is drawn, so importing
this module stays cheap.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from ._utils.atomic import atomic_write_bytes
from ._utils.validation import as_float_image, opencv_message

#: Colour maps of matplotlib offered for heatmaps (signed: zero at the centre).
MATPLOTLIB_COLORMAPS = ("bwr", "seismic", "jet", "coolwarm", "RdBu_r", "gray")
#: bowlrp's own colour maps, as anchor colours (RGB in [0, 1]) spaced evenly along the map.
#: ``coldnhot``: the LRP papers' black-fire-red for signed relevance (zennit's ``coldnhot``):
#: -1 cyan, blue, 0 black, red, yellow +1. ``fire``: its positive half, black-red-yellow-white
#: (negative relevance is drawn black). ``wred``: white to red, positive only.
OWN_COLORMAPS: dict[str, tuple[tuple[tuple[float, float, float], ...], bool]] = {
    "coldnhot": (((0, 1, 1), (0, 0, 1), (0, 0, 0), (1, 0, 0), (1, 1, 0)), True),
    "fire": (((0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1)), False),
    "wred": (((1, 1, 1), (1, 0, 0)), False),
}
COLORMAPS = (*MATPLOTLIB_COLORMAPS, *OWN_COLORMAPS)
#: Default display clipping: the 99.5th percentile of |R| maps to full colour.
DEFAULT_PERCENTILE = 99.5
_LUT_SIZE = 256  # entries of a colour map's table, as matplotlib's


def is_signed(colormap: str) -> bool:
    """Whether ``colormap`` shows [-1, 1] with zero at its centre (False: [0, 1], zero at its start)."""
    return colormap not in OWN_COLORMAPS or OWN_COLORMAPS[colormap][1]


def _own_table(colormap: str) -> np.ndarray:
    """(256, 3) float RGB table of one of :data:`OWN_COLORMAPS`, linear between its anchors."""
    anchors = np.asarray(OWN_COLORMAPS[colormap][0], dtype=np.float64)
    at = np.linspace(0, 1, len(anchors))
    x = np.linspace(0, 1, _LUT_SIZE)
    return np.stack([np.interp(x, at, anchors[:, c]) for c in range(3)], axis=1)


def colormap_table(colormap: str) -> np.ndarray:
    """The colour map as a (256, 3) float RGB table in [0, 1] (for a matplotlib colour bar).

    Raises
    ------
    ValueError
        For a name that is neither one of :data:`COLORMAPS` nor a matplotlib colour map.
    """
    if colormap in OWN_COLORMAPS:
        return _own_table(colormap)
    return _matplotlib_colormap(colormap)(np.arange(_LUT_SIZE))[:, :3]


def _matplotlib_colormap(colormap: str):
    from matplotlib import colormaps  # heavy (~0.3 s): only when a matplotlib colour map is drawn

    if colormap not in colormaps:
        raise ValueError(f"unknown colormap {colormap!r}; try one of {', '.join(COLORMAPS)}")
    return colormaps[colormap]


def check_colormap(colormap: str) -> str:
    """``colormap`` if it can be drawn, else a ValueError naming the offered colour maps."""
    if colormap not in OWN_COLORMAPS:
        _matplotlib_colormap(colormap)
    return colormap


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
    """RGB uint8 (H, W, 3) of a heatmap already in display units [-1, 1].

    Signed colour maps put 0 at their centre; the positive-only ones of
    :data:`OWN_COLORMAPS` (``fire``, ``wred``) put 0 at their start and draw
    negative values like 0. For raw relevance use :func:`heatmap_picture`.

    Parameters
    ----------
    heatmap : ndarray (H, W)
    colormap : str
        One of :data:`COLORMAPS` or any matplotlib colour map name.
    """
    if colormap in OWN_COLORMAPS:
        lo = -1.0 if is_signed(colormap) else 0.0
        values = (np.clip(heatmap, lo, 1) - lo) / (1 - lo)
        index = np.minimum((values * _LUT_SIZE).astype(np.intp), _LUT_SIZE - 1)
        return (_own_table(colormap)[index] * 255).round().astype(np.uint8)
    values = (np.clip(heatmap, -1, 1) + 1) / 2
    return (_matplotlib_colormap(colormap)(values)[..., :3] * 255).round().astype(np.uint8)


def display_values(
    heatmap: np.ndarray, clip: float | str | None = DEFAULT_PERCENTILE, scale: float | None = None
):
    """Raw relevance in display units: ``(clip(R / s, -1, 1), s)``.

    Parameters
    ----------
    heatmap : ndarray (H, W)
        Raw relevance (any magnitude).
    clip : float in (0, 100], ``"max"`` or None
        The percentile of ``|R|`` drawn at full colour (the CLI's ``--clip``);
        None or ``"max"``: ``max |R|`` (nothing clipped).
    scale : float or None
        ``s`` itself (e.g. one :func:`display_scale` shared by several maps;
        ``1.0`` for a map already in [-1, 1]); None: computed from ``heatmap``.

    Returns
    -------
    (ndarray (H, W) float64 in [-1, 1], float)
        The display map (all zeros when ``s <= 0``) and ``s``.
    """
    h = np.asarray(heatmap, dtype=np.float64)
    if h.ndim != 2:
        raise ValueError(f"a heatmap must be 2-D (H, W), got shape {h.shape}")
    if scale is None:
        scale = display_scale(h, None if clip == "max" else clip)
    scale = float(scale)
    if not scale > 0:
        return np.zeros_like(h), 0.0
    return np.clip(h / scale, -1, 1), scale


def heatmap_picture(
    heatmap: np.ndarray,
    colormap: str = "bwr",
    clip: float | str | None = DEFAULT_PERCENTILE,
    scale: float | None = None,
) -> np.ndarray:
    """RGB float (H, W, 3) in [0, 1] of raw relevance, scaled as the CLI's heatmap PNGs.

    ``clip`` and ``scale`` as in :func:`display_values`; add a ticked colour bar with
    ``with_colorbar(picture, colormap, scale)``.
    """
    values, _ = display_values(heatmap, clip, scale)
    return colorize(values, colormap) / 255.0


def _rgb(image) -> np.ndarray:
    img = as_float_image(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img


def overlay(
    image,
    heatmap: np.ndarray,
    colormap: str = "bwr",
    alpha: float = 0.6,
    clip: float | str | None = DEFAULT_PERCENTILE,
    scale: float | None = None,
) -> np.ndarray:
    """Raw relevance blended over the image, weighted by ``|R| / s`` so zero relevance shows the image.

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, 3), or a path
    heatmap : ndarray (H, W)
        Raw relevance; scaled by ``s`` from ``clip`` / ``scale`` as in :func:`display_values`
        (the CLI's display scale). A map already in [-1, 1] is drawn as it is with
        ``scale=1.0``.
    colormap : str
    alpha : float
        Opacity of the colour where ``|R| >= s``.
    clip, scale : see :func:`display_values`

    Returns
    -------
    ndarray (H, W, 3) float in [0, 1]
    """
    img = _rgb(image)
    values, _ = display_values(heatmap, clip, scale)
    _check_same_size(img, values)
    color = colorize(values, colormap) / 255.0
    weight = alpha * np.abs(values)[..., None]
    return ((1 - weight) * img + weight * color).clip(0, 1)


def _check_same_size(img: np.ndarray, heatmap: np.ndarray) -> None:
    if img.shape[:2] != heatmap.shape:
        raise ValueError(
            f"the image is {img.shape[1]}x{img.shape[0]} pixels but the heatmap is "
            f"{heatmap.shape[1]}x{heatmap.shape[0]}"
        )


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
    """A vertical colour bar from +1 (top) to -1 (bottom; 0 for a positive-only map), RGB float."""
    bottom = -1.0 if is_signed(colormap) else 0.0
    values = np.linspace(1, bottom, height)[:, None].repeat(width, axis=1)
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
    ticks = (1.0, 0.5, 0.0, -0.5, -1.0) if is_signed(colormap) else (1.0, 0.75, 0.5, 0.25, 0.0)
    bottom = ticks[-1]
    labels = [(_tick_label(top * v), v) for v in ticks]
    label_w = max(cv2.getTextSize(t, font, size, thick)[0][0] for t, _ in labels) + 10
    panel = np.full((bar_h + 2 * pad_y, 4 + bar.shape[1] + label_w, 3), 255, np.uint8)
    panel[pad_y : pad_y + bar_h, 4 : 4 + bar.shape[1]] = (bar * 255).round().astype(np.uint8)
    for text, v in labels:
        y = pad_y + int(round((1 - v) / (1 - bottom) * (bar_h - 1)))
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


def triplet(
    image,
    heatmap: np.ndarray,
    colormap: str = "bwr",
    clip: float | str | None = DEFAULT_PERCENTILE,
    scale: float | None = None,
) -> np.ndarray:
    """The papers' figure row: heatmap | heatmap on edges | image masked by positive relevance.

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, 3), or a path
    heatmap : ndarray (H, W)
        Raw relevance, scaled as in :func:`display_values` (``scale=1.0`` for a map
        already in [-1, 1]).
    colormap : str
    clip, scale : see :func:`display_values`

    Returns
    -------
    ndarray (H, 3 W + 8, 3) float in [0, 1]
        The three panels with 4-pixel white gaps.
    """
    values, _ = display_values(heatmap, clip, scale)
    _check_same_size(_rgb(image), values)
    h = colorize(values, colormap) / 255.0
    gap = np.ones((h.shape[0], 4, 3))
    return np.hstack([h, gap, heatmap_on_edges(image, values, colormap), gap, mask_positive(image, values)])


def label_panel(picture: np.ndarray, text: str, height: int = 14) -> np.ndarray:
    """The picture with ``text`` written on a white strip above it (a panel title).

    Parameters
    ----------
    picture : ndarray (H, W, 3) float in [0, 1]
    text : str
        ASCII (OpenCV's font); cut to the picture's width.
    height : int
        Height of the strip in pixels.

    Returns
    -------
    ndarray (H + height, W, 3) float in [0, 1]
    """
    pic = np.asarray(picture, dtype=np.float64)
    strip = np.full((height, pic.shape[1], 3), 255, np.uint8)
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.33
    text = text.encode("ascii", "replace").decode()
    while text and cv2.getTextSize(text, font, size, 1)[0][0] > pic.shape[1] - 2:
        text = text[:-1]
    cv2.putText(strip, text, (1, height - 4), font, size, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip / 255.0, pic])


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
