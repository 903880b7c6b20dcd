"""Spatial pyramids, p-means pooling of sparse word codes, and normalisation."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
from numba import njit

NORMALIZATION_STEPS = ("l1", "l2", "power", "cell-l2")
#: Largest number of rows or columns of a pyramid level, and of cells of a whole pyramid,
#: a fitted encoder may hold (the papers use at most 4 x 4; a model file is data from strangers).
MAX_PYRAMID_SIDE = 64
MAX_PYRAMID_CELLS = 4096


def check_pyramid(pyramid) -> tuple[tuple[int, int], ...]:
    """Validate a pyramid spec such as ``((1, 1), (2, 2), (3, 1))`` (rows, columns)."""
    try:
        levels = tuple((int(r), int(c)) for r, c in pyramid)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pyramid must be a list of (rows, cols) pairs, got {pyramid!r}") from exc
    if not levels or any(r < 1 or c < 1 for r, c in levels):
        raise ValueError(f"pyramid must be a non-empty list of positive (rows, cols), got {pyramid!r}")
    return levels


def pyramid_cells(
    centers: np.ndarray, image_shape: tuple[int, int], levels: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, int]:
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


@njit(cache=True, inline="always")
def _abs_pow(a, q):
    """``a^q`` for ``a > 0``, with the exact forms NumPy uses for q = 0.5, 1, 2."""
    if q == 1.0:
        return a
    if q == 2.0:
        return a * a
    if q == 0.5:
        return np.sqrt(a)
    return a**q


@njit(cache=True)
def _chunk_stats(z, w, chunks, size, exponents, final):
    """Per chunk ``j`` of ``size`` dims: ``sum |z|^q`` for each q, then ``sum w sign(z) |z|^final``.

    One loop per statistic over a chunk (no per-element branches on the exponent).
    """
    n_q = exponents.shape[0]
    out = np.zeros((chunks.shape[0], n_q + 1))
    a = np.empty(size)
    for i in range(chunks.shape[0]):
        start = chunks[i] * size
        for d in range(size):
            a[d] = abs(z[start + d])
        for j in range(n_q + 1):
            q = exponents[j] if j < n_q else final
            s = 0.0
            if j == n_q:  # the weighted signed power
                for d in range(size):
                    v = z[start + d]
                    t = w[start + d] * _abs_pow(a[d], q)
                    s += t if v > 0 else (-t if v < 0 else 0.0)
            elif q == 1.0:
                for d in range(size):
                    s += a[d]
            elif q == 2.0:
                for d in range(size):
                    s += a[d] * a[d]
            else:
                for d in range(size):
                    s += _abs_pow(a[d], q) if a[d] > 0 else 0.0
            out[i, j] = s
    return out


@njit(cache=True)
def _changed_chunks(old, new, size):
    """Indices of the chunks of ``size`` dims where ``old`` and ``new`` differ."""
    n = old.shape[0] // size
    hit = np.zeros(n, dtype=np.bool_)
    count = 0
    for i in range(n):
        for d in range(i * size, (i + 1) * size):
            if old[d] != new[d]:
                hit[i] = True
                count += 1
                break
    out = np.empty(count, dtype=np.int64)
    j = 0
    for i in range(n):
        if hit[i]:
            out[j] = i
            j += 1
    return out


def _chunk_size(block: int, cap: int = 64) -> int:
    """Largest divisor of ``block`` that is at most ``cap`` (chunks never straddle cells)."""
    for size in range(min(cap, block), 0, -1):
        if block % size == 0:
            return size
    return 1  # pragma: no cover - block >= 1


class LinearScore:
    """``w . normalize(sign(z) |z|^e)`` kept up to date as the pooled vector ``z`` changes.

    Every step of :func:`normalize` maps ``x = a_c h(z)`` (a positive factor per
    pyramid cell times an elementwise signed power of ``z``) to the same form:
    ``power`` raises ``h``'s exponent and ``a_c`` to ``p``, and ``l1``, ``l2``,
    ``cell-l2`` divide ``a`` by norms that are sums over cells of
    ``S_c(q) = sum_{d in c} |z_d|^q``. So ``w . x = sum_c a_c T_c`` with
    ``T_c = sum_{d in c} w_d sign(z_d) |z_d|^P`` needs only these per-cell sums,
    which are kept per chunk of dimensions: a changed ``z`` recomputes the sums
    of the chunks it changes from their new values (no running sums, hence no
    drift), and the score costs a pass over the changed chunks instead of the
    normalisation and product of all ``V`` dimensions. Equal to
    ``w @ normalize(z ** e, steps, ...)`` up to the order of the sums (rounding).

    Parameters
    ----------
    weights : ndarray (V,)
        The linear weights of this channel's dimensions.
    pooled : ndarray (V,)
        The current pooled statistics ``z`` (non-negative if ``exponent != 1``).
    steps : sequence of str
        Normalisation steps (:func:`parse_normalization`).
    n_cells : int
    power : float
        Exponent of the ``power`` steps.
    exponent : float
        Elementwise exponent applied before normalising (``1/p`` of p-means pooling).
    """

    def __init__(
        self,
        weights: np.ndarray,
        pooled: np.ndarray,
        steps: Sequence[str],
        n_cells: int,
        power: float,
        exponent: float = 1.0,
    ):
        self.weights = np.ascontiguousarray(weights, dtype=np.float64)
        self.n_cells = int(n_cells)
        if self.weights.shape != pooled.shape or pooled.size % self.n_cells:
            raise ValueError("weights and pooled must have the same length, a multiple of n_cells")
        self.size = _chunk_size(pooled.size // self.n_cells)
        P = float(exponent)
        exponents: list[float] = []
        self.program: list[tuple[str, float | int]] = []
        for step in steps:
            if step not in NORMALIZATION_STEPS:
                raise ValueError(f"unknown normalization step {step!r}")
            if step == "power":
                P *= float(power)
                self.program.append(("power", float(power)))
            else:
                q = P if step == "l1" else 2.0 * P
                if q not in exponents:
                    exponents.append(q)
                self.program.append((step, exponents.index(q)))
        self.exponents = np.array(exponents, dtype=np.float64)
        self.final = P
        self.stats = self._stats(pooled, np.arange(pooled.size // self.size))

    def _stats(self, pooled: np.ndarray, chunks: np.ndarray) -> np.ndarray:
        return _chunk_stats(
            np.ascontiguousarray(pooled, dtype=np.float64),
            self.weights,
            chunks.astype(np.int64),
            self.size,
            self.exponents,
            self.final,
        )

    def changed(self, old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Chunks where ``new`` differs from ``old`` and their statistics under ``new``."""
        chunks = _changed_chunks(
            np.ascontiguousarray(old, dtype=np.float64),
            np.ascontiguousarray(new, dtype=np.float64),
            self.size,
        )
        return chunks, self._stats(new, chunks)

    def value(self, chunks: np.ndarray | None = None, rows: np.ndarray | None = None) -> float:
        """``w . x`` with the statistics of ``chunks`` replaced by ``rows`` (state unchanged)."""
        stats = self.stats
        if chunks is not None and chunks.size:
            stats = stats.copy()
            stats[chunks] = rows
        S = stats.reshape(self.n_cells, -1, stats.shape[1]).sum(axis=1)  # (C, n_q + 1)
        a = np.ones(self.n_cells)
        for step, arg in self.program:
            if step == "power":
                a = a**arg
            elif step == "l1":
                s = a @ S[:, arg]
                if s > 0:
                    a = a / s
            elif step == "l2":
                s = np.sqrt((a * a) @ S[:, arg])
                if s > 0:
                    a = a / s
            else:  # cell-l2
                norms = a * np.sqrt(S[:, arg])
                a = np.where(norms > 0, a / np.where(norms > 0, norms, 1.0), a)
        return float(a @ S[:, -1])

    def copy(self) -> LinearScore:
        """A copy with its own statistics."""
        new = copy.copy(self)
        new.stats = self.stats.copy()
        return new

    def commit(self, chunks: np.ndarray, rows: np.ndarray) -> None:
        """Make the statistics of ``chunks`` the current ones."""
        self.stats[chunks] = rows
