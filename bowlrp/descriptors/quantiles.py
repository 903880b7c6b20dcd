"""Colour quantile descriptors: intensity quantiles in two half-discs per channel.

At each grid point ``c`` with radius ``r`` the disc ``|p - c| <= r`` is split
by the horizontal line through ``c``: the upper half holds the pixels with
``dy < 0`` and those with ``dy == 0, dx <= 0``; the lower half the rest. For
each half and each channel the quantiles (default 0.1, ..., 0.9, linear
interpolation as ``numpy.quantile``) of the pixel values form the descriptor,
ordered ``[channel][half][quantile]`` (2 x 9 x 3 = 54 values for RGB). Pixels
outside the image are ignored (the area is the clipped disc).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from numba import njit
from sklearn.base import BaseEstimator, TransformerMixin

from .._utils.fitted import refuse
from .._utils.validation import as_float_image, as_image_list
from ..exceptions import ImageError
from ._color import COLOR_MODES, color_channels
from .base import ExtractorMixin
from .geometry import DISC, Descriptors

#: Largest disc radius a loaded model may ask for (the polygons use 4 to 9 pixels)
MAX_RADIUS = 1024.0


@njit(cache=True)
def _quantile_sorted(values, n, q):
    pos = (n - 1) * q
    lo = int(np.floor(pos))
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return values[lo] + (values[hi] - values[lo]) * frac


@njit(cache=True)
def _half_disc_quantiles(channels, centers, radius, quantiles):
    n_ch, height, width = channels.shape
    n_q = quantiles.shape[0]
    n = centers.shape[0]
    out = np.zeros((n, n_ch * 2 * n_q), dtype=np.float32)
    r_int = int(np.floor(radius + 1e-9))
    cap = (2 * r_int + 1) * (2 * r_int + 1)
    upper = np.empty(cap, dtype=np.float64)
    lower = np.empty(cap, dtype=np.float64)
    for i in range(n):
        cy = int(centers[i, 0])
        cx = int(centers[i, 1])
        for ch in range(n_ch):
            nu = 0
            nl = 0
            for dy in range(-r_int, r_int + 1):
                r = cy + dy
                if r < 0 or r >= height:
                    continue
                for dx in range(-r_int, r_int + 1):
                    c = cx + dx
                    if c < 0 or c >= width or dx * dx + dy * dy > radius * radius + 1e-9:
                        continue
                    v = channels[ch, r, c]
                    if dy < 0 or (dy == 0 and dx <= 0):
                        upper[nu] = v
                        nu += 1
                    else:
                        lower[nl] = v
                        nl += 1
            su = np.sort(upper[:nu])
            sl = np.sort(lower[:nl])
            base = ch * 2 * n_q
            for k in range(n_q):
                out[i, base + k] = _quantile_sorted(su, nu, quantiles[k])
                out[i, base + n_q + k] = _quantile_sorted(sl, nl, quantiles[k])
    return out


class ColorQuantiles(ExtractorMixin, TransformerMixin, BaseEstimator):
    """Quantiles of the intensities in two half-discs, per colour channel.

    Parameters
    ----------
    radius : float
        Disc radius in pixels (the descriptor's area is the clipped disc).
    step : int
        Grid step in pixels. Centres run from ``ceil(radius)`` to
        ``H - 1 - ceil(radius)`` (rows; columns alike), as whole pixels.
    quantiles : sequence of float
        Quantile levels in (0, 1); default 0.1, 0.2, ..., 0.9.
    color : {"rgb", "grey", "opponent"}
    n_jobs : int or None
    """

    def __init__(
        self,
        radius: float = 9.0,
        step: int = 6,
        quantiles: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        color: str = "rgb",
        n_jobs: int | None = None,
    ):
        self.radius = radius
        self.step = step
        self.quantiles = quantiles
        self.color = color
        self.n_jobs = n_jobs

    def fit(self, X=None, y=None):
        """Check the parameters (no learning)."""
        self._check_params()
        self.n_features_out_ = self.output_dimension()
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        return tags

    def _check_fitted_parameters(self, checked) -> None:
        """Finite quantile levels (``checked``, from ``_check_params``) and a radius of at most
        :data:`MAX_RADIUS`; ``n_features_out_`` is checked by the mixin."""
        if not np.all(np.isfinite(checked)):
            raise refuse(self, "quantiles", "holds NaN or infinite levels")
        if not float(self.radius) <= MAX_RADIUS:
            raise refuse(self, "radius", f"is {self.radius!r}, at most {MAX_RADIUS:g}")

    def output_dimension(self) -> int:
        """Descriptor dimension: 2 half-discs x quantile levels x colour channels."""
        return len(self.quantiles) * 2 * (1 if self.color in ("grey", "gray") else 3)

    def _check_params(self) -> np.ndarray:
        if not (self.radius >= 1):
            raise ValueError(f"radius must be >= 1 pixel, got {self.radius}")
        if int(self.step) < 1:
            raise ValueError(f"step must be a positive integer, got {self.step}")
        q = np.asarray(self.quantiles, dtype=np.float64)
        if q.ndim != 1 or q.size == 0 or np.any((q < 0) | (q > 1)):
            raise ValueError("quantiles must be a non-empty list of levels in [0, 1]")
        if self.color not in COLOR_MODES:
            raise ValueError(f"color must be one of {COLOR_MODES}, got {self.color!r}")
        return q

    def transform(self, X) -> list[Descriptors]:
        images = as_image_list(X)
        if self.n_jobs in (None, 1) or len(images) < 2:
            return [self.describe(im) for im in images]
        return Parallel(n_jobs=self.n_jobs)(delayed(self.describe)(im) for im in images)

    def influence_radius(self, radius: float) -> float:
        """Chebyshev radius beyond which a pixel cannot change a descriptor (the disc)."""
        return float(np.ceil(radius)) + 1.0

    def describe_at(self, image, reference: Descriptors, rows) -> np.ndarray:
        """Recompute the descriptors ``rows`` of ``reference`` on (a changed) ``image``."""
        q = self._check_params()
        img = as_float_image(image)
        stack = np.ascontiguousarray(np.stack(color_channels(img, self.color)), dtype=np.float64)
        centers = np.ascontiguousarray(reference.centers[np.asarray(rows, dtype=np.int64)])
        return _half_disc_quantiles(stack, centers, float(self.radius), q)

    def describe(self, image) -> Descriptors:
        """Descriptors of one image (array or path)."""
        q = self._check_params()
        img = as_float_image(image)
        height, width = img.shape[:2]
        margin = int(math.ceil(self.radius))
        rows = np.arange(margin, height - margin, int(self.step))
        cols = np.arange(margin, width - margin, int(self.step))
        if rows.size == 0 or cols.size == 0:
            need = 2 * margin + 1
            raise ImageError(
                f"image of {height}x{width} pixels is smaller than one colour-quantile "
                f"descriptor (needs at least {need}x{need} for radius {self.radius:g})"
            )
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        centers = np.column_stack([rr.ravel(), cc.ravel()]).astype(np.float64)
        stack = np.ascontiguousarray(np.stack(color_channels(img, self.color)), dtype=np.float64)
        data = _half_disc_quantiles(stack, centers, float(self.radius), q)
        n = centers.shape[0]
        return Descriptors(
            data=data,
            centers=centers,
            half_widths=np.full(n, float(self.radius)),
            orientations=np.zeros(n),
            shapes=np.full(n, DISC, dtype=np.int8),
            scales=np.full(n, float(self.radius)),
            image_shape=(height, width),
            channel=f"quantiles-{self.color}",
        )
