"""Incremental re-encoding for scattered pixels: change any set of pixels, update ``f(x)`` once.

:meth:`IncrementalImage.set_block <bowlrp.evaluation.incremental.IncrementalImage.set_block>`
changes one rectangle. Pixel flipping, ROAD, IROF (a superpixel) and faithfulness
correlation change arbitrary pixel sets; covering them by their bounding box would
recompute descriptors no changed pixel touches. ``IncrementalImage.set_pixels`` (here
also as the function :func:`set_pixels`) recomputes exactly the descriptors whose
influence box contains a changed pixel, found for all descriptors at once from a
summed-area table of the changed-pixel mask (:func:`~bowlrp.evaluation.incremental.touched`),
and updates the pooled statistics and the score as ``set_block`` does. This module adds
the choice between that and a full forward pass (:func:`evaluate_pixels`). The result equals
``IncrementalImage.full_score`` to rounding (``tests/test_evaluation_metrics_faithfulness.py``).
"""

from __future__ import annotations

import numpy as np

from .incremental import IncrementalImage, touched


def set_pixels(state: IncrementalImage, mask: np.ndarray, values: np.ndarray, commit: bool = True) -> float:
    """:meth:`IncrementalImage.set_pixels <bowlrp.evaluation.incremental.IncrementalImage.set_pixels>`
    as a function: replace the pixels of ``mask`` by ``values``, return the new score."""
    return state.set_pixels(mask, values, commit)


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
