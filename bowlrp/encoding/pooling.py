"""Spatial pyramids, p-means pooling of sparse word codes, and normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

NORMALIZATION_STEPS = ("l1", "l2", "power", "cell-l2")


def check_pyramid(pyramid) -> tuple[tuple[int, int], ...]:
    """Validate a pyramid spec such as ``((1, 1), (2, 2), (3, 1))`` (rows, columns)."""
    try:
        levels = tuple((int(r), int(c)) for r, c in pyramid)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pyramid must be a list of (rows, cols) pairs, got {pyramid!r}") from exc
    if not levels or any(r < 1 or c < 1 for r, c in levels):
        raise ValueError(f"pyramid must be a non-empty list of positive (rows, cols), got {pyramid!r}")
    return levels


def pyramid_cells(centers: np.ndarray, image_shape: tuple[int, int],
                  levels: Sequence[tuple[int, int]]) -> tuple[np.ndarray, int]:
    """Global cell index of each descriptor at every pyramid level.

    A descriptor belongs to the cell containing its centre: cell row
    ``floor(cy / H * rows)`` (clipped to ``rows - 1``), column likewise. Cells
    are numbered level by level, row-major inside a level.

    Returns
    -------
    cell_ids : ndarray, shape (N, L), int64
    n_cells : int
    """
    height, width = image_shape
    n = centers.shape[0]
    cell_ids = np.empty((n, len(levels)), dtype=np.int64)
    base = 0
    for i, (rows, cols) in enumerate(levels):
        r = np.clip(np.floor(centers[:, 0] / height * rows), 0, rows - 1).astype(np.int64)
        c = np.clip(np.floor(centers[:, 1] / width * cols), 0, cols - 1).astype(np.int64)
        cell_ids[:, i] = base + r * cols + c
        base += rows * cols
    return cell_ids, base


def parse_normalization(normalization) -> tuple[str, ...]:
    """``"power+l2"`` -> ``("power", "l2")``; None or "none" -> ()."""
    if normalization is None or normalization == "none":
        return ()
    steps = tuple(s.strip() for s in str(normalization).split("+") if s.strip())
    bad = [s for s in steps if s not in NORMALIZATION_STEPS]
    if bad:
        raise ValueError(
            f"unknown normalization step(s) {bad}; use steps from {NORMALIZATION_STEPS} "
            "joined by '+', e.g. 'power+l2'"
        )
    return steps


def normalize(x: np.ndarray, steps: Sequence[str], n_cells: int, power: float = 0.5) -> np.ndarray:
    """Apply normalisation steps in order to one pooled vector (zero vectors stay zero).

    ``l1``: ``x / sum|x|``; ``l2``: ``x / ||x||``; ``power``: ``sign(x) |x|^power``;
    ``cell-l2``: ``l2`` on each pyramid cell's block separately.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    for step in steps:
        if step == "l1":
            s = np.abs(x).sum()
            if s > 0:
                x /= s
        elif step == "l2":
            s = np.sqrt(x @ x)
            if s > 0:
                x /= s
        elif step == "power":
            x = np.sign(x) * np.abs(x) ** power
        elif step == "cell-l2":
            blocks = x.reshape(n_cells, -1)
            norms = np.sqrt(np.einsum("ij,ij->i", blocks, blocks))
            blocks /= np.where(norms > 0, norms, 1.0)[:, None]
            x = blocks.ravel()
    return x


@njit(cache=True)
def pool_words(indices, weights, cell_ids, cell_counts, n_words, n_cells, p, use_max):
    """Pooled word statistics ``z_d`` of one image, shape (n_cells * n_words,).

    Sum / p-means: ``z_{c,d} = sum_{l in c} m_d(l)^p / N_c`` (``x = z^(1/p)``).
    Max: ``z_{c,d} = max_{l in c} m_d(l)`` (mappings are non-negative).
    """
    z = np.zeros(n_cells * n_words)
    n, s = indices.shape
    for l in range(n):
        for lev in range(cell_ids.shape[1]):
            c = cell_ids[l, lev]
            base = c * n_words
            inv = 1.0 / cell_counts[c]
            for j in range(s):
                m = weights[l, j]
                if m == 0.0:
                    continue
                d = base + indices[l, j]
                if use_max:
                    if m > z[d]:
                        z[d] = m
                elif p == 1.0:
                    z[d] += m * inv
                else:
                    z[d] += m**p * inv
    return z
