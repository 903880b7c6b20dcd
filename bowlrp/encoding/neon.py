"""NEON: relevance of a word assignment on the descriptor's dimensions (docs/neon.md).

Kauffmann et al., "From clustering to cluster explanations via neural networks"
(IEEE TNNLS 2022): the assignment of a descriptor ``x`` (in vocabulary space, after
the PCA if any) to word ``k`` is the output of a two-layer network,

    h_kj(x) = ||x - c_j||^2 - ||x - c_k||^2 = w_kj . x + b_kj,   w_kj = 2 (c_k - c_j),
    f_k(x) = -(1/beta) log sum_{j in J_k} exp(-beta h_kj(x))     (soft-min over competitors J_k),

and the relevance ``R_lk`` that step 2 gave descriptor ``l`` for word ``k`` goes to the
competitors by the soft-min weights ``p_kj = exp(-beta h_kj) / sum_j' exp(-beta h_kj')``
and on to the input dimensions by the midpoint rule, ``m_kj = (c_k + c_j) / 2``:

    R_li = sum_k sum_{j in J_k} p_kj (x_i - m_kj,i) w_kj,i / h_kj(x) R_lk.

Since ``sum_i (x_i - m_kj,i) w_kj,i = h_kj(x)`` and ``sum_j p_kj = 1``, ``sum_i R_li =
sum_k R_lk`` per descriptor (and per word), exactly up to rounding.

The fast path never forms the (descriptors x words x competitors x dimensions) tensor:
with ``g_lkj = p_kj R_lk / h_kj`` and ``(x - m_kj) * w_kj = 2 x * (c_k - c_j) - (c_k^2 - c_j^2)``
(elementwise), ``R_l = 2 x_l * (M_l C) - M_l (C * C)`` where ``M_lk = sum_j g_lkj -
sum_k' g_lk'k`` is one (N, V) matrix: one (N, V, D) product for the unit outputs, an
O(N s V) pass for ``M`` (``s`` words per descriptor), two (N, V, D) products for ``R``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numba import njit

#: descriptors per block (bounds the (rows, V) temporaries as the forward pass does)
CHUNK = 8192

#: descriptors per block of :func:`neon_relevance` (its temporaries stay in cache)
BLOCK = 256

#: below this sum of shifted exponentials a competitor set is recomputed with its own shift
_UNDERFLOW = 1e-200


def unit_offsets(data: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """``u_lj = ||c_j||^2 - 2 x_l . c_j`` (N, V), so that ``h_kj(x_l) = u_lj - u_lk``."""
    cc = np.einsum("ij,ij->i", centers, centers)
    return cc[None, :] - 2.0 * (data @ centers.T)


@njit(cache=True)
def _slot_direct(u, k, competitors, R, beta, M_row):
    """One word's units with their own exponent shift (the rare path: the shared one underflowed).

    Adds ``g_kj`` to ``M_row``; returns the relevance of tied units (``h_kj = 0``) or of a
    word without competitors, for the even spread.
    """
    if competitors.size == 0:
        return R
    ref = np.inf
    for j in competitors:
        if u[j] < ref:
            ref = u[j]
    total = 0.0
    for j in competitors:
        total += math.exp(-beta * (u[j] - ref))
    scale = R / total
    acc = 0.0
    spread = 0.0
    for j in competitors:
        share = math.exp(-beta * (u[j] - ref)) * scale
        h = u[j] - u[k]
        if h == 0.0:
            spread += share
        else:
            g = share / h
            acc += g
            M_row[j] -= g
    M_row[k] += acc
    return spread


@njit(cache=True)
def _competitors(indices, l, t, after, taken):
    """The competitors of slot ``t``: outside the code and after it (``after``), or the code's others."""
    s = indices.shape[1]
    if after:
        outside = np.flatnonzero(~taken)
        out = np.empty(outside.size + s - t - 1, dtype=np.int64)
        out[: outside.size] = outside
        for q in range(t + 1, s):
            out[outside.size + q - t - 1] = indices[l, q]
        return out
    out = np.empty(s - 1, dtype=np.int64)
    m = 0
    for q in range(s):
        if q != t:
            out[m] = indices[l, q]
            m += 1
    return out


#: fast-math without the no-inf / no-NaN assumptions: the kernel detects ties by an infinite sum
_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


@njit(cache=True, fastmath=_FASTMATH, error_model="numpy")
def _neon_coefficients(U, indices, slot_relevance, after, beta, M, spread):
    """Fill ``M`` (n, V) with ``sum_j g_lkj`` at ``k`` and ``-g_lkj`` at ``j``; ``spread`` (n,).

    The code's ``s`` words are the descriptor's nearest, nearest first. ``after``: the
    competitors of the word in slot ``t`` are every word not in slots ``0..t`` (the words
    ranked after it: hard and rank mappings); otherwise the other words of the code (soft
    assignment). One exponential per word and descriptor, row by row while the row is in
    cache, shifted by the nearest word's ``u``. The competitor
    sums are sums of positive terms (no cancellation), and the inner loops run branch-free
    over contiguous rows (SIMD). A descriptor where a sum underflows (below 1e-200) or a
    unit is tied (``h_kj = 0``: no direction to split along; its ``p_kj R_lk`` goes to
    ``spread``) is redone slot by slot with each slot's own shift.
    O(n s V) for ``after``, O(n s^2) otherwise, plus O(n V) exponentials.
    """
    n, V = U.shape
    s = indices.shape[1]
    e = np.zeros(V)
    code_u = np.empty(s)
    code_e = np.empty(s)
    code_g = np.empty(s)
    c = np.empty(s)
    acc = np.empty(s)
    taken = np.zeros(V, dtype=np.bool_)
    for l in range(n):
        u = U[l]
        row = M[l]
        umin = u[indices[l, 0]]
        for q in range(s):
            umin = min(umin, u[indices[l, q]])
        for q in range(s):
            k = indices[l, q]
            taken[k] = True
            code_u[q] = u[k]
            code_e[q] = math.exp(-beta * (u[k] - umin))
            code_g[q] = 0.0
            acc[q] = 0.0
        tail = 0.0
        if after:
            for j in range(V):
                e[j] = 0.0 if taken[j] else math.exp(-beta * (u[j] - umin))
            for j in range(V):
                tail += e[j]
        # the competitors' sums: the tail (words outside the code) plus the later code words,
        # or (soft) the other code words as prefix + suffix
        slow = False
        suffix = 0.0
        for t in range(s - 1, -1, -1):
            if after:
                total = tail + suffix
            else:
                total = suffix
                for q in range(t):
                    total += code_e[q]
            suffix += code_e[t]
            R = slot_relevance[l, t]
            c[t] = 0.0
            if R != 0.0:
                if total < _UNDERFLOW:
                    slow = True
                else:
                    c[t] = R / total
        if not slow:
            for t in range(s):
                ct = c[t]
                if ct == 0.0:
                    continue
                ukt = code_u[t]
                a = 0.0
                if after:
                    for j in range(V):  # outside the code (e = 0 on the code's words)
                        h = u[j] - ukt
                        g = ct * e[j] / (h if e[j] != 0.0 else 1.0)
                        row[j] -= g
                        a += g
                    for q in range(t + 1, s):
                        g = ct * code_e[q] / (code_u[q] - ukt)
                        code_g[q] += g
                        a += g
                else:
                    for q in range(s):
                        h = code_u[q] - ukt
                        g = ct * (code_e[q] if q != t else 0.0) / (h if q != t else 1.0)
                        code_g[q] += g
                        a += g
                acc[t] = a
            for t in range(s):
                if not math.isfinite(acc[t]):
                    slow = True
        if slow:  # redo this descriptor slot by slot (ties, underflow)
            for j in range(V):
                row[j] = 0.0
            for t in range(s):
                R = slot_relevance[l, t]
                if R != 0.0:
                    comps = _competitors(indices, l, t, after, taken)
                    spread[l] += _slot_direct(u, indices[l, t], comps, R, beta, row)
        else:
            for q in range(s):
                row[indices[l, q]] += acc[q] - code_g[q]
        for q in range(s):
            taken[indices[l, q]] = False


def neon_relevance(
    data: np.ndarray,
    centers: np.ndarray,
    indices: np.ndarray,
    slot_relevance: np.ndarray,
    uniform: np.ndarray,
    after: bool,
    beta: float,
    project: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Relevance of each descriptor dimension from the relevance of each descriptor's words.

    Parameters
    ----------
    data : ndarray (N, D) or (N, D_raw)
        Descriptors in vocabulary space (after the vocabulary's PCA), or raw descriptors
        when ``project`` is given.
    centers : ndarray (V, D)
        The words ``c_j``.
    indices : ndarray (N, s) int
        The words of each descriptor's code, nearest first.
    slot_relevance : ndarray (N, s)
        ``R_lk`` for the word in each slot.
    uniform : ndarray (N,)
        Relevance of descriptor ``l`` that belongs to no word (spread evenly over ``D``).
    after : bool
        Competitors of the word in slot ``t``: the words ranked after it (True; hard and
        rank mappings) or the other words of the code (False; soft assignment).
    beta : float
        Soft-min stiffness.
    project : callable or None
        Maps rows of ``data`` (n, D_raw) to vocabulary space (n, D) float64, applied block
        by block (the vocabulary's PCA); None: ``data`` is in vocabulary space already.

    Returns
    -------
    ndarray (N, D) float64
        ``R_li``; row ``l`` sums to ``slot_relevance[l].sum() + uniform[l]``.

    Notes
    -----
    Descriptors go in blocks of :data:`BLOCK` rows, so that ``x``, ``u = ||c||^2 - 2 x C^T``
    (n, V), ``M`` and ``M [C, C * C]`` stay in cache: per block one (n, D) x (D, V) and one
    (n, V) x (V, 2D) product, the Numba pass for ``M``, and ``R = 2 x * (M C) - M C^2``
    written into the output rows in place. The same products row by row as the whole-array
    form (bit for bit on the benchmark data; tests: the literal network, in blocks of 7).
    """
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    indices = np.ascontiguousarray(indices)
    slot_relevance = np.ascontiguousarray(slot_relevance, dtype=np.float64)
    uniform = np.asarray(uniform, dtype=np.float64)
    N = data.shape[0]
    V, D = centers.shape
    # 2 C is exact: x (2C)^T == 2 (x C^T) bit for bit
    twice_t = np.ascontiguousarray((2.0 * centers).T)
    cc = np.einsum("ij,ij->i", centers, centers)
    both = np.hstack([centers, centers * centers])  # (V, 2D): one product gives M C and M C^2
    out = np.empty((N, D))
    for start in range(0, N, BLOCK):
        rows = slice(start, min(start + BLOCK, N))
        x = np.asarray(data[rows] if project is None else project(data[rows]), dtype=np.float64)
        u = x @ twice_t
        np.subtract(cc, u, out=u)
        M = np.zeros((x.shape[0], V))
        spread = np.array(uniform[rows], dtype=np.float64)
        _neon_coefficients(u, indices[rows], slot_relevance[rows], after, beta, M, spread)
        MC = M @ both
        o = out[rows]
        np.multiply(x, MC[:, :D], out=o)
        o *= 2.0
        o -= MC[:, D:]
        o += spread[:, None] / D
    return out


def nearest_margin_beta(data: np.ndarray, centers: np.ndarray) -> float:
    """``1 / E[f(x)]`` with ``f`` the hard margin ``min_{j != k} h_kj(x)`` of the nearest word.

    The default stiffness for hard and rank mappings: ``beta f`` is then of order one
    on the data the vocabulary was fitted on, whatever the descriptors' scale.

    Parameters
    ----------
    data : ndarray (n, D), descriptors in vocabulary space (n >= 1)
    centers : ndarray (V, D), V >= 2

    Returns
    -------
    float > 0 (1.0 if every descriptor lies on a tie)
    """
    margins = []
    for start in range(0, len(data), CHUNK):
        u = unit_offsets(np.asarray(data[start : start + CHUNK], dtype=np.float64), centers)
        two = np.partition(u, 1, axis=1)[:, :2]
        margins.append(two[:, 1] - two[:, 0])
    mean = float(np.concatenate(margins).mean())
    return 1.0 / mean if mean > 0 and np.isfinite(mean) else 1.0


def soft_min(h: np.ndarray, beta: float) -> np.ndarray:
    """``f = -(1/beta) log sum_j exp(-beta h_j)`` along the last axis (the NEON pooling)."""
    h = np.asarray(h, dtype=np.float64)
    low = h.min(axis=-1, keepdims=True)
    return low[..., 0] - np.log(np.exp(-beta * (h - low)).sum(axis=-1)) / beta


__all__ = ["neon_relevance", "nearest_margin_beta", "soft_min", "unit_offsets"]
