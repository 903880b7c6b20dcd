"""Step 3 of the relevance pass: descriptors -> pixels (flat, or per SIFT spatial bin)."""

from __future__ import annotations

import numpy as np

from .descriptors.geometry import ROTATED_SQUARE, SQUARE, Descriptors
from .exceptions import RuleError
from .rules import Flat, SIFTBins, require

_SIFT_BINS, _SIFT_ORIENTATIONS = 4, 8


def flat(descriptors: Descriptors, relevance: np.ndarray) -> np.ndarray:
    """``R_p = sum_{l : p in area(l)} R_l / |area(l)|``, shape (H, W)."""
    return descriptors.rasterize(relevance)


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
    offsets = (np.arange(_SIFT_BINS) - 1.5)
    v, u = np.meshgrid(offsets, offsets, indexing="ij")
    u, v = u.ravel(), v.ravel()
    cos_t, sin_t = np.cos(t)[:, None], np.sin(t)[:, None]
    dx = (u[None, :] * cos_t - v[None, :] * sin_t) * b[:, None]
    dy = (u[None, :] * sin_t + v[None, :] * cos_t) * b[:, None]
    centers = np.stack([descriptors.centers[:, :1] + dy, descriptors.centers[:, 1:] + dx], axis=2)
    k = _SIFT_BINS * _SIFT_BINS
    return Descriptors(
        data=np.zeros((n * k, 0), dtype=np.float32),
        centers=centers.reshape(-1, 2),
        half_widths=np.repeat(b / 2.0, k),
        orientations=np.repeat(t, k),
        shapes=np.where(np.repeat(descriptors.shapes, k) == SQUARE, SQUARE, ROTATED_SQUARE),
        scales=np.repeat(b, k),
        image_shape=descriptors.image_shape,
    )


def sift_bins(descriptors: Descriptors, relevance: np.ndarray, per_dim: np.ndarray) -> np.ndarray:
    """Thesis D.1: each spatial bin's relevance spread over that bin's own pixels.

    Parameters
    ----------
    relevance : (N,) descriptor relevance (used for bins that fall outside the image)
    per_dim : (N, 128 * C) relevance per SIFT dimension, layout [channel][bin_y][bin_x][theta]
    """
    n, D = per_dim.shape
    per_bin_len = _SIFT_BINS * _SIFT_BINS * _SIFT_ORIENTATIONS
    if D % per_bin_len:
        raise RuleError(f"SIFTBins needs SIFT descriptors (128 values per channel), got D={D}")
    bins = per_dim.reshape(n, D // per_bin_len, _SIFT_BINS * _SIFT_BINS, _SIFT_ORIENTATIONS)
    bins = bins.sum(axis=(1, 3)).ravel()
    geometry = sift_bin_geometry(descriptors)
    outside = geometry.support_sizes() == 0
    leftover = np.zeros(n)
    if outside.any():
        np.add.at(leftover, np.flatnonzero(outside) // (_SIFT_BINS * _SIFT_BINS), bins[outside])
        bins = np.where(outside, 0.0, bins)
    heatmap = geometry.rasterize(bins)
    if outside.any():
        heatmap += descriptors.rasterize(leftover)
    return heatmap


def through_pca(per_dim: np.ndarray, descriptors: Descriptors, vocabulary, epsilon: float):
    """Relevance per original descriptor dimension from the relevance per PCA dimension.

    With centred inputs ``l - m`` and ``y = W (l - m)``:
    ``R_j = sum_i W_ij (l_j - m_j) / (y_i + eps sign y_i) R_i``, exact for eps = 0.
    """
    pca = getattr(vocabulary, "pca_", None)
    if pca is None:
        return per_dim
    centred = descriptors.data.astype(np.float64) - pca.mean_
    y = centred @ pca.components_.T
    denom = y + epsilon * np.where(y >= 0, 1.0, -1.0)
    ratio = np.divide(per_dim, denom, out=np.zeros_like(per_dim), where=denom != 0)
    lost = per_dim * (denom == 0)
    out = centred * (ratio @ pca.components_)
    if lost.any():
        out += lost.sum(axis=1, keepdims=True) / out.shape[1]
    return out


def pixel_rule_check(rule):
    return require(rule, (Flat, SIFTBins), "the pixel step")
