"""Diagonal Gaussian mixtures: mixed-precision log-likelihoods and EM streamed over chunks.

Log-likelihoods (docs/math.md §1). For a diagonal GMM with priors ``pi_k``, means
``mu_k`` and variances ``sigma_k^2``,

    log pi_k + log N(l; mu_k, sigma_k^2) = c_k + [l^2, l] . w_k,
    w_k = [-1 / (2 sigma_k^2), mu_k / sigma_k^2]                      (2D,)
    c_k = log pi_k - (D log 2 pi + sum_d log sigma_kd^2 + sum_d mu_kd^2 / sigma_kd^2) / 2,

one (N, 2D) x (2D, K) product. For thresholded posteriors (Fisher vectors),
:func:`mixed_posteriors` computes it in float32 and recomputes in float64 the entries
that can matter: with the float32 rounding error of entry (l, k) bounded by

    |fl32(f_l . w_k) - f_l . w_k| <= b_l = gamma_{2D+3} sum_i |f_li| max_k |w_ki|,
    gamma_n = n u / (1 - n u),  u = 2^-24,

(any summation order, the rounding of both inputs to float32 included,
:func:`float32_bound`), an entry whose float64 value lies within ``m`` of its row's
float64 maximum has a float32 value within ``m + 2 b_l`` of the row's float32
maximum. The entries that can reach the threshold, and enough of the next ones for
a certified relative error ``POSTERIOR_RTOL``, are recomputed in float64; the rest
of the softmax denominator comes from float32.

EM (:func:`streamed_em`) is scikit-learn's ``GaussianMixture(covariance_type="diag")``
algorithm (same initialisation, updates, lower bound and stopping rule), with the
data kept in float32 and visited in fixed chunks. Per chunk, in fixed blocks of
:data:`EM_BLOCK` rows (:func:`em_chunk_sums`), everything is dense float64 BLAS:
with ``F = [l^2, l, 1]`` (block, 2D + 1) and ``W' = [W; c]`` (2D + 1, K),

    V = F W'                  (block, K), the log-likelihoods (one float64 GEMM)
    R = softmax_rows(V)       responsibilities (entries below exp(-EM_MARGIN) of their
                              row's largest, < 3e-20, are set to 0)
    R^T F = [Q_k, S_k, N_k]   (K, 2D + 1), the sufficient statistics (a second GEMM)

(no (N, K) array is ever held; the k-means++ start takes a float64 copy of the data,
as scikit-learn's does). Reproducibility: OpenBLAS's products differ in the last bits
between one and two BLAS threads (it splits them by rows and columns with other
edge kernels), so every product here runs in one BLAS thread
(:func:`bowlrp._utils.threads.single_threaded`) and the parallelism is over the
blocks, whose sums are added in block order; the chunks' sums are added in chunk
order. The fit is the same bits for any number of threads and in any process.

Where the per-chunk E-step runs is a hook (:data:`EStep`): by default here, chunk by
chunk (:func:`serial_estep`); :func:`using_estep` sets another for the fits inside a
``with`` block (the runs layer puts it on Dask workers, :mod:`bowlrp.runs.dask_em`,
without this layer or the vocabulary knowing of Dask). Every hook computes each
chunk's sums with :func:`em_chunk_sums` on the same chunks, and :func:`streamed_em`
adds them here, in chunk order: the fit is the same bits wherever the chunks ran.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange
from sklearn.cluster import kmeans_plusplus
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from .._utils.threads import single_threaded

#: Unit roundoff of float32.
FLOAT32_UNIT = 2.0**-24
#: E-step margin (nats): responsibilities below exp(-EM_MARGIN) of a row's largest are dropped.
EM_MARGIN = 45.0
#: Descriptors per chunk of the streamed EM (fixed, so fits are reproducible).
EM_CHUNK = 32768
#: Rows per block of a chunk's E-step: one BLAS product each, the blocks' sums added in order.
#: (1024 x 256 responsibilities are 2 MB: the block's product stays in the caches.)
EM_BLOCK = 1024
#: Relative error of :func:`mixed_posteriors` against float64 posteriors (certified per row).
POSTERIOR_RTOL = 1e-9


def log_likelihood_terms(means, variances, weights) -> tuple[np.ndarray, np.ndarray]:
    """The GEMM form of the weighted log-likelihoods.

    Parameters
    ----------
    means, variances : ndarray (K, D)
    weights : ndarray (K,)

    Returns
    -------
    W : ndarray (2D, K) float64, ``[-1 / (2 sigma^2); mu / sigma^2]``
    const : ndarray (K,) float64, ``c_k``
    """
    inv = 1.0 / variances
    W = np.vstack([-0.5 * inv.T, (means * inv).T])
    const = (
        np.log(weights)
        - 0.5 * (means.shape[1] * np.log(2 * np.pi) + np.log(variances).sum(axis=1))
        - 0.5 * np.einsum("kd,kd->k", means * means, inv)
    )
    return W, const


def square_features(data: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``[l^2, l]`` per row, float64, shape (N, 2D) (written into ``out`` if given)."""
    n, D = data.shape
    out = np.empty((n, 2 * D)) if out is None else out[:n]
    np.multiply(data, data, out=out[:, :D])
    out[:, D:] = data
    return out


@njit(cache=True, fastmath={"reassoc", "contract"})
def _dot2(x, a, b):
    sa = 0.0
    sb = 0.0
    for i in range(x.shape[0]):
        sa += x[i] * a[i]
        sb += x[i] * b[i]
    return sa, sb


_ROW_BLOCKS = 64  # fixed row blocks of the posterior kernel (one scratch buffer each)


@njit(cache=True, parallel=True)
def _mixed_rows(loglik32, features, weights_t, const, wmax, gamma, floor, rtol, threshold, exact, cols, vals):
    """Tiered softmax of each row (see :func:`mixed_posteriors`); kept entries go to the
    row's slots ``cols[l, :c]``, ``vals[l, :c]``. Returns ``c`` per row, or -1 for a row
    whose float32 values are not all finite or that keeps more than ``cols.shape[1]``
    entries (those are done again with ``exact=True`` and ``K`` slots)."""
    n, K = loglik32.shape
    cap = cols.shape[1]
    counts = np.zeros(n, dtype=np.int64)
    size = (n + _ROW_BLOCKS - 1) // _ROW_BLOCKS
    for blk in prange(_ROW_BLOCKS):
        v = np.empty(K)
        near = np.empty(K, dtype=np.int64)
        ex = np.empty(K)
        is_ex = np.zeros(K, dtype=np.bool_)
        pick = np.empty(K, dtype=np.int64)
        for l in range(blk * size, min(n, (blk + 1) * size)):
            row = loglik32[l]
            x = features[l]
            b = 0.0
            for i in range(x.shape[0]):
                b += abs(x[i]) * wmax[i]
            b *= gamma
            top = -np.inf
            finite = True
            for k in range(K):
                t = np.float64(row[k]) + const[k]
                v[k] = t
                if not np.isfinite(t):
                    finite = False
                elif t > top:
                    top = t
            if not finite and not exact:
                counts[l] = -1
                continue
            m = 0
            for k in range(K):
                if exact or v[k] >= top - EM_MARGIN - 2.0 * b:
                    near[m] = k
                    m += 1
            lim = -np.inf
            if not exact:
                lim = top - max(floor, np.log(max(m * b, 1e-300) / rtol)) - 2.0 * b
            r = 0
            for q in range(m):
                is_ex[q] = v[near[q]] >= lim
                if is_ex[q]:
                    pick[r] = q
                    r += 1
            T = -np.inf
            for j in range(0, r, 2):  # two float64 dot products per pass over the row
                qa = pick[j]
                qb = pick[j + 1] if j + 1 < r else qa
                sa, sb = _dot2(x, weights_t[near[qa]], weights_t[near[qb]])
                ex[qa] = sa + const[near[qa]]
                ex[qb] = sb + const[near[qb]]
                T = max(T, ex[qa], ex[qb])
            total = 0.0
            for q in range(m):
                d = (ex[q] if is_ex[q] else v[near[q]]) - T
                e = np.exp(d) if d >= -EM_MARGIN else 0.0
                total += e
                ex[q] = e if is_ex[q] else 0.0
            c = 0
            for q in range(m):
                g = ex[q] / total
                if is_ex[q] and g >= threshold and g > 0.0:
                    if c < cap:
                        cols[l, c] = near[q]
                        vals[l, c] = g
                    c += 1
            counts[l] = c if c <= cap else -1
    return counts


@njit(cache=True)
def _slots_to_csr(counts, cols, vals):
    """CSR ``indptr``, ``indices``, ``data`` from per-row slots."""
    n = counts.shape[0]
    indptr = np.zeros(n + 1, dtype=np.int64)
    for l in range(n):
        indptr[l + 1] = indptr[l] + counts[l]
    indices = np.empty(indptr[n], dtype=np.int32)
    data = np.empty(indptr[n])
    for l in range(n):
        j = indptr[l]
        for q in range(counts[l]):
            indices[j + q] = cols[l, q]
            data[j + q] = vals[l, q]
    return indptr, indices, data


def float32_bound(features: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``b_l = gamma_{2D+3} sum_i |f_li| max_k |w_ki|``: bound on the float32 GEMM's error, (N,)."""
    P = features.shape[1]
    return _gamma(P) * (np.abs(features) @ np.abs(W).max(axis=1))


def _gamma(P: int) -> float:
    return (P + 3) * FLOAT32_UNIT / (1.0 - (P + 3) * FLOAT32_UNIT)


def mixed_posteriors(
    features: np.ndarray,
    W: np.ndarray,
    const: np.ndarray,
    threshold: float,
    rtol: float = POSTERIOR_RTOL,
    W32: np.ndarray | None = None,
    slots: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholded posteriors from a float32 GEMM, certified to ``rtol`` of the float64 ones.

    With the float32 maximum ``t_l`` and error bound ``b_l`` of a row, the entries with
    ``v32 >= t_l - m_l - 2 b_l`` (tier A, ``m_l = max(-log threshold, log(n_l b_l / rtol))``,
    ``n_l`` the entries within ``45 + 2 b_l``) are recomputed in float64; they contain
    every posterior ``>= threshold``. The others enter only the softmax denominator,
    from float32: each is ``< exp(-m_l - b_l)`` of the row's maximum with relative error
    ``< e^{b_l} - 1``, so the denominator (``>= 1``) and thus every kept posterior is
    off by at most ``n_l b_l e^{-m_l} <= rtol`` relative (plus float64 rounding).
    Rows with a non-finite float32 value, or keeping more than ``slots`` entries, are
    recomputed entirely in float64.

    Parameters
    ----------
    features : ndarray (N, 2D) float64, ``[l^2, l]``
    W : ndarray (2D, K); const : ndarray (K,)  (:func:`log_likelihood_terms`)
    threshold : float in (0, 1)
    rtol : float
    W32 : ndarray (2D, K) float32, optional
    slots : int
        Kept entries per row held before compaction.

    Returns
    -------
    indptr (N + 1,), indices (nnz,) int32, data (nnz,) float64 : CSR rows, ascending columns
    """
    W32 = W.astype(np.float32) if W32 is None else W32
    n, P = features.shape
    K = W.shape[1]
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite rows are recomputed whole
        loglik32 = features.astype(np.float32) @ W32
    args = (np.ascontiguousarray(W.T), const, np.abs(W).max(axis=1), _gamma(P), -float(np.log(threshold)))
    cols = np.empty((n, min(slots, K)), dtype=np.int32)
    vals = np.empty((n, min(slots, K)))
    counts = _mixed_rows(loglik32, features, *args, float(rtol), float(threshold), False, cols, vals)
    redo = np.flatnonzero(counts < 0)
    if len(redo):
        c2 = np.empty((len(redo), K), dtype=np.int32)
        v2 = np.empty((len(redo), K))
        sub = _mixed_rows(loglik32[redo], features[redo], *args, float(rtol), float(threshold), True, c2, v2)
        if sub.max() > cols.shape[1]:
            cols = np.concatenate([cols, np.zeros((n, K - cols.shape[1]), dtype=np.int32)], axis=1)
            vals = np.concatenate([vals, np.zeros((n, K - vals.shape[1]))], axis=1)
        cols[redo, : c2.shape[1]] = c2[:, : cols.shape[1]]
        vals[redo, : v2.shape[1]] = v2[:, : vals.shape[1]]
        counts[redo] = sub
    return _slots_to_csr(counts, cols, vals)


@njit(cache=True, nogil=True)
def _responsibilities(values, margin):
    """Rows of ``values`` (log-likelihoods ``v``) replaced by their softmax, in place.

    ``r_lk = exp(v_lk - t_l) / sum_j exp(v_lj - t_l)``, ``t_l = max_j v_lj``; entries with
    ``v_lk < t_l - margin`` get ``r_lk = 0`` (their exact value is below ``exp(-margin)``).
    Returns ``sum_l log sum_k exp(v_lk)`` (the kept entries), float64.
    """
    n, K = values.shape
    log_norm = 0.0
    for l in range(n):
        row = values[l]
        top = -np.inf
        for k in range(K):
            if row[k] > top:
                top = row[k]
        keep = top - margin
        total = 0.0
        for k in range(K):
            if row[k] >= keep:
                e = np.exp(row[k] - top)
                row[k] = e
                total += e
            else:
                row[k] = 0.0
        scale = 1.0 / total
        for k in range(K):
            row[k] *= scale
        log_norm += top + np.log(total)
    return log_norm


#: The sums of one chunk's E-step: ``(sum_l log sum_k exp v_lk, N_k (K,), S_k (K, D), Q_k (K, D))``.
ChunkSums = tuple[float, np.ndarray, np.ndarray, np.ndarray]
#: Runs the E-step of every chunk for one iteration: ``run(W, const)`` gives the chunks'
#: :data:`ChunkSums`, in chunk order.
EStepRun = Callable[[np.ndarray, np.ndarray], Iterable[ChunkSums]]
#: Where the per-chunk E-step runs: ``estep(chunks)`` (the fit's fixed chunks of float32
#: rows, in order) is entered once per fit and yields an :data:`EStepRun` for its iterations.
EStep = Callable[[list[np.ndarray]], AbstractContextManager[EStepRun]]

_ESTEP: ContextVar[EStep | None] = ContextVar("bowlrp_gmm_estep", default=None)


_scratch = threading.local()  # per thread: the (EM_BLOCK, 2D + 1) features of a block


def _block_features(rows: np.ndarray) -> np.ndarray:
    """``F = [l^2, l, 1]`` of ``rows`` (m, D) in float64, (m, 2D + 1), in this thread's buffer.

    ``l^2`` is exact for float32 rows: a float32's square fits a float64's mantissa.
    """
    m, D = rows.shape
    buf = getattr(_scratch, "features", None)
    if buf is None or buf.shape[0] < m or buf.shape[1] != 2 * D + 1:
        buf = _scratch.features = np.empty((max(m, EM_BLOCK), 2 * D + 1))
    F = buf[:m]
    F[:, D : 2 * D] = rows
    np.multiply(F[:, D : 2 * D], F[:, D : 2 * D], out=F[:, :D])
    F[:, 2 * D] = 1.0
    return F


def _block_sums(rows: np.ndarray, W1: np.ndarray) -> tuple[float, np.ndarray]:
    """One block's E-step: ``F = [l^2, l, 1]``, ``V = F W1``, ``R = softmax_rows(V)``.

    Parameters
    ----------
    rows : ndarray (m, D), float32 (or float64)
    W1 : ndarray (2D + 1, K) float64, ``[W; c]``

    Returns
    -------
    log_norm : float, ``sum_l logsumexp_k v_lk``
    sums : ndarray (K, 2D + 1) float64, ``R^T F = [Q_k, S_k, N_k]``
    """
    F = _block_features(rows)
    values = F @ W1
    log_norm = _responsibilities(values, EM_MARGIN)
    return log_norm, values.T @ F


def em_chunk_sums(
    chunk: np.ndarray, W: np.ndarray, const: np.ndarray, threads: int | None = None
) -> ChunkSums:
    """The E-step of one chunk: its log-likelihood sum and sufficient statistics, float64.

    Per fixed block of :data:`EM_BLOCK` rows (:func:`_block_sums`, two float64 GEMMs):
    ``v_lk = c_k + f_l . w_k``, ``r_lk = exp(v_lk - logsumexp_j v_lj)`` (0 below
    ``exp(-EM_MARGIN)`` of the row's largest), then

        log_norm = sum_l logsumexp_k v_lk,  N_k = sum_l r_lk,
        S_k = sum_l r_lk l,  Q_k = sum_l r_lk l^2,

    the blocks' sums added in block order. Every product runs in one BLAS thread
    (OpenBLAS's results change in the last bits with its thread count); ``threads``
    blocks run at once. The same bits for any ``threads``, in any process.

    Parameters
    ----------
    chunk : ndarray (m, D), float32 rows (float64 is used as it is)
    W : ndarray (2D, K) float64; const : ndarray (K,)  (:func:`log_likelihood_terms`)
    threads : int, optional
        Blocks computed at once; default :func:`numba.get_num_threads` (Numba's
        thread count is bowlrp's knob for its parallel kernels).

    Returns
    -------
    ChunkSums
        ``(log_norm, N_k (K,), S_k (K, D), Q_k (K, D))``.
    """
    chunk = np.asarray(chunk)
    m, D = chunk.shape
    K = W.shape[1]
    W1 = np.vstack([W, np.asarray(const, dtype=np.float64)[None, :]])
    blocks = [chunk[start : start + EM_BLOCK] for start in range(0, m, EM_BLOCK)]
    threads = numba.get_num_threads() if threads is None else max(1, int(threads))
    log_norm, sums = 0.0, np.zeros((K, 2 * D + 1))
    with single_threaded(), contextlib.ExitStack() as stack:
        if threads > 1 and len(blocks) > 1:
            pool = stack.enter_context(ThreadPoolExecutor(min(threads, len(blocks))))
            results = pool.map(_block_sums, blocks, [W1] * len(blocks))
        else:
            results = (_block_sums(block, W1) for block in blocks)
        for ln, block_sums in results:  # block order: reproducible for any number of threads
            log_norm += ln
            sums += block_sums
    return float(log_norm), sums[:, 2 * D].copy(), sums[:, D : 2 * D].copy(), sums[:, :D].copy()


@contextlib.contextmanager
def serial_estep(chunks: list[np.ndarray]) -> Iterator[EStepRun]:
    """The default :data:`EStep`: every chunk here, one after the other (its blocks on Numba's threads)."""

    def run(W: np.ndarray, const: np.ndarray) -> Iterator[ChunkSums]:
        for chunk in chunks:
            yield em_chunk_sums(chunk, W, const)

    yield run


@contextlib.contextmanager
def using_estep(estep: EStep | None) -> Iterator[None]:
    """Run the per-chunk E-step of every :func:`streamed_em` inside the block with ``estep``.

    The hook of the runs layer (e.g. :class:`bowlrp.runs.dask_em.DaskEStep`): a fit
    that is called deep inside an estimator (``GMMVocabulary.fit``) takes it from
    here, so no estimator parameter holds a cluster. A context variable: it applies
    to the calling thread (and its context) only. None: the serial E-step.
    """
    token = _ESTEP.set(estep)
    try:
        yield
    finally:
        _ESTEP.reset(token)


def current_estep() -> EStep:
    """The :data:`EStep` :func:`streamed_em` uses here: :func:`using_estep`'s, else :func:`serial_estep`."""
    estep = _ESTEP.get()
    return serial_estep if estep is None else estep


@dataclass
class MixtureFit:
    """Result of :func:`streamed_em`: parameters after the last M-step."""

    means: np.ndarray  # (K, D)
    covariances: np.ndarray  # (K, D)
    weights: np.ndarray  # (K,)
    n_iter: int
    converged: bool
    lower_bound: float  # mean log-likelihood per descriptor at the last E-step


def kmeans_plusplus_start(data: np.ndarray, n_components: int, reg_covar: float, random_state=None):
    """scikit-learn's ``init_params="k-means++"`` start, without its (N, K) one-hot matrix.

    Seeds ``x_k`` from :func:`sklearn.cluster.kmeans_plusplus` (float64 copy of the data,
    as ``GaussianMixture`` sees it, in column-major order: its distances to each seed's
    candidates, a (7, D) x (D, N) product, are the same bits from either layout and
    ~1.4x cheaper from this one); with one-hot responsibilities and
    ``n_k = 1 + 10 eps``: ``mu_k = x_k / n_k``, ``sigma_k^2 = x_k^2 / n_k - mu_k^2 + reg``,
    ``pi_k = n_k / N`` (not renormalised, as scikit-learn).

    Returns
    -------
    means, covariances : ndarray (K, D); weights : ndarray (K,)
    """
    rng = check_random_state(random_state)
    _, indices = kmeans_plusplus(np.asfortranarray(data, dtype=np.float64), n_components, random_state=rng)
    seeds = np.asarray(data[indices], dtype=np.float64)
    nk = 1.0 + 10 * np.finfo(np.float64).eps
    means = seeds / nk
    covariances = seeds * seeds / nk - means**2 + reg_covar
    weights = np.full(n_components, nk / len(data))
    return means, covariances, weights


def streamed_em(
    data: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    weights: np.ndarray,
    reg_covar: float = 1e-6,
    max_iter: int = 100,
    tol: float = 1e-3,
    chunk_size: int = EM_CHUNK,
    verbose: bool = False,
    estep: EStep | None = None,
) -> MixtureFit:
    """EM for a diagonal GMM over chunks of ``data`` (scikit-learn's updates, one init).

    Per iteration: E-step ``r_lk = pi_k N(l; mu_k, sigma_k^2) / sum_j pi_j N(l; mu_j, sigma_j^2)``
    (float64 GEMMs per block of rows, :func:`em_chunk_sums`), then
    ``n_k = sum_l r_lk + 10 eps``, ``mu_k = S_k / n_k``, ``sigma_k^2 = Q_k / n_k - mu_k^2 + reg``,
    ``pi_k = n_k / sum_j n_j``. Stops when the mean log-likelihood of the E-step changes
    by less than ``tol``.

    Parameters
    ----------
    data : ndarray (N, D), float32 (float64 is converted, one copy)
    means, covariances : ndarray (K, D); weights : ndarray (K,)
        Start (e.g. :func:`kmeans_plusplus_start`).
    reg_covar, max_iter, tol : as scikit-learn's ``GaussianMixture``
    chunk_size : int
        Rows per chunk (the unit of a Dask task); the fit's sums do not depend on it
        beyond rounding. Extra memory: ~ ``EM_BLOCK * (K + 2D + 1) * 8`` bytes per thread.
    estep : EStep or None
        Where the chunks' E-steps run (:data:`EStep`); None: :func:`current_estep`
        (:func:`serial_estep` unless :func:`using_estep` set another). The chunks' sums
        are added here in chunk order, so every ``estep`` gives the same fit.

    Returns
    -------
    MixtureFit
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    n, D = data.shape
    means = np.asarray(means, dtype=np.float64)
    covariances = np.asarray(covariances, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    K = len(weights)
    chunk_size = max(1, min(int(chunk_size), n))
    chunks = [data[start : start + chunk_size] for start in range(0, n, chunk_size)]
    lower_bound = -np.inf
    converged = False
    n_done = 0
    estep = current_estep() if estep is None else estep
    with estep(chunks) as run:
        bar = tqdm(range(1, max_iter + 1), desc="GMM EM", disable=not verbose, leave=False)
        for iteration in bar:
            n_done = iteration
            if np.any(covariances <= 0.0) or not np.all(np.isfinite(covariances)):
                raise ValueError("GMM EM: a component collapsed (variance <= 0); raise covariance_floor")
            # scikit-learn's E-step reads sigma^2 through its precision Cholesky factor
            precision = (1.0 / np.sqrt(covariances)) ** 2
            W, const = log_likelihood_terms(means, 1.0 / precision, weights)
            log_norm = 0.0
            nk = np.zeros(K)
            s1 = np.zeros((K, D))
            s2 = np.zeros((K, D))
            seen = 0
            for ln, a, b, c in run(W, const):  # chunk order: the same sums wherever they ran
                log_norm += ln
                nk += a
                s1 += b
                s2 += c
                seen += 1
            if seen != len(chunks):
                raise RuntimeError(f"GMM EM: the E-step gave the sums of {seen} of {len(chunks)} chunks")
            previous, lower_bound = lower_bound, log_norm / n
            nk = nk + 10 * np.finfo(np.float64).eps
            means = s1 / nk[:, None]
            covariances = s2 / nk[:, None] - means**2 + reg_covar
            weights = nk / n
            weights = weights / weights.sum()
            bar.set_postfix(lower_bound=f"{lower_bound:.4f}")
            if abs(lower_bound - previous) < tol:
                converged = True
                break
        bar.close()
    return MixtureFit(means, covariances, weights, n_done, converged, float(lower_bound))
