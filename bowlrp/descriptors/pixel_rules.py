"""Step 3 of the relevance pass by geometry alone: the ``Flat`` and ``SIFTBins`` pixel rules.

``Flat`` spreads a descriptor's relevance evenly over the pixels it read,
``R_p = sum_{l : p in area(l)} R_l / |area(l)|`` (docs/math.md, step 3); ``SIFTBins``
(thesis D.1) spreads each of a SIFT descriptor's 16 spatial bins over its own
``b x b`` square. The extractors apply them in ``relevance`` (:mod:`.base`,
:mod:`.sift`); the ``Contribution`` rule is in :mod:`.contribution`.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import RuleError
from .geometry import SIFT_DIMENSIONS, SIFT_ORIENTATIONS, SIFT_SPATIAL_BINS, Descriptors, sift_bin_geometry


def flat(descriptors: Descriptors, relevance: np.ndarray) -> np.ndarray:
    """``R_p = sum_{l : p in area(l)} R_l / |area(l)|``, shape (H, W)."""
    return descriptors.rasterize(relevance)


def sift_bins(descriptors: Descriptors, relevance: np.ndarray, per_dim: np.ndarray) -> np.ndarray:
    """Thesis D.1: each spatial bin's relevance spread over that bin's own pixels.

    Parameters
    ----------
    relevance : (N,) descriptor relevance (used for bins that fall outside the image)
    per_dim : (N, 128 * C) relevance per SIFT dimension, layout [channel][bin_y][bin_x][theta]
    """
    n, D = per_dim.shape
    per_bin_len = SIFT_DIMENSIONS
    if D % per_bin_len:
        raise RuleError(f"SIFTBins needs SIFT descriptors (128 values per channel), got D={D}")
    bins = per_dim.reshape(n, D // per_bin_len, SIFT_SPATIAL_BINS * SIFT_SPATIAL_BINS, SIFT_ORIENTATIONS)
    bins = bins.sum(axis=(1, 3)).ravel()
    geometry = sift_bin_geometry(descriptors)
    outside = geometry.support_sizes() == 0
    leftover = np.zeros(n)
    if outside.any():
        np.add.at(leftover, np.flatnonzero(outside) // (SIFT_SPATIAL_BINS * SIFT_SPATIAL_BINS), bins[outside])
        bins = np.where(outside, 0.0, bins)
    heatmap = geometry.rasterize(bins)
    if outside.any():
        heatmap += descriptors.rasterize(leftover)
    return heatmap
