"""Fisher vectors over a diagonal GMM (docs/math.md §1, layer 3), pooled per pyramid cell.

Per descriptor ``l`` (after PCA) with posteriors ``gamma_k(l)``:

    Psi_pi_k(l)    = (gamma_k(l) - pi_k) / sqrt(pi_k)
    Psi_mu_k(l)    = gamma_k(l) (l - mu_k) / (sigma_k sqrt(pi_k))
    Psi_sigma_k(l) = gamma_k(l) ((l - mu_k)^2 / sigma_k^2 - 1) / sqrt(2 pi_k)

mean-pooled per cell (``1/N_c``). Posteriors come from BLAS in chunks and are
kept sparse; the pooled sums are then accumulated by one streaming Numba pass
over (descriptor, component) pairs, never through the per-descriptor N x 2KD
matrix. The same pass (in the order the relevance pass uses) gives the positive
and negative parts ``z+_d``, ``z-_d`` that the AlphaBeta and AbsZ rules need.
Posteriors below ``posterior_threshold``
(VLFeat: 1e-6) are dropped without renormalising, as VLFeat does; the
relevance pass uses the same sparse posteriors, so conservation is exact.

Layout of one cell's block: ``[pi (K, if included) | mu (K x D) | sigma (K x D)]``
with ``k`` major, i.e. VLFeat's ``[u_1 .. u_K | v_1 .. v_K]`` for the default
``parts=("mu", "sigma")``; cells follow each other level by level.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit, prange
from sklearn.base import clone

from ..rules import AbsZ, AlphaBeta, Epsilon, require
from .base import Encoder, coefficients_from_rule
from .gmm import POSTERIOR_RTOL, log_likelihood_terms, mixed_posteriors, square_features
from .vocabulary import GMMVocabulary

FISHER_PARTS = ("pi", "mu", "sigma")
_CHUNK = 16384
#: Log-likelihood arithmetic of :meth:`FisherVector.compute_codes` (see :func:`sparse_posteriors`).
#: "float64": the mixed path was not faster per image on the 2-core machine (BENCHMARKS.md, issue 29).
POSTERIOR_PRECISION = "float64"


def sparse_posteriors(
    data, means, variances, weights, threshold, precision: str = "float64"
) -> sp.csr_matrix:
    """GMM posteriors with entries below ``threshold`` dropped (not renormalised), CSR (N, K).

    Per chunk of descriptors one GEMM gives the log-likelihoods,
    ``log pi_k + log N(l) = const_k + [l^2, l] @ [-1/(2 sigma^2); mu / sigma^2]``,
    and a parallel Numba pass turns them into thresholded sparse rows.

    ``precision="mixed"`` computes the GEMM in float32, recomputes in float64
    every entry that can reach ``threshold`` (and enough of the next ones), and takes the
    rest of the softmax denominator from float32
    (:func:`~bowlrp.encoding.gmm.mixed_posteriors`): every kept posterior is within
    ``POSTERIOR_RTOL`` (1e-9) relative of the float64 one, certified per row by the
    float32 error bound. ``precision="float64"`` (default) is one float64 GEMM (the reference).
    The two agree on which entries are kept except for posteriors within that
    tolerance of ``threshold``. ``threshold <= 0`` (every entry kept) always uses float64.
    """
    if precision not in ("mixed", "float64"):
        raise ValueError(f"precision must be 'mixed' or 'float64', got {precision!r}")
    mixed = precision == "mixed" and threshold > 0
    weights_matrix, const = log_likelihood_terms(means, variances, weights)  # (2D, K), (K,)
    weights32 = weights_matrix.astype(np.float32) if mixed else None
    indptr = [np.zeros(1, dtype=np.int64)]
    indices, values = [], []
    offset = 0
    D = data.shape[1]
    features = np.empty((min(_CHUNK, data.shape[0]), 2 * D))  # [l^2, l], reused per chunk
    # the log-likelihoods of a chunk, reused too: a fresh (_CHUNK, K) array per chunk is a
    # fresh mapping whose pages fault in again every time
    loglik = None if mixed else np.empty((min(_CHUNK, data.shape[0]), means.shape[0]))
    for start in range(0, data.shape[0], _CHUNK):
        chunk = data[start : start + _CHUNK]
        rows = square_features(chunk, features)
        if mixed:
            ptr, cols, vals = mixed_posteriors(
                rows, weights_matrix, const, threshold, rtol=POSTERIOR_RTOL, W32=weights32
            )
            counts = np.diff(ptr)
        else:
            block = np.matmul(rows, weights_matrix, out=loglik[: len(rows)])
            counts, cols, vals = _softmax_rows_to_sparse(block, const, threshold)
        indptr.append(offset + np.cumsum(counts))
        offset += int(counts.sum())
        indices.append(cols)
        values.append(vals)
    return sp.csr_matrix(
        (np.concatenate(values), np.concatenate(indices), np.concatenate(indptr)),
        shape=(data.shape[0], means.shape[0]),
    )


# exp(-45) * 256 components < 1e-17: terms this far below a row's maximum do not change
# the float64 softmax denominator (which is >= 1), so their exp is never evaluated.
_NEGLIGIBLE = -45.0


@njit(cache=True, parallel=True)
def _softmax_rows_to_sparse(loglik, const, threshold):
    """Thresholded softmax of each row of ``loglik + const``; ``loglik`` is overwritten.

    ``gamma_k = exp(v_k - max v) / sum_j exp(v_j - max v)``; a term with
    ``v_k - max v < min(-45, log threshold)`` has ``gamma_k < threshold`` (dropped) and
    adds less than 1e-17 to a denominator >= 1, so its exponential is not computed.
    """
    n, K = loglik.shape
    cutoff = _NEGLIGIBLE
    if threshold <= 0.0:
        cutoff = -np.inf
    elif np.log(threshold) < cutoff:
        cutoff = np.log(threshold)
    counts = np.zeros(n, dtype=np.int64)
    for l in prange(n):
        post = loglik[l]
        top = -np.inf
        for k in range(K):
            v = post[k] + const[k]
            post[k] = v
            if v > top:
                top = v
        total = 0.0
        for k in range(K):
            v = post[k] - top
            if v >= cutoff:
                e = np.exp(v)
                post[k] = e
                total += e
            else:
                post[k] = 0.0
        c = 0
        for k in range(K):
            if post[k] > 0.0:
                g = post[k] / total
                post[k] = g
                if g >= threshold:
                    c += 1
            elif threshold <= 0.0:
                c += 1
        counts[l] = c
    starts = np.zeros(n + 1, dtype=np.int64)
    for l in range(n):
        starts[l + 1] = starts[l] + counts[l]
    cols = np.empty(starts[n], dtype=np.int32)
    vals = np.empty(starts[n])
    for l in prange(n):
        j = starts[l]
        post = loglik[l]
        for k in range(K):
            if post[k] >= threshold and (post[k] > 0.0 or threshold <= 0.0):
                cols[j] = k
                vals[j] = post[k]
                j += 1
    return counts, cols, vals


def replace_rows(A: sp.csr_matrix, rows, B: sp.csr_matrix) -> sp.csr_matrix:
    """CSR matrix ``A`` with ``A[rows[i]]`` replaced by ``B[i]`` (``rows`` distinct), O(nnz).

    The rows of ``A`` between two replaced rows are copied as one block.
    """
    rows = np.asarray(rows, dtype=np.int64).ravel()
    order = np.argsort(rows, kind="stable")
    indptr, indices, data = _replace_rows(
        A.indptr, A.indices, A.data, B.indptr, B.indices, B.data, rows[order], order.astype(np.int64)
    )
    return sp.csr_matrix((data, indices, indptr), shape=A.shape)


@njit(cache=True)
def _replace_rows(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, rows, source):
    """CSR arrays of A with row ``rows[i]`` (ascending) replaced by row ``source[i]`` of B."""
    n = a_ptr.shape[0] - 1
    indptr = np.empty(n + 1, dtype=np.int64)
    indptr[0] = 0
    prev = 0  # next row of A not yet placed
    shift = np.int64(0)  # indptr[r] - a_ptr[r] for the rows since the last replacement
    for i in range(rows.shape[0]):
        r = rows[i]
        for q in range(prev + 1, r + 1):
            indptr[q] = a_ptr[q] + shift
        s = source[i]
        indptr[r + 1] = indptr[r] + (b_ptr[s + 1] - b_ptr[s])
        shift = indptr[r + 1] - a_ptr[r + 1]
        prev = r + 1
    for q in range(prev + 1, n + 1):
        indptr[q] = a_ptr[q] + shift
    indices = np.empty(indptr[n], dtype=a_idx.dtype)
    values = np.empty(indptr[n], dtype=a_val.dtype)
    prev = 0
    for i in range(rows.shape[0] + 1):
        r = rows[i] if i < rows.shape[0] else n
        lo, hi = a_ptr[prev], a_ptr[r]  # unchanged rows prev .. r-1 in one block
        out = indptr[prev]
        indices[out : out + hi - lo] = a_idx[lo:hi]
        values[out : out + hi - lo] = a_val[lo:hi]
        if i < rows.shape[0]:
            s = source[i]
            lo, hi = b_ptr[s], b_ptr[s + 1]
            out = indptr[r]
            indices[out : out + hi - lo] = b_idx[lo:hi]
            values[out : out + hi - lo] = b_val[lo:hi]
            prev = r + 1
    return indptr, indices, values


_N_CHUNKS = 64
_SERIAL_BELOW = 8192  # descriptors; below this one partial sum (no per-thread buffers)


def pyramid_regions(cell_ids: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """The finest partition the pyramid levels induce: its regions and their cells.

    A region is a set of descriptors that share their cell at every level (for
    1x1 + 2x2 + 3x1: at most 8 regions). Pooled statistics are sums over each
    cell, ``z_cd = sum_{l in c} z_ld``, and every cell is a union of regions, so
    each (descriptor, component) pair is accumulated once per region instead of
    once per level.

    Parameters
    ----------
    cell_ids : ndarray (N, L) int
        Global cell of each descriptor per level.
    n_cells : int
        Number of cells over all levels.

    Returns
    -------
    region : ndarray (N,) int64, region of each descriptor
    region_cells : ndarray (R, L) int64, the cell of each region at each level
    """
    cell_ids = np.asarray(cell_ids, dtype=np.int64)
    n, levels = cell_ids.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, levels), dtype=np.int64)
    if float(max(n_cells, 1)) ** levels < 2.0**62:
        key = np.zeros(n, dtype=np.int64)
        for lev in range(levels):
            key = key * max(n_cells, 1) + cell_ids[:, lev]
        _, first, region = np.unique(key, return_index=True, return_inverse=True)
    else:  # pragma: no cover - pyramids with more than ~2**62 cell combinations
        _, first, region = np.unique(cell_ids, axis=0, return_index=True, return_inverse=True)
    return region.astype(np.int64).ravel(), cell_ids[first]


def _region_to_cells(region_cells: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``W`` (C, R): ``W[c, r] = 1 / N_c`` if region r lies in cell c, else 0."""
    W = np.zeros((len(counts), len(region_cells)))
    inv = 1.0 / np.maximum(counts, 1)
    for lev in range(region_cells.shape[1]):
        cells = region_cells[:, lev]
        W[cells, np.arange(len(region_cells))] = inv[cells]
    return W


def _split_block(block: np.ndarray, K: int, D: int, parts) -> tuple[np.ndarray, np.ndarray]:
    """A cell block's layout ``(..., [pi K | mu K x D | sigma K x D])`` split for the kernels.

    Returns ``pi`` (..., K) (width 0 without the pi part) and ``ms`` (..., K, W), the
    mu and sigma parts of component k side by side (``W = D`` per part included):
    the (descriptor, component) loops then read and write one contiguous segment per
    pair instead of two segments K x D apart (1.3-1.4x faster than the block layout).
    """
    lead = block.shape[:-1]
    off = K if "pi" in parts else 0
    pi = block[..., :off]
    segs = []
    for part in ("mu", "sigma"):
        if part in parts:
            segs.append(block[..., off : off + K * D].reshape(*lead, K, D))
            off += K * D
    ms = np.concatenate(segs, axis=-1) if segs else np.zeros((*lead, K, 0))
    return np.ascontiguousarray(pi), np.ascontiguousarray(ms)


def _join_block(pi: np.ndarray, ms: np.ndarray, parts) -> np.ndarray:
    """Inverse of :func:`_split_block`: ``(..., K)``, ``(..., K, W)`` -> ``(..., block)``."""
    lead = ms.shape[:-2]
    K, W = ms.shape[-2:]
    n_ms = sum(p in parts for p in ("mu", "sigma"))
    D = W // max(n_ms, 1)
    blocks = [pi] if "pi" in parts else []
    for j in range(n_ms):
        blocks.append(ms[..., j * D : (j + 1) * D].reshape(*lead, K * D))
    return np.concatenate(blocks, axis=-1)


@njit(cache=True, parallel=True)
def _region_sums(
    data,
    indptr,
    indices,
    gamma,
    region,
    n_regions,
    mu,
    inv_sigma,
    prior,
    weight,
    has_pi,
    has_mu,
    has_sigma,
    signed,
    n_partials,
):
    """Un-scaled Fisher statistics per region, streaming over (descriptor, component) pairs.

    With ``t = (l - mu_k) / sigma_k``, region ``r`` accumulates ``sum_l w_l (gamma_k(l) - pi_k)``
    (pi part), ``sum_l w_l gamma_k(l) t`` (mu) and ``sum_l w_l gamma_k(l) (t^2 - 1)`` (sigma);
    ``w_l`` is ``weight`` (+1 / -1 in incremental updates).

    Returns ``pi`` (rows, R, K) (K = 0 without the pi part) and ``ms`` (rows, R, K, W):
    the mu sums in ``[..., :D]`` and the sigma sums after them (:func:`_split_block`).
    ``signed=False``: one row of sums. ``signed=True``: rows 0 and 1 hold the sums of the
    positive and of the negative terms (the sign of a term does not depend on the
    positive factors ``1 / (N_c sqrt(pi_k))``, ``1 / (N_c sqrt(2 pi_k))``).
    Descriptors are split into ``n_partials`` fixed chunks summed in a fixed order,
    so the result does not depend on the number of threads. Every term is computed as
    ``w gamma t`` and ``w gamma (t t - 1)`` with ``t = (l_i - mu_ki) * (1 / sigma_ki)``
    (reference: ``tests/test_fisher_speed.py``).
    """
    n, D = data.shape
    K = mu.shape[0]
    rows = 2 if signed else 1
    os_ = D if has_mu else 0
    W = os_ + (D if has_sigma else 0)
    pi_partial = np.zeros((n_partials, rows, n_regions, K if has_pi else 0))
    partial = np.zeros((n_partials, rows, n_regions, K, W))
    size = (n + n_partials - 1) // n_partials
    for part in prange(n_partials):
        acc = partial[part]
        pacc = pi_partial[part]
        for l in range(part * size, min(n, (part + 1) * size)):
            r = region[l]
            w = weight[l]
            x = data[l]
            if has_pi:
                ptr = indptr[l]
                for k in range(K):
                    g = 0.0
                    if ptr < indptr[l + 1] and indices[ptr] == k:
                        g = gamma[ptr]
                        ptr += 1
                    z = w * (g - prior[k])
                    if signed and z < 0:
                        pacc[1, r, k] += z
                    else:
                        pacc[0, r, k] += z
            if W == 0:
                continue
            for q in range(indptr[l], indptr[l + 1]):
                k = indices[q]
                g = w * gamma[q]
                m = mu[k]
                s = inv_sigma[k]
                # one contiguous 1-D segment per pair and a single loop over the
                # dimensions: it vectorises and touches one cache stream
                if not signed:
                    seg = acc[0, r, k]
                    if has_mu and has_sigma:
                        for i in range(D):
                            t = (x[i] - m[i]) * s[i]
                            seg[i] += g * t
                            seg[D + i] += g * (t * t - 1.0)
                    elif has_mu:
                        for i in range(D):
                            seg[i] += g * ((x[i] - m[i]) * s[i])
                    else:
                        for i in range(D):
                            t = (x[i] - m[i]) * s[i]
                            seg[i] += g * (t * t - 1.0)
                else:
                    # selects instead of max / min (which keep NaN semantics): the loops vectorise
                    pos = acc[0, r, k]
                    neg = acc[1, r, k]
                    if has_mu and has_sigma:
                        for i in range(D):
                            t = (x[i] - m[i]) * s[i]
                            zm = g * t
                            zs = g * (t * t - 1.0)
                            pos[i] += zm if zm > 0.0 else 0.0
                            neg[i] += zm if zm < 0.0 else 0.0
                            pos[D + i] += zs if zs > 0.0 else 0.0
                            neg[D + i] += zs if zs < 0.0 else 0.0
                    else:
                        for i in range(D):
                            t = (x[i] - m[i]) * s[i]
                            z = g * t if has_mu else g * (t * t - 1.0)
                            pos[i] += z if z > 0.0 else 0.0
                            neg[i] += z if z < 0.0 else 0.0
    out = partial[0].copy()
    pi_out = pi_partial[0].copy()
    for part in range(1, n_partials):
        out += partial[part]
        pi_out += pi_partial[part]
    return pi_out, out


def region_block_sums(
    data, gamma_csr, region, n_regions, mu, inv_sigma, prior, weight, parts, signed: bool, n_partials: int
) -> np.ndarray:
    """:func:`_region_sums` in the cell-block layout: (1 or 2, n_regions, block).

    ``gamma_csr`` is ``(indptr, indices, values)`` of the sparse posteriors; the other
    arguments are :func:`_region_sums`'; ``parts`` names the included parts.
    """
    indptr, indices, values = gamma_csr
    pi, ms = _region_sums(
        data,
        indptr,
        indices,
        values,
        region,
        n_regions,
        mu,
        inv_sigma,
        prior,
        weight,
        "pi" in parts,
        "mu" in parts,
        "sigma" in parts,
        signed,
        n_partials,
    )
    return _join_block(pi, ms, parts)


@njit(cache=True, parallel=True)
def _region_distribute(
    data,
    indptr,
    indices,
    gamma,
    region,
    mu,
    inv_sigma,
    prior,
    has_pi,
    has_mu,
    has_sigma,
    A_pi,
    A_ms,
    B_pi,
    B_ms,
    same,
    out,
    per_dim,
):
    """``out[l] += sum_d (a_d max(z_ld, 0) + b_d min(z_ld, 0))`` (``same``: a is b).

    The coefficients come per region in the layout of :func:`_split_block`:
    ``A_pi`` (R, K) and ``A_ms`` (R, K, W) (``B_*`` alike),
    ``A[r, j] = sum_{cells c of r} a_{c, j} s_j / N_c`` with the positive scale
    ``s_j`` of dimension j (``1 / sqrt(pi_k)`` or ``1 / sqrt(2 pi_k)``), so that
    ``z_ld = (N_c / s_j) ...`` never needs to be formed per level. With a non-empty
    ``per_dim`` (N, D) also each descriptor dimension's share (the pi part, which
    belongs to no dimension, is spread evenly over them). Per descriptor dimension i the
    share is accumulated over the descriptor's components in CSR order, mu term before
    sigma term, then ``out[l]`` adds the pi share and the shares of ``i = 0 .. D-1``.
    """
    n, D = data.shape
    K = mu.shape[0]
    track = per_dim.shape[0] > 0
    n_chunks = min(n, _N_CHUNKS)
    size = (n + n_chunks - 1) // n_chunks
    for chunk in prange(n_chunks):
        rel = np.empty(D)
        for l in range(chunk * size, min(n, (chunk + 1) * size)):
            r = region[l]
            x = data[l]
            acc = 0.0
            if has_pi:
                a = A_pi[r]
                b = B_pi[r]
                pi_acc = 0.0
                ptr = indptr[l]
                for k in range(K):
                    g = 0.0
                    if ptr < indptr[l + 1] and indices[ptr] == k:
                        g = gamma[ptr]
                        ptr += 1
                    z = g - prior[k]
                    pi_acc += max(z, 0.0) * a[k] + min(z, 0.0) * b[k]
                acc += pi_acc
                if track:
                    for i in range(D):
                        per_dim[l, i] += pi_acc / D
            for i in range(D):
                rel[i] = 0.0
            if not (has_mu or has_sigma):  # pi part only: no per-dimension share
                out[l] += acc
                continue
            for q in range(indptr[l], indptr[l + 1]):  # rel: this descriptor's share per dim
                k = indices[q]
                g = gamma[q]
                m = mu[k]
                s = inv_sigma[k]
                a = A_ms[r, k]
                if same:
                    if has_mu and has_sigma:
                        for i in range(D):
                            t = (x[i] - m[i]) * s[i]
                            rel[i] += g * t * a[i]
                            rel[i] += g * (t * t - 1.0) * a[D + i]
                    elif has_mu:
                        for i in range(D):
                            rel[i] += g * ((x[i] - m[i]) * s[i]) * a[i]
                    else:
                        for i in range(D):
                            t = (x[i] - m[i]) * s[i]
                            rel[i] += g * (t * t - 1.0) * a[i]
                else:
                    # max / min as selects (exact: zp + zn == z), both loads unconditional:
                    # the loops vectorise
                    b = B_ms[r, k]
                    if has_mu and has_sigma:
                        for i in range(D):
                            t = (x[i] - m[i]) * s[i]
                            zm = g * t
                            zs = g * (t * t - 1.0)
                            zp = zm if zm > 0.0 else 0.0
                            rel[i] += zp * a[i] + (zm - zp) * b[i]
                            zp = zs if zs > 0.0 else 0.0
                            rel[i] += zp * a[D + i] + (zs - zp) * b[D + i]
                    else:
                        for i in range(D):
                            t = (x[i] - m[i]) * s[i]
                            z = g * t if has_mu else g * (t * t - 1.0)
                            zp = z if z > 0.0 else 0.0
                            rel[i] += zp * a[i] + (z - zp) * b[i]
            for i in range(D):
                acc += rel[i]
            if track:
                for i in range(D):
                    per_dim[l, i] += rel[i]
            out[l] += acc


@njit(cache=True)
def _cells_hit(indptr, indices, cell_ids, n_cells, K):
    """``hit[c, k]``: some descriptor of cell c has component k among its kept posteriors."""
    hit = np.zeros((n_cells, K), dtype=np.bool_)
    levels = cell_ids.shape[1]
    for l in range(indptr.shape[0] - 1):
        for lev in range(levels):
            row = hit[cell_ids[l, lev]]
            for q in range(indptr[l], indptr[l + 1]):
                row[indices[q]] = True
    return hit


class FisherVector(Encoder):
    """Fisher vector encoding with a diagonal GMM vocabulary.

    Parameters
    ----------
    vocabulary : int or GMMVocabulary
        Number of Gaussians (fitted with ``random_state``) or a vocabulary
        estimator (cloned and fitted), e.g. ``GMMVocabulary(256, pca_components=80)``.
    parts : sequence of {"pi", "mu", "sigma"}
        Gradients included, in this order (VLFeat: mu and sigma).
    pyramid : sequence of (rows, cols)
    normalization : str or None
        Default ``"power+l2"``: the improved Fisher vector (signed square root,
        then l2). The Chatfield et al. baseline uses ``"cell-l2+power+l2"``.
    power : float
        Exponent of the signed power step.
    posterior_threshold : float
        Posteriors below it are dropped (VLFeat: 1e-6).
    random_state : int or None
    """

    has_dimension_relevance = True
    _vocabulary_type = GMMVocabulary

    def __init__(
        self,
        vocabulary=64,
        parts=("mu", "sigma"),
        pyramid=((1, 1),),
        normalization="power+l2",
        power=0.5,
        posterior_threshold=1e-6,
        random_state=None,
    ):
        self.vocabulary = vocabulary
        self.parts = parts
        self.pyramid = pyramid
        self.normalization = normalization
        self.power = power
        self.posterior_threshold = posterior_threshold
        self.random_state = random_state

    def _check_params(self):
        parts = tuple(self.parts)
        if not parts or any(p not in FISHER_PARTS for p in parts) or len(set(parts)) != len(parts):
            raise ValueError(f"parts must be distinct names from {FISHER_PARTS}, got {self.parts!r}")
        if not 0 <= self.posterior_threshold < 1:
            raise ValueError("posterior_threshold must lie in [0, 1)")

    def _make_vocabulary(self):
        if isinstance(self.vocabulary, (int, np.integer)):
            return GMMVocabulary(n_components=int(self.vocabulary), random_state=self.random_state)
        if not isinstance(self.vocabulary, GMMVocabulary):
            raise TypeError("vocabulary must be an int (number of Gaussians) or a GMMVocabulary")
        return clone(self.vocabulary)

    @property
    def parts_(self) -> tuple[str, ...]:
        return tuple(p for p in FISHER_PARTS if p in tuple(self.parts))

    def _block_size(self) -> int:
        K, D = self.vocabulary_.means_.shape
        return sum(K if p == "pi" else K * D for p in self.parts_)

    def gmm_parameters(self):
        """(means (K, D), sigmas (K, D), priors (K,)) of the fitted vocabulary."""
        v = self.vocabulary_
        return v.means_, np.sqrt(v.covariances_), v.weights_

    def compute_codes(self, data: np.ndarray) -> dict:
        """Projected descriptors (N, D') and sparse posteriors (CSR (N, K)) of raw descriptors."""
        v = self.vocabulary_
        projected = v.project(data)
        gamma = sparse_posteriors(
            projected, v.means_, v.covariances_, v.weights_, self.posterior_threshold, POSTERIOR_PRECISION
        )
        return {"data": projected, "posteriors": gamma}

    def pooled_sums(self, codes: dict, cell_ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Pooled (un-normalised) Fisher statistics of the given descriptors."""
        return self._sums(codes["data"], codes["posteriors"], cell_ids, counts, signed=False)[0]

    def pooled_delta(
        self, old_codes: dict, new_codes: dict, cell_ids: np.ndarray, counts: np.ndarray
    ) -> np.ndarray:
        """``pooled_sums(new) - pooled_sums(old)`` in one streaming pass (weights -1 and +1)."""
        n = len(old_codes["data"])
        data = np.concatenate([old_codes["data"], new_codes["data"]])
        gamma = sp.vstack([old_codes["posteriors"], new_codes["posteriors"]], format="csr")
        weight = np.concatenate([-np.ones(n), np.ones(len(new_codes["data"]))])
        return self._sums(
            data, gamma, np.concatenate([cell_ids, cell_ids]), counts, signed=False, weight=weight
        )[0]

    def _extra_codes(self, codes, cell_ids, counts) -> dict:
        return {"reached": self._reached(codes["posteriors"], cell_ids, counts)}

    @staticmethod
    def take_codes(codes: dict, rows) -> dict:
        return {"data": codes["data"][rows], "posteriors": codes["posteriors"][rows]}

    def support_counts(self, codes: dict, cell_ids: np.ndarray) -> np.ndarray:
        """Descriptors with a posterior above the threshold, per (cell, component)."""
        K = self.vocabulary_.means_.shape[0]
        gamma = codes["posteriors"]
        rows = np.repeat(np.arange(gamma.shape[0]), np.diff(gamma.indptr))
        keys = [cell_ids[rows, lev] * K + gamma.indices for lev in range(cell_ids.shape[1])]
        return np.bincount(np.concatenate(keys), minlength=self.n_cells_ * K)

    def clear_unsupported(self, pooled: np.ndarray, support: np.ndarray) -> np.ndarray:
        """Zero the mu / sigma dimensions of (cell, component) pairs no descriptor reaches."""
        K, D = self.vocabulary_.means_.shape
        blocks = pooled.reshape(self.n_cells_, self.block_size_)
        empty = support.reshape(self.n_cells_, K) == 0
        start = K if "pi" in self.parts_ else 0
        for part in ("mu", "sigma"):
            if part in self.parts_:
                view = blocks[:, start : start + K * D].reshape(self.n_cells_, K, D)
                view[empty] = 0.0
                start += K * D
        return pooled

    @staticmethod
    def put_codes(codes: dict, rows, new: dict, inplace: bool = False) -> dict:
        """Codes with rows replaced; ``inplace`` overwrites the dense parts of ``codes``."""
        data = codes["data"] if inplace else codes["data"].copy()
        data[rows] = new["data"]
        return {"data": data, "posteriors": replace_rows(codes["posteriors"], rows, new["posteriors"])}

    def _reached(self, gamma, cell_ids, counts) -> np.ndarray:
        """Dimensions some descriptor contributes to: pi parts of occupied cells,
        mu/sigma parts of the components with a posterior above the threshold in the cell."""
        K, D = self.vocabulary_.means_.shape
        hit = _cells_hit(gamma.indptr, gamma.indices, np.asarray(cell_ids, dtype=np.int64), len(counts), K)
        blocks = []
        for part in self.parts_:
            if part == "pi":
                blocks.append(np.repeat((counts > 0)[:, None], K, axis=1))
            else:
                blocks.append(np.repeat(hit, D, axis=1))
        return np.concatenate(blocks, axis=1).ravel()

    def _block_scale(self) -> np.ndarray:
        """Positive factor of each dimension of a cell block: ``1 / sqrt(pi_k)`` (pi, mu
        parts) or ``1 / sqrt(2 pi_k)`` (sigma part); the ``1 / N_c`` comes per cell."""
        _, D = self.vocabulary_.means_.shape
        prior = self.vocabulary_.weights_
        blocks = []
        for part in self.parts_:
            s = 1.0 / np.sqrt(2.0 * prior) if part == "sigma" else 1.0 / np.sqrt(prior)
            blocks.append(s if part == "pi" else np.repeat(s, D))
        return np.concatenate(blocks)

    def _region_args(self, data, gamma, region):
        mu, sigma, prior = self.gmm_parameters()
        return (data, gamma.indptr, gamma.indices, gamma.data, region, mu, 1.0 / sigma, prior)

    def _sums(self, data, gamma, cell_ids, counts, signed: bool, weight=None) -> np.ndarray:
        """Pooled statistics (1 or 2 rows, V): per region by :func:`_region_sums`, then
        ``z_c = sum_{regions r in c} acc_r s / N_c`` for each cell (a (C, R) product)."""
        region, region_cells = pyramid_regions(cell_ids, len(counts))
        parts = self.parts_
        weight = np.ones(len(data)) if weight is None else np.asarray(weight, dtype=np.float64)
        data, indptr, indices, values, region, mu, inv_sigma, prior = self._region_args(data, gamma, region)
        n_partials = 1 if len(data) < _SERIAL_BELOW else 4
        acc = region_block_sums(
            data,
            (indptr, indices, values),
            region,
            len(region_cells),
            mu,
            inv_sigma,
            prior,
            weight,
            parts,
            signed,
            n_partials,
        )
        W = _region_to_cells(region_cells, counts)
        scale = self._block_scale()
        out = np.empty((len(acc), W.shape[0], acc.shape[2]))
        for row, a in zip(out, acc):
            np.matmul(W, a, out=row)
            row *= scale
        return out.reshape(len(acc), -1)

    def projected_descriptors(self, trace) -> np.ndarray:
        """``trace.codes["data"]``: the forward pass's ``project(descriptors.data)``, (N, P)."""
        return trace.codes["data"]

    def _descriptor_relevance(self, R, trace, rule, per_dimension):
        require(rule, (Epsilon, AlphaBeta, AbsZ), "FisherVector")
        codes = trace.codes
        positive = negative = None
        if not isinstance(rule, Epsilon):
            positive, negative = self._sums(
                codes["data"], codes["posteriors"], trace.cell_ids, trace.cell_counts, signed=True
            )
        a, b, uniform = coefficients_from_rule(R, trace.pooled, codes["reached"], positive, negative, rule)
        region, region_cells = pyramid_regions(trace.cell_ids, len(trace.cell_counts))
        gather = _region_to_cells(region_cells, trace.cell_counts).T  # (R, C)
        scale = self._block_scale()
        same = isinstance(rule, Epsilon)
        K, D = self.vocabulary_.means_.shape
        A = (gather @ a.reshape(self.n_cells_, self.block_size_)) * scale
        B = A if same else (gather @ b.reshape(self.n_cells_, self.block_size_)) * scale
        A_pi, A_ms = _split_block(A, K, D, self.parts_)
        B_pi, B_ms = (A_pi, A_ms) if same else _split_block(B, K, D, self.parts_)
        n = trace.n_descriptors
        out = np.full(n, uniform / n)
        per_dim = np.full((n, D), uniform / n / D) if per_dimension else np.zeros((0, 0))
        parts = self.parts_
        _region_distribute(
            *self._region_args(codes["data"], codes["posteriors"], region),
            "pi" in parts,
            "mu" in parts,
            "sigma" in parts,
            A_pi,
            A_ms,
            B_pi,
            B_ms,
            same,
            out,
            per_dim,
        )
        return (out, per_dim) if per_dimension else out
