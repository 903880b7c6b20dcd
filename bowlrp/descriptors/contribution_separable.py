"""Separable fast path of the contribution projection for unrotated SIFT descriptors.

For a descriptor of bin size ``b`` centred at ``(cy, cx)`` without rotation, the
mass pixel ``p = (r, c)`` adds to dimension ``k = (i, j, t)`` factorises
(docs/pixel_rules.md, "Fast path"):

    w_lkp = F_t(p) * A_i(r - cy) * A_j(c - cx)

* ``F_t(p) = m_p o_t(p)`` (full and gradient weightings) or ``1/8`` (window), zero on
  pixels the backend never samples (OpenCV: the image's outer ring);
* ``A_i(d) = tent_i(d) * win(d)``: the bilinear weight of offset ``d`` on bin ``i``
  (``t = d / b + 1.5`` in ``(-1, 4)``), times the window's factor along that axis
  (OpenCV ``exp(-(d / b)^2 / 8)``, VLFeat exact ``exp(-d^2 / (2 (window b)^2))``,
  VLFeat fast the per-bin mean ``win_means[i]``; 1 for the gradient weighting).

Totals and scatter then cost ``O(5b)`` per descriptor and dimension instead of
``O((5b)^2)``:

    Z_lijt = sum_r A_i(r - cy) G[q(l), j, t, r],   G[q, j, t, r] = sum_c A_j(c - x_q) F_t(r, c)
    R_p    = sum_t F_t(p) sum_q sum_j A_j(c - x_q) U[q, j, t, r],
    U[q, j, t, r] = sum_{l : cx_l = x_q} sum_i a_lijt A_i(r - cy_l),  a = R / Z

(``x_q``: the distinct column centres). Per descriptor (``K = 1``) the bins collapse,
``A(d) = sum_i A_i(d)`` and ``F = m`` (or 1), since the orientation weights of a pixel
sum to 1. Same arithmetic as :func:`bowlrp.descriptors.contribution._project` up to rounding (tested).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_D, _NT = 4, 8
_OPENCV, _VLFEAT_EXACT, _VLFEAT_FAST = 0, 1, 2


@njit(cache=True)
def _axis_tables(xs, n_pix, b, backend, use_window, window, win_means, nb):
    """Per-axis weights ``A_i(p - x)`` of every centre ``x`` in ``xs``.

    Returns ``lo`` (n_x,) and ``table`` (n_x, L, nb): ``table[q, p - lo[q], i]`` for pixels
    ``p`` in ``[lo[q], lo[q] + L)`` (zero beyond the image); ``nb = 1`` sums the 4 bins.
    """
    L = int(np.ceil(5.0 * b)) + 3
    lo = np.zeros(xs.size, dtype=np.int64)
    table = np.zeros((xs.size, L, nb))
    s = window * b
    for q in range(xs.size):
        x = xs[q]
        lo[q] = max(0, int(np.floor(x - 2.5 * b)))
        hi = min(n_pix - 1, int(np.ceil(x + 2.5 * b)))
        for p in range(lo[q], hi + 1):
            d = p - x
            t = d / b + 1.5
            if not (t > -1 and t < _D):
                continue
            g = 1.0
            if use_window:
                if backend == _OPENCV:
                    u = d / b
                    g = np.exp(-(u * u) / (_D * _D * 0.5))
                elif backend == _VLFEAT_EXACT:
                    g = np.exp(-0.5 * d * d / (s * s))
            i0 = int(np.floor(t))
            f = t - i0
            for a in range(2):
                i = i0 + a
                if i < 0 or i >= _D:
                    continue
                w = g * (f if a else 1.0 - f)
                if backend == _VLFEAT_FAST and use_window:
                    w *= win_means[i]
                table[q, p - lo[q], 0 if nb == 1 else i] += w
    return lo, table


@njit(cache=True)
def _totals(F, ys, y_of, xs, x_of, b, backend, use_window, window, win_means, nb):
    """``Z[l, i, j, t] = sum_r A_i(r - cy_l) G[q_l, r, j, t]``, shape (n, nb, nb, T), with
    ``G[q, r, j, t] = sum_c A_j(c - xs[q]) F[r, c, t]``."""
    H, W, T = F.shape
    xlo, xtab = _axis_tables(xs, W, b, backend, use_window, window, win_means, nb)
    ylo, ytab = _axis_tables(ys, H, b, backend, use_window, window, win_means, nb)
    L = xtab.shape[1]
    G = np.zeros((xs.size, H, nb, T))
    for q in range(xs.size):
        for r in range(H):
            for cc in range(min(L, W - xlo[q])):
                c = xlo[q] + cc
                for t in range(T):
                    f = F[r, c, t]
                    if f == 0.0:
                        continue
                    for j in range(nb):
                        G[q, r, j, t] += xtab[q, cc, j] * f
    n = y_of.size
    Z = np.zeros((n, nb, nb, T))
    for l in range(n):
        qy, q = y_of[l], x_of[l]
        for rr in range(min(L, H - ylo[qy])):
            r = ylo[qy] + rr
            for i in range(nb):
                a = ytab[qy, rr, i]
                if a == 0.0:
                    continue
                for j in range(nb):
                    for t in range(T):
                        Z[l, i, j, t] += a * G[q, r, j, t]
    return Z


@njit(cache=True)
def _scatter(coef, F, ys, y_of, xs, x_of, b, backend, use_window, window, win_means, nb, out):
    """``out[r, c] += sum_t F[r, c, t] sum_q sum_j A_j(c - xs[q]) U[q, r, j, t]`` with
    ``U[q, r, j, t] = sum_{l : x_of[l] = q} sum_i coef[l, i, j, t] A_i(r - cy_l)``."""
    H, W, T = F.shape
    xlo, xtab = _axis_tables(xs, W, b, backend, use_window, window, win_means, nb)
    ylo, ytab = _axis_tables(ys, H, b, backend, use_window, window, win_means, nb)
    L = xtab.shape[1]
    n = y_of.size
    U = np.zeros((xs.size, H, nb, T))
    used = np.zeros(xs.size, dtype=np.bool_)
    for l in range(n):
        nonzero = False
        for i in range(nb):
            for j in range(nb):
                for t in range(T):
                    if coef[l, i, j, t] != 0.0:
                        nonzero = True
        if not nonzero:
            continue
        qy, q = y_of[l], x_of[l]
        used[q] = True
        for rr in range(min(L, H - ylo[qy])):
            r = ylo[qy] + rr
            for i in range(nb):
                a = ytab[qy, rr, i]
                if a == 0.0:
                    continue
                for j in range(nb):
                    for t in range(T):
                        U[q, r, j, t] += a * coef[l, i, j, t]
    for q in range(xs.size):
        if not used[q]:
            continue
        for r in range(H):
            for cc in range(min(L, W - xlo[q])):
                c = xlo[q] + cc
                acc = 0.0
                for t in range(T):
                    f = F[r, c, t]
                    if f == 0.0:
                        continue
                    for j in range(nb):
                        acc += f * xtab[q, cc, j] * U[q, r, j, t]
                out[r, c] += acc


@njit(cache=True)
def _sparse_bins(table):
    """The (at most 2) bins of nonzero weight of every table entry: a tent of half-width
    ``b`` reaches two neighbouring bins. Returns ``count`` (n_x, L), ``bins`` and
    ``weights`` (n_x, L, 2)."""
    nx, L, nb = table.shape
    count = np.zeros((nx, L), dtype=np.int64)
    bins = np.zeros((nx, L, 2), dtype=np.int64)
    weights = np.zeros((nx, L, 2))
    for q in range(nx):
        for p in range(L):
            k = 0
            for i in range(nb):
                if table[q, p, i] != 0.0 and k < 2:
                    bins[q, p, k] = i
                    weights[q, p, k] = table[q, p, i]
                    k += 1
            count[q, p] = k
    return count, bins, weights


@njit(cache=True, inline="always")
def _axpy(dst, offset, w, src, src_offset, n):
    """``dst[offset + k] += w * src[src_offset + k]`` for ``k < n``, on 1-D rows (which
    vectorise; the same sums written with 4-D indexing stayed scalar). The 8-long rows of
    the orientations are called with a literal 8: a trip count known when compiling makes
    them about twice as fast (for the 32-long rows a runtime count measured faster)."""
    for k in range(n):
        dst[offset + k] += w * src[src_offset + k]


@njit(cache=True)
def _totals_sparse(F, ys, y_of, xs, x_of, b, backend, use_window, window, win_means, nb):
    """:func:`_totals` over the (at most 2) bins each pixel reaches along each axis.

    The same sums as :func:`_totals` (the skipped terms are exact zeros), with the
    orientation axis ``t`` innermost and contiguous.
    """
    H, W, T = F.shape
    xlo, xtab = _axis_tables(xs, W, b, backend, use_window, window, win_means, nb)
    ylo, ytab = _axis_tables(ys, H, b, backend, use_window, window, win_means, nb)
    xn, xb, xw = _sparse_bins(xtab)
    yn, yb, yw = _sparse_bins(ytab)
    L = xtab.shape[1]
    K = nb * T
    G = np.zeros((xs.size, H, K))
    for q in range(xs.size):
        m = min(L, W - xlo[q])
        for r in range(H):
            g = G[q, r]
            Fr = F[r]
            for cc in range(m):
                f = Fr[xlo[q] + cc]
                for s in range(xn[q, cc]):
                    if T == 8:
                        _axpy(g, xb[q, cc, s] * 8, xw[q, cc, s], f, 0, 8)
                    else:
                        _axpy(g, xb[q, cc, s] * T, xw[q, cc, s], f, 0, T)
    n = y_of.size
    # 1-D views of the (j, t) rows: the innermost loop runs over K = 32 contiguous values
    # and vectorises (the 4-D indexing of the same sums stayed scalar, about 2x slower)
    Z = np.zeros((n, nb, K))
    for l in range(n):
        qy, q = y_of[l], x_of[l]
        Zl = Z[l]
        for rr in range(min(L, H - ylo[qy])):
            r = ylo[qy] + rr
            g = G[q, r]
            for s in range(yn[qy, rr]):
                _axpy(Zl[yb[qy, rr, s]], 0, yw[qy, rr, s], g, 0, K)
    return Z.reshape(n, nb, nb, T)


@njit(cache=True)
def _scatter_sparse(coef, F, ys, y_of, xs, x_of, b, backend, use_window, window, win_means, nb, out):
    """:func:`_scatter` over the (at most 2) bins each pixel reaches along each axis."""
    H, W, T = F.shape
    xlo, xtab = _axis_tables(xs, W, b, backend, use_window, window, win_means, nb)
    ylo, ytab = _axis_tables(ys, H, b, backend, use_window, window, win_means, nb)
    xn, xb, xw = _sparse_bins(xtab)
    yn, yb, yw = _sparse_bins(ytab)
    L = xtab.shape[1]
    n = y_of.size
    K = nb * T
    # 1-D views of the (j, t) rows, as in _totals_sparse: the same sums, vectorised
    U2 = np.zeros((xs.size, H, K))
    C2 = coef.reshape(n, nb, K)
    used = np.zeros(xs.size, dtype=np.bool_)
    for l in range(n):
        Cl = C2[l]
        nonzero = False
        for i in range(nb):
            for k in range(K):
                if Cl[i, k] != 0.0:
                    nonzero = True
        if not nonzero:
            continue
        qy, q = y_of[l], x_of[l]
        used[q] = True
        for rr in range(min(L, H - ylo[qy])):
            r = ylo[qy] + rr
            u = U2[q, r]
            for s in range(yn[qy, rr]):
                _axpy(u, 0, yw[qy, rr, s], Cl[yb[qy, rr, s]], 0, K)
    # V[r, c, t] = sum_q sum_j A_j(c - x_q) U[q, r, j, t] (8-wide updates, no serial
    # reduction per pixel), then out[r, c] += sum_t F[r, c, t] V[r, c, t]: the same terms as
    # summing F U per column centre, in another order (equal to rounding, tested)
    V = np.zeros((H, W, T))
    for q in range(xs.size):
        if not used[q]:
            continue
        m = min(L, W - xlo[q])
        for r in range(H):
            Ur = U2[q, r]
            Vr = V[r]
            for cc in range(m):
                v = Vr[xlo[q] + cc]
                for s in range(xn[q, cc]):
                    if T == 8:
                        _axpy(v, 0, xw[q, cc, s], Ur, xb[q, cc, s] * 8, 8)
                    else:
                        _axpy(v, 0, xw[q, cc, s], Ur, xb[q, cc, s] * T, T)
    for r in range(H):
        for c in range(W):
            acc = 0.0
            for t in range(T):
                acc += F[r, c, t] * V[r, c, t]
            out[r, c] += acc


@njit(cache=True)
def _totals1(F, ys, y_of, xs, x_of, b, backend, use_window, window, win_means):
    """:func:`_totals` per descriptor (one bin, one orientation): ``Z_l`` (n,)."""
    H, W = F.shape
    xlo, xtab = _axis_tables(xs, W, b, backend, use_window, window, win_means, 1)
    ylo, ytab = _axis_tables(ys, H, b, backend, use_window, window, win_means, 1)
    L = xtab.shape[1]
    G = np.zeros((xs.size, H))
    for q in range(xs.size):
        m = min(L, W - xlo[q])
        c0 = xlo[q]
        for r in range(H):
            acc = 0.0
            for cc in range(m):
                acc += xtab[q, cc, 0] * F[r, c0 + cc]
            G[q, r] = acc
    n = y_of.size
    Z = np.zeros(n)
    for l in range(n):
        qy, q = y_of[l], x_of[l]
        r0 = ylo[qy]
        acc = 0.0
        for rr in range(min(L, H - r0)):
            acc += ytab[qy, rr, 0] * G[q, r0 + rr]
        Z[l] = acc
    return Z


@njit(cache=True)
def _scatter1(coef, F, ys, y_of, xs, x_of, b, backend, use_window, window, win_means, out):
    """:func:`_scatter` per descriptor: ``out += F * sum_l coef_l A(r - cy_l) A(c - cx_l)``."""
    H, W = F.shape
    xlo, xtab = _axis_tables(xs, W, b, backend, use_window, window, win_means, 1)
    ylo, ytab = _axis_tables(ys, H, b, backend, use_window, window, win_means, 1)
    L = xtab.shape[1]
    U = np.zeros((xs.size, H))
    for l in range(y_of.size):
        a = coef[l]
        if a == 0.0:
            continue
        qy, q = y_of[l], x_of[l]
        r0 = ylo[qy]
        for rr in range(min(L, H - r0)):
            U[q, r0 + rr] += a * ytab[qy, rr, 0]
    for q in range(xs.size):
        m = min(L, W - xlo[q])
        c0 = xlo[q]
        for r in range(H):
            u = U[q, r]
            if u == 0.0:
                continue
            for cc in range(m):
                out[r, c0 + cc] += F[r, c0 + cc] * (xtab[q, cc, 0] * u)


@njit(cache=True)
def _orientation_fields(mag, ang, lo):
    """``F[..., t] = m o_t``: each pixel's magnitude split linearly over its two orientation bins."""
    H, W = mag.shape
    F = np.zeros((H, W, _NT))
    two_pi = 2.0 * np.pi
    for r in range(lo, H - lo):
        for c in range(lo, W - lo):
            a = (ang[r, c] % two_pi) * (_NT / two_pi)
            if a >= _NT:
                a -= _NT
            o0 = int(np.floor(a))
            fo = a - o0
            F[r, c, o0 % _NT] += mag[r, c] * (1.0 - fo)
            F[r, c, (o0 + 1) % _NT] += mag[r, c] * fo
    return F


def _fields(weighting: int, mag: np.ndarray, ang: np.ndarray, per_dim: bool, lo: int) -> np.ndarray:
    """The pixel factor ``F`` (H, W, T): T = 8 per dimension, 1 per descriptor."""
    H, W = mag.shape
    valid = np.zeros((H, W))
    valid[lo : H - lo, lo : W - lo] = 1.0
    if weighting == 1:  # window: orientation spread evenly
        return np.repeat((valid / _NT)[:, :, None], _NT, axis=2) if per_dim else valid[:, :, None]
    if per_dim:
        return _orientation_fields(mag, ang, lo)
    return (mag * valid)[:, :, None]


@njit(cache=True)
def _ratios(values, Z):
    """``coef = values / Z`` where ``Z > 0`` (else 0) and, per descriptor, whether some
    ``values != 0`` sits on a zero total (the window fallback): one pass, (n, K) and (n,).

    Branch-free rows (selects, a division by 1 where ``Z <= 0``, an integer count of the
    fallback entries), so the row loop runs in SIMD lanes; the same quotients bit for bit.
    """
    n, K = values.shape
    coef = np.empty((n, K))
    needs = np.zeros(n, dtype=np.bool_)
    for l in range(n):
        v = values[l]
        z = Z[l]
        c = coef[l]
        count = 0
        for k in range(K):
            live = z[k] > 0.0
            q = v[k] / (z[k] if live else 1.0)
            c[k] = q if live else 0.0
            count += (not live) and v[k] != 0.0
        needs[l] = count > 0
    return coef, needs


def project_unrotated(
    values, centers, b, backend, weighting, window, win_means, mag, ang, out, totals_only=False
):
    """:func:`bowlrp.descriptors.contribution._project` for descriptors without rotation (same contract).

    Parameters
    ----------
    values : (n, K) relevance per descriptor (K = 1) or per dimension (K = 128)
    centers : (n, 2) row, column centres;  b : bin size
    out : (H, W) map the relevance is added to

    Returns
    -------
    (n, K) totals ``sum_p w_lkp`` when ``totals_only``, else (n, 1): the relevance no
    sampled pixel could take, per descriptor.
    """
    n, K = values.shape
    per_dim = K > 1
    nb = _D if per_dim else 1
    lo = 1 if backend == _OPENCV else 0
    use_window = weighting != 2
    F = _fields(weighting, mag, ang, per_dim, lo)
    grid = _grid(centers)
    Z = _run_totals(F, centers, b, backend, use_window, window, win_means, nb, grid)
    if totals_only:
        return Z
    coef, needs = _ratios(np.ascontiguousarray(values, dtype=np.float64), Z)
    _run_scatter(coef, F, centers, b, backend, use_window, window, win_means, nb, out, grid)
    leftover = np.zeros((n, 1))
    rows = np.flatnonzero(needs)
    if rows.size:  # zero mass: the window weights (Gaussian x bilinear, 1/8 per orientation)
        need = (Z[rows] <= 0.0) & (values[rows] != 0.0)
        Fw = _fields(1, mag, ang, False, lo)
        sub = np.ascontiguousarray(centers[rows])
        sub_grid = _grid(sub)
        if per_dim:
            # the 8 orientations of a spatial bin share its window weight: one field, not 8
            Zw = _totals_sparse(Fw / _NT, *sub_grid, float(b), backend, True, window, win_means, nb)
            Zw = np.repeat(Zw, _NT, axis=3).reshape(rows.size, -1)
        else:
            Zw = _run_totals(Fw, sub, b, backend, True, window, win_means, nb, sub_grid)
        live = need & (Zw > 0.0)
        coef = np.divide(values[rows], Zw, out=np.zeros_like(Zw), where=live)
        if per_dim:
            coef = coef.reshape(rows.size, nb, nb, _NT).sum(axis=3, keepdims=True)
            _scatter_sparse(
                np.ascontiguousarray(coef),
                Fw / _NT,
                *sub_grid,
                float(b),
                backend,
                True,
                window,
                win_means,
                nb,
                out,
            )
        else:
            _run_scatter(coef, Fw, sub, b, backend, True, window, win_means, nb, out, sub_grid)
        leftover[rows, 0] = np.where(need & ~live, values[rows], 0.0).sum(axis=1)
    return leftover


def _grid(centers):
    ys, y_of = np.unique(centers[:, 0], return_inverse=True)
    xs, x_of = np.unique(centers[:, 1], return_inverse=True)
    return ys, y_of.astype(np.int64).ravel(), xs, x_of.astype(np.int64).ravel()


def _run_totals(F, centers, b, backend, use_window, window, win_means, nb, grid=None):
    """Totals ``sum_p w_lkp``, (n, K); ``grid``: :func:`_grid` of ``centers`` if known."""
    n = centers.shape[0]
    grid = _grid(centers) if grid is None else grid
    if nb == 1:
        Z = _totals1(
            np.ascontiguousarray(F[:, :, 0]),
            *grid,
            float(b),
            backend,
            use_window,
            window,
            win_means,
        )
        return Z.reshape(n, 1)
    Z = _totals_sparse(F, *grid, float(b), backend, use_window, window, win_means, nb)
    return Z.reshape(n, -1)


def _run_scatter(coef, F, centers, b, backend, use_window, window, win_means, nb, out, grid=None):
    """``out += sum_l sum_k coef_lk w_lkp``; ``grid``: :func:`_grid` of ``centers`` if known."""
    n = centers.shape[0]
    grid = _grid(centers) if grid is None else grid
    if nb == 1:
        _scatter1(
            np.ascontiguousarray(coef[:, 0]),
            np.ascontiguousarray(F[:, :, 0]),
            *grid,
            float(b),
            backend,
            use_window,
            window,
            win_means,
            out,
        )
    else:
        _scatter_sparse(
            np.ascontiguousarray(coef).reshape(n, nb, nb, -1),
            F,
            *grid,
            float(b),
            backend,
            use_window,
            window,
            win_means,
            nb,
            out,
        )
