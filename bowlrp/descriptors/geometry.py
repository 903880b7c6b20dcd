"""Descriptor sets with exact pixel geometry, and flat rasterisation onto pixels.

Every local descriptor ``l`` remembers the set of pixels it read, ``area(l)``,
clipped to the image. A pixel ``(r, c)`` (integer row/column, its centre at
those coordinates) belongs to ``area(l)`` when, with ``dy = r - cy`` and
``dx = c - cx``:

* ``SQUARE``:          ``max(|dy|, |dx|) <= h``
* ``ROTATED_SQUARE``:  ``max(|dx cos t + dy sin t|, |-dx sin t + dy cos t|) <= h``
* ``DISC``:            ``dx**2 + dy**2 <= h**2``

where ``(cy, cx)`` is the centre, ``h`` the half width (radius) and ``t`` the
orientation in radians (counter-clockwise in image coordinates with the row
axis pointing down, i.e. measured from +x towards -y... see ``DenseSIFT`` for
the convention each extractor uses). A tolerance of 1e-9 pixels makes points
exactly on the boundary count as inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

SQUARE = 0
ROTATED_SQUARE = 1
DISC = 2

_TOL = 1e-9

#: the layout of one SIFT descriptor (VLFeat and OpenCV): a SIFT_SPATIAL_BINS x
#: SIFT_SPATIAL_BINS grid of spatial bins x SIFT_ORIENTATIONS orientations,
#: ``[bin_y][bin_x][theta]``, SIFT_DIMENSIONS values per colour channel
SIFT_SPATIAL_BINS = 4
SIFT_ORIENTATIONS = 8
SIFT_DIMENSIONS = SIFT_SPATIAL_BINS * SIFT_SPATIAL_BINS * SIFT_ORIENTATIONS


@njit(cache=True, inline="always")
def _inside(shape, cy, cx, h, cos_t, sin_t, r, c):
    dy = r - cy
    dx = c - cx
    if shape == SQUARE:
        return abs(dy) <= h + _TOL and abs(dx) <= h + _TOL
    if shape == ROTATED_SQUARE:
        u = dx * cos_t + dy * sin_t
        v = -dx * sin_t + dy * cos_t
        return abs(u) <= h + _TOL and abs(v) <= h + _TOL
    return dx * dx + dy * dy <= h * h + _TOL


@njit(cache=True, inline="always")
def _extent(shape, h, cos_t, sin_t):
    if shape == ROTATED_SQUARE:
        return h * (abs(cos_t) + abs(sin_t))
    return h


@njit(cache=True)
def _bbox(shape, cy, cx, h, cos_t, sin_t, height, width):
    e = _extent(shape, h, cos_t, sin_t)
    r0 = max(0, int(np.ceil(cy - e - _TOL)))
    r1 = min(height - 1, int(np.floor(cy + e + _TOL)))
    c0 = max(0, int(np.ceil(cx - e - _TOL)))
    c1 = min(width - 1, int(np.floor(cx + e + _TOL)))
    return r0, r1, c0, c1


@njit(cache=True)
def _support_sizes(centers, half_widths, orientations, shapes, height, width):
    n = centers.shape[0]
    sizes = np.zeros(n, dtype=np.int64)
    for i in range(n):
        cy, cx, h, s = centers[i, 0], centers[i, 1], half_widths[i], shapes[i]
        cos_t, sin_t = np.cos(orientations[i]), np.sin(orientations[i])
        r0, r1, c0, c1 = _bbox(s, cy, cx, h, cos_t, sin_t, height, width)
        if s == SQUARE:
            sizes[i] = max(0, r1 - r0 + 1) * max(0, c1 - c0 + 1)
            continue
        count = 0
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                if _inside(s, cy, cx, h, cos_t, sin_t, r, c):
                    count += 1
        sizes[i] = count
    return sizes


@njit(cache=True)
def _rasterize(values, sizes, centers, half_widths, orientations, shapes, height, width):
    """Flat redistribution: pixel map with ``R_p = sum_{l: p in area(l)} v_l / |area(l)|``."""
    out = np.zeros((height, width), dtype=np.float64)
    diff = np.zeros((height + 1, width + 1), dtype=np.float64)
    any_square = False
    for i in range(values.shape[0]):
        if sizes[i] == 0 or values[i] == 0.0:
            continue
        share = values[i] / sizes[i]
        cy, cx, h, s = centers[i, 0], centers[i, 1], half_widths[i], shapes[i]
        cos_t, sin_t = np.cos(orientations[i]), np.sin(orientations[i])
        r0, r1, c0, c1 = _bbox(s, cy, cx, h, cos_t, sin_t, height, width)
        if s == SQUARE:
            any_square = True
            diff[r0, c0] += share
            diff[r0, c1 + 1] -= share
            diff[r1 + 1, c0] -= share
            diff[r1 + 1, c1 + 1] += share
            continue
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                if _inside(s, cy, cx, h, cos_t, sin_t, r, c):
                    out[r, c] += share
    if any_square:
        for r in range(height):
            run = 0.0
            for c in range(width):
                run += diff[r, c]
                diff[r, c] = run
        for r in range(1, height):
            for c in range(width):
                diff[r, c] += diff[r - 1, c]
        for r in range(height):
            for c in range(width):
                out[r, c] += diff[r, c]
    return out


@dataclass
class Descriptors:
    """The local descriptors of one image and the exact pixels each one read.

    Attributes
    ----------
    data : ndarray, shape (N, D), float32
        One descriptor per row.
    centers : ndarray, shape (N, 2), float64
        Centre of each descriptor's support as (row, column), 0-based pixels.
    half_widths : ndarray, shape (N,), float64
        Half side of the (rotated) square support, or radius of the disc.
    orientations : ndarray, shape (N,), float64
        Orientation in radians of a rotated support (0 for axis-aligned and discs).
    shapes : ndarray, shape (N,), int8
        Support shape code: 0 square, 1 rotated square, 2 disc.
    scales : ndarray, shape (N,), float64
        The extractor's own scale parameter (SIFT bin size, quantile disc radius).
    image_shape : tuple (H, W)
        Shape of the image the descriptors were computed on.
    channel : str
        Name of the feature channel (e.g. ``"sift-grey"``, ``"quantiles-rgb"``).
    """

    data: np.ndarray
    centers: np.ndarray
    half_widths: np.ndarray
    orientations: np.ndarray
    shapes: np.ndarray
    scales: np.ndarray
    image_shape: tuple[int, int]
    channel: str = ""
    _sizes: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.data = np.ascontiguousarray(self.data, dtype=np.float32)
        if self.data.ndim != 2:
            raise ValueError(f"descriptor data must be 2-D (N, D), got shape {self.data.shape}")
        n = self.data.shape[0]
        self.centers = np.ascontiguousarray(self.centers, dtype=np.float64).reshape(n, 2)
        self.half_widths = np.ascontiguousarray(self.half_widths, dtype=np.float64).reshape(n)
        self.orientations = np.ascontiguousarray(self.orientations, dtype=np.float64).reshape(n)
        self.shapes = np.ascontiguousarray(self.shapes, dtype=np.int8).reshape(n)
        self.scales = np.ascontiguousarray(self.scales, dtype=np.float64).reshape(n)
        self.image_shape = (int(self.image_shape[0]), int(self.image_shape[1]))
        if not np.all(np.isfinite(self.data)):
            raise ValueError("descriptor data contains NaN or infinite values")
        if n and np.any(self.half_widths < 0.5):
            raise ValueError("descriptor supports must have a half width of at least 0.5 pixel")

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def n_features(self) -> int:
        return self.data.shape[1]

    def support_sizes(self) -> np.ndarray:
        """Number of pixels in each descriptor's clipped support, shape (N,), int64."""
        if self._sizes is None:
            h, w = self.image_shape
            self._sizes = _support_sizes(self.centers, self.half_widths, self.orientations, self.shapes, h, w)
        return self._sizes

    def support_mask(self, index: int) -> np.ndarray:
        """Boolean (H, W) mask of the pixels descriptor ``index`` read (slow; for checks)."""
        h, w = self.image_shape
        rows, cols = np.mgrid[0:h, 0:w]
        cy, cx = self.centers[index]
        half = self.half_widths[index]
        t = self.orientations[index]
        dy, dx = rows - cy, cols - cx
        shape = int(self.shapes[index])
        if shape == SQUARE:
            return (np.abs(dy) <= half + _TOL) & (np.abs(dx) <= half + _TOL)
        if shape == ROTATED_SQUARE:
            u = dx * np.cos(t) + dy * np.sin(t)
            v = -dx * np.sin(t) + dy * np.cos(t)
            return (np.abs(u) <= half + _TOL) & (np.abs(v) <= half + _TOL)
        return dx * dx + dy * dy <= half * half + _TOL

    def rasterize(self, values, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Spread one value per descriptor evenly over its clipped pixel support.

        Implements ``R_p = sum_{l : p in area(l)} R_l / |area(l)|`` (docs/math.md §2, step 3),
        so that ``R.sum() == values.sum()`` up to rounding.

        Parameters
        ----------
        values : array_like, shape (N,)
            One value per descriptor (e.g. descriptor relevance ``R_l``).
        shape : tuple (H, W), optional
            Must equal ``image_shape`` if given.

        Returns
        -------
        ndarray, shape (H, W), float64
        """
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(self),):
            raise ValueError(f"values must have shape ({len(self)},), got {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError("values contain NaN or infinite entries")
        if shape is not None and tuple(shape) != self.image_shape:
            raise ValueError(f"shape {tuple(shape)} differs from image shape {self.image_shape}")
        h, w = self.image_shape
        return _rasterize(
            values,
            self.support_sizes(),
            self.centers,
            self.half_widths,
            self.orientations,
            self.shapes,
            h,
            w,
        )

    def subset(self, index) -> Descriptors:
        """The descriptors selected by ``index`` (boolean mask or integer array)."""
        return Descriptors(
            self.data[index],
            self.centers[index],
            self.half_widths[index],
            self.orientations[index],
            self.shapes[index],
            self.scales[index],
            self.image_shape,
            self.channel,
        )

    @classmethod
    def concatenate(cls, parts: list[Descriptors]) -> Descriptors:
        """Stack descriptor sets of one image with equal dimension ``D``."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        return cls(
            np.concatenate([p.data for p in parts]),
            np.concatenate([p.centers for p in parts]),
            np.concatenate([p.half_widths for p in parts]),
            np.concatenate([p.orientations for p in parts]),
            np.concatenate([p.shapes for p in parts]),
            np.concatenate([p.scales for p in parts]),
            first.image_shape,
            first.channel,
        )


def sift_bin_geometry(descriptors: Descriptors) -> Descriptors:
    """The 16 spatial bins of every SIFT descriptor as (rotated) squares of side ``b``.

    Bin ``(i, j)`` (row, column of the 4 x 4 grid, the descriptor layout
    ``[bin_y, bin_x, theta]`` of VLFeat and OpenCV) is centred at
    ``u = (j - 1.5) b``, ``v = (i - 1.5) b`` in the descriptor's frame,
    i.e. ``dx = u cos t - v sin t``, ``dy = u sin t + v cos t`` in the image.
    Rows are ordered descriptor-major, then bin row, then bin column.
    """
    n = len(descriptors)
    b = descriptors.scales
    t = descriptors.orientations
    offsets = np.arange(SIFT_SPATIAL_BINS) - 1.5
    v, u = np.meshgrid(offsets, offsets, indexing="ij")
    u, v = u.ravel(), v.ravel()
    cos_t, sin_t = np.cos(t)[:, None], np.sin(t)[:, None]
    dx = (u[None, :] * cos_t - v[None, :] * sin_t) * b[:, None]
    dy = (u[None, :] * sin_t + v[None, :] * cos_t) * b[:, None]
    centers = np.stack([descriptors.centers[:, :1] + dy, descriptors.centers[:, 1:] + dx], axis=2)
    k = SIFT_SPATIAL_BINS * SIFT_SPATIAL_BINS
    return Descriptors(
        data=np.zeros((n * k, 0), dtype=np.float32),
        centers=centers.reshape(-1, 2),
        half_widths=np.repeat(b / 2.0, k),
        orientations=np.repeat(t, k),
        shapes=np.where(np.repeat(descriptors.shapes, k) == SQUARE, SQUARE, ROTATED_SQUARE),
        scales=np.repeat(b, k),
        image_shape=descriptors.image_shape,
    )
