"""Incremental re-encoding for scattered pixels: change any set of pixels, update ``f(x)`` once.

:meth:`IncrementalImage.set_block <bowlrp.evaluation.incremental.IncrementalImage.set_block>`
changes one rectangle. Pixel flipping, ROAD, IROF (a superpixel) and faithfulness
correlation change arbitrary pixel sets; covering them by their bounding box would
recompute descriptors no changed pixel touches. :func:`set_pixels` recomputes exactly
the descriptors whose influence box contains a changed pixel, found for all
descriptors at once from a summed-area table of the changed-pixel mask, and updates
the pooled statistics and the score as ``set_block`` does (the same
:class:`~bowlrp.evaluation.incremental.ChannelState` steps). The result equals
``IncrementalImage.full_score`` to rounding (``tests/test_evaluation_metrics_faithfulness.py``).
"""

from __future__ import annotations

import numpy as np

from .._utils.threads import single_threaded
from .incremental import IncrementalImage


def touched(bounds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Indices of the descriptors whose influence box contains a pixel of ``mask``.

    Parameters
    ----------
    bounds : ndarray (4, N)
        ``lo_y, hi_y, lo_x, hi_x`` of each descriptor (inclusive, in pixels, may be
        fractional or outside the image), as :attr:`ChannelState.bounds`.
    mask : ndarray (H, W) bool

    Returns
    -------
    ndarray (k,) int64, ascending

    Notes
    -----
    Pixel ``(r, c)`` is inside the box when ``lo_y <= r <= hi_y`` and ``lo_x <= c <= hi_x``
    (the test of ``IncrementalImage.affected``), i.e. rows ``ceil(lo_y) .. floor(hi_y)``.
    The count of mask pixels in that range comes from the summed-area table ``S``:
    ``S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0]`` (end-exclusive ``r1, c1``).
    """
    H, W = mask.shape
    S = np.zeros((H + 1, W + 1), dtype=np.int64)
    S[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    lo_y, hi_y, lo_x, hi_x = bounds
    r0 = np.clip(np.ceil(lo_y), 0, H).astype(np.int64)
    r1 = np.clip(np.floor(hi_y) + 1, 0, H).astype(np.int64)
    c0 = np.clip(np.ceil(lo_x), 0, W).astype(np.int64)
    c1 = np.clip(np.floor(hi_x) + 1, 0, W).astype(np.int64)
    r1, c1 = np.maximum(r1, r0), np.maximum(c1, c0)
    count = S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0]
    return np.flatnonzero(count > 0).astype(np.int64)


def set_pixels(state: IncrementalImage, mask: np.ndarray, values: np.ndarray, commit: bool = True) -> float:
    """Replace the pixels of ``mask`` by ``values``; return the new score ``f(x)``.

    Parameters
    ----------
    state : IncrementalImage
    mask : ndarray (H, W) bool
        The pixels to change.
    values : ndarray
        The new values: ``(k,)`` / ``(k, C)`` for the ``k`` mask pixels in row-major
        order, or a whole image ``(H, W[, C])`` whose mask pixels are taken.
    commit : bool
        False leaves the state as it was (one evaluation of a perturbed image).

    Returns
    -------
    float
        The sign-adjusted score of the target, as ``IncrementalImage.score``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != state.image.shape[:2]:
        raise ValueError(f"mask of shape {mask.shape} for an image of shape {state.image.shape[:2]}")
    values = np.asarray(values, dtype=np.float64)
    if values.shape[:2] == state.image.shape[:2] and values.ndim == state.image.ndim:
        values = values[mask]
    with single_threaded():
        old = state.image[mask].copy()
        state.image[mask] = values
        updates = []
        for ch in state.channels:
            rows = touched(ch.bounds, mask)
            if rows.size == 0:
                updates.append((rows, None, None, (ch.pooled, ch.support)))
                continue
            data = ch.extractor.describe_at(state.image, ch.descriptors, rows)
            codes = ch.encoder.compute_codes(data)
            updates.append((rows, data, codes, ch.pooled_after(rows, codes)))
            state.n_recomputed += rows.size
        score, pending = state._score_from([u[3][0] for u in updates])
        if commit:
            for ch, (rows, data, codes, after) in zip(state.channels, updates):
                if rows.size:
                    ch.commit(rows, data, codes, *after)
            state._commit_scores(pending)
            state.score = score
        else:
            state.image[mask] = old
    return score


def touched_share(state: IncrementalImage, mask: np.ndarray) -> float:
    """Share of all descriptors (over the channels) a change of the pixels of ``mask`` recomputes."""
    total = sum(ch.bounds.shape[1] for ch in state.channels)
    return sum(touched(ch.bounds, mask).size for ch in state.channels) / max(total, 1)


def evaluate_pixels(
    state: IncrementalImage, mask, values, commit: bool, incremental: bool, max_share: float = 0.5
) -> float:
    """:func:`set_pixels`, or the same change scored by a full forward pass.

    The full pass (``IncrementalImage.full_score``) is taken when ``incremental`` is
    False (the reference the speed-up is measured against; it leaves the incremental
    statistics alone, so do not mix the two on one committed state), and for an
    uncommitted change that touches more than ``max_share`` of the descriptors
    (:func:`touched_share`), where recomputing them piecewise costs more than one
    forward pass (ROAD's large fractions). Both give the same score to rounding.
    """
    mask = np.asarray(mask, dtype=bool)
    if incremental and (commit or touched_share(state, mask) <= max_share):
        return set_pixels(state, mask, values, commit)
    values = np.asarray(values, dtype=np.float64)
    if values.shape[:2] == state.image.shape[:2] and values.ndim == state.image.ndim:
        values = values[mask]
    old = state.image[mask].copy()
    state.image[mask] = values
    score = state.full_score()
    if not commit:
        state.image[mask] = old
    return score
