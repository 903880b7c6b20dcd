"""The ``Contribution`` pixel rule of dense SIFT: each pixel's share of a descriptor's mass.

Step 3 of the relevance pass for :class:`~bowlrp.descriptors.DenseSIFT` under
:class:`~bowlrp.rules.Contribution` (``docs/pixel_rules.md``): a descriptor's
relevance (or each of its dimensions') is spread over the pixels in proportion to
what each pixel added to the histogram, computed the way the extractor computed it
(:meth:`DenseSIFT.gradient_maps`), and carried back through the extractor's blurs
with their adjoint. The per-pixel Numba kernels are the reference; unrotated
descriptors take the separable path of :mod:`.contribution_separable`.
"""

from __future__ import annotations

import cv2
import numpy as np
from numba import njit

from .._utils.validation import as_float_image
from ..exceptions import RuleError
from .contribution_rotated import project_rotated_scalar
from .contribution_separable import project_unrotated
from .geometry import SIFT_ORIENTATIONS, SIFT_SPATIAL_BINS, Descriptors

# -- contribution-weighted projection (issue 17) -------------------------------------------
#
# A pixel receives a descriptor's relevance in proportion to its share of that
# descriptor's histogram mass, computed as the extractor computed the descriptor
# (docs/pixel_rules.md). Per descriptor, one Numba pass sums the weights (per
# dimension or in total) and a second scatters the relevance; nothing of size
# descriptors x pixels (or x dimensions) is built.

WEIGHTINGS = ("full", "window", "gradient")
_OPENCV, _VLFEAT_EXACT, _VLFEAT_FAST = 0, 1, 2
_WEIGHT_CODE = {"full": 0, "window": 1, "gradient": 2}
_D, _NT = SIFT_SPATIAL_BINS, SIFT_ORIENTATIONS
VLFEAT_WINDOW = 2.0  # dsift's default window size (in bins), which DenseSIFT leaves as is


@njit(cache=True)
def _vlfeat_window_means(b, window):
    """VLFeat ``_vl_dsift_get_bin_window_mean`` for the 4 bins (fast, flat-window mode)."""
    out = np.zeros(_D)
    ib = int(b)
    sigma = b * window
    for i in range(_D):
        delta = b * (i - 0.5 * (_D - 1))
        acc = 0.0
        for x in range(-ib + 1, ib):
            z = (x - delta) / sigma
            acc += np.exp(-0.5 * z * z)
        out[i] = acc / (2 * ib - 1)
    return out


@njit(cache=True)
def _pixel_bins(backend, weighting, b, cos_t, sin_t, win_means, window, dy, dx, mag, ang, idx, wts):
    """Weights of one pixel (offset ``dy, dx`` from the centre) on the descriptor's dimensions.

    Fills ``idx[:k]`` (dimension index, layout [bin_y][bin_x][theta]) and ``wts[:k]``
    and returns ``k`` (0 when the descriptor does not sample the pixel). ``ang`` is the
    gradient angle relative to the descriptor's orientation in orientation bins, [0, 8).
    Weighting 0: magnitude x window x bilinear; 1: window x bilinear (orientation
    spread evenly); 2: magnitude x bilinear.
    """
    sampled, rbin, cbin, g = _bin_position(backend, b, cos_t, sin_t, window, dy, dx)
    if not sampled:
        return 0
    if weighting == 2:
        g = 1.0
    amp = g if weighting == 1 else mag * g
    k = _bins_at(backend, weighting, rbin, cbin, amp, win_means, ang, idx, wts)
    return _spread_orientations(idx, wts, k) if weighting == 1 else k


@njit(cache=True)
def _project(values, centers, rotations, b, backend, weighting, window, mag, ang, out, totals_only):
    """Scatter ``values`` (n, K) of each descriptor over its pixels by contribution.

    ``K = 1``: one value per descriptor, ``R_p += R_l w_lp / sum_p' w_lp'`` with
    ``w_lp = sum_k w_lkp``; ``K = 128``: per dimension,
    ``R_p += sum_k R_lk w_lkp / sum_p' w_lkp'``. A descriptor (or dimension) of zero
    total weight falls back to the window weights (Gaussian x bilinear), which reach
    every sampled pixel. With ``totals_only`` nothing is scattered and the totals
    ``sum_p w_lkp`` are returned (n, K); otherwise the relevance no sampled pixel
    could take, per descriptor, is returned in column 0.
    """
    H, W = mag.shape
    n, K = values.shape
    per_dim = K > 1
    result = np.zeros((n, K)) if totals_only else np.zeros((n, 1))
    win_means = _vlfeat_window_means(b, window) if backend == _VLFEAT_FAST else np.ones(_D)
    idx = np.zeros(64, dtype=np.int64)
    wts = np.zeros(64)
    idx_w = np.zeros(64, dtype=np.int64)
    wts_w = np.zeros(64)
    two_pi = 2.0 * np.pi
    lo = 1 if backend == _OPENCV else 0  # OpenCV skips the image's outermost pixels
    for l in range(n):
        if not totals_only:
            nonzero = False
            for k in range(K):
                if values[l, k] != 0.0:
                    nonzero = True
            if not nonzero:
                continue
        cy, cx = centers[l, 0], centers[l, 1]
        cos_t, sin_t = np.cos(rotations[l]), np.sin(rotations[l])
        # sampled pixels lie in the (rotated) square of half side 2.5 b
        reach = 0.5 * (_D + 1) * b * (abs(cos_t) + abs(sin_t)) + 1.0
        rlo = max(lo, int(np.floor(cy - reach)))
        rhi = min(H - 1 - lo, int(np.ceil(cy + reach)))
        clo = max(lo, int(np.floor(cx - reach)))
        chi = min(W - 1 - lo, int(np.ceil(cx + reach)))
        Z = np.zeros(K)
        Zw = np.zeros(K)
        fallback = np.zeros(K, dtype=np.bool_)
        # pass 0: totals of the chosen weights; pass 1 (only when some total is 0): totals
        # of the window weights; pass 2: scatter
        for p in range(3):
            if p == 1:
                if totals_only:
                    for k in range(K):
                        result[l, k] = Z[k]
                    break
                any_zero = False
                for k in range(K):
                    if Z[k] <= 0.0:
                        fallback[k] = True
                        any_zero = True
                if not any_zero:
                    continue
            if p == 2:
                live = False
                for k in range(K):
                    if fallback[k] and Zw[k] <= 0.0:
                        result[l, 0] += values[l, k]
                    else:
                        live = True
                if not live:
                    break
                any_zero = False
                for k in range(K):
                    if fallback[k]:
                        any_zero = True
            for r in range(rlo, rhi + 1):
                for c in range(clo, chi + 1):
                    dy = r - cy
                    dx = c - cx
                    a = ((ang[r, c] - rotations[l]) % two_pi) * (_NT / two_pi)
                    if a >= _NT:
                        a -= _NT
                    if p == 1:
                        kw = _pixel_bins(
                            backend, 1, b, cos_t, sin_t, win_means, window, dy, dx, 0.0, a, idx_w, wts_w
                        )
                        for j in range(kw):
                            Zw[idx_w[j] if per_dim else 0] += wts_w[j]
                        continue
                    kk = _pixel_bins(
                        backend, weighting, b, cos_t, sin_t, win_means, window, dy, dx, mag[r, c], a, idx, wts
                    )
                    if p == 0:
                        for j in range(kk):
                            Z[idx[j] if per_dim else 0] += wts[j]
                        continue
                    acc = 0.0
                    for j in range(kk):
                        d = idx[j] if per_dim else 0
                        if not fallback[d]:
                            acc += values[l, d] * wts[j] / Z[d]
                    if any_zero:
                        kw = _pixel_bins(
                            backend, 1, b, cos_t, sin_t, win_means, window, dy, dx, 0.0, a, idx_w, wts_w
                        )
                        for j in range(kw):
                            d = idx_w[j] if per_dim else 0
                            if fallback[d] and Zw[d] > 0.0:
                                acc += values[l, d] * wts_w[j] / Zw[d]
                    if acc != 0.0:
                        out[r, c] += acc
    return result


@njit(cache=True)
def _pixel_mass(backend, weighting, b, cos_t, sin_t, win_means, window, dy, dx, mag):
    """``sum_k`` of the :func:`_pixel_bins` weights of one pixel (the orientation weights
    of a pixel sum to 1, so no angle is needed)."""
    use_window = weighting != 2
    sampled, rbin, cbin, g = _bin_position(backend, b, cos_t, sin_t, window, dy, dx)
    if not sampled:
        return 0.0
    if not use_window:
        g = 1.0
    amp = g if weighting == 1 else mag * g
    r0 = int(np.floor(rbin))
    c0 = int(np.floor(cbin))
    fr = rbin - r0
    fc = cbin - c0
    total = 0.0
    for a in range(2):
        ri = r0 + a
        if ri < 0 or ri >= _D:
            continue
        wr = fr if a else 1.0 - fr
        for c in range(2):
            ci = c0 + c
            if ci < 0 or ci >= _D:
                continue
            w = wr * (fc if c else 1.0 - fc)
            if backend == _VLFEAT_FAST and use_window:
                w *= win_means[ri] * win_means[ci]
            total += w
    return amp * total


@njit(cache=True)
def _project_scalar(values, centers, rotations, b, backend, weighting, window, mag, out, totals_only):
    """:func:`_project` per descriptor (``K = 1``), each pixel's mass computed once.

    The masses of a descriptor's bounding box are kept in a buffer between the total
    and the scatter; zero total: the window masses, as in :func:`_project`.
    """
    H, W = mag.shape
    n = values.shape[0]
    result = np.zeros((n, 1))
    win_means = _vlfeat_window_means(b, window) if backend == _VLFEAT_FAST else np.ones(_D)
    lo = 1 if backend == _OPENCV else 0
    side = int(np.ceil((_D + 1) * b * np.sqrt(2.0) + 2.0)) + 3
    buf = np.zeros((side, side))
    for l in range(n):
        v = values[l, 0]
        if v == 0.0 and not totals_only:
            continue
        cy, cx = centers[l, 0], centers[l, 1]
        cos_t, sin_t = np.cos(rotations[l]), np.sin(rotations[l])
        reach = 0.5 * (_D + 1) * b * (abs(cos_t) + abs(sin_t)) + 1.0
        rlo = max(lo, int(np.floor(cy - reach)))
        rhi = min(H - 1 - lo, int(np.ceil(cy + reach)))
        clo = max(lo, int(np.floor(cx - reach)))
        chi = min(W - 1 - lo, int(np.ceil(cx + reach)))
        for attempt in range(2):  # 0: the chosen weights; 1: window weights (zero total)
            wt = weighting if attempt == 0 else 1
            Z = 0.0
            for r in range(rlo, rhi + 1):
                for c in range(clo, chi + 1):
                    w = _pixel_mass(
                        backend, wt, b, cos_t, sin_t, win_means, window, r - cy, c - cx, mag[r, c]
                    )
                    buf[r - rlo, c - clo] = w
                    Z += w
            if totals_only:
                result[l, 0] = Z
                break
            if Z > 0.0:
                scale = v / Z
                for r in range(rlo, rhi + 1):
                    for c in range(clo, chi + 1):
                        w = buf[r - rlo, c - clo]
                        if w != 0.0:
                            out[r, c] += scale * w
                break
            if attempt == 1:
                result[l, 0] += v
    return result


@njit(cache=True, inline="always")
def _bin_position(backend, b, cos_t, sin_t, window, dy, dx):
    """Bin coordinates and Gaussian window of one pixel: ``(sampled, rbin, cbin, window)``;
    ``sampled`` is False when the descriptor does not sample the pixel."""
    if backend == _OPENCV:
        # calcSIFTDescriptor: rotated bin coordinates; window exp(-(u^2 + v^2) / 8), bin units
        c_rot = (dx * cos_t - dy * sin_t) / b
        r_rot = (dx * sin_t + dy * cos_t) / b
        rbin = r_rot + _D / 2 - 0.5
        cbin = c_rot + _D / 2 - 0.5
        if not (rbin > -1 and rbin < _D and cbin > -1 and cbin < _D):
            return False, rbin, cbin, 0.0
        return True, rbin, cbin, np.exp(-(c_rot * c_rot + r_rot * r_rot) / (_D * _D * 0.5))
    # dsift: triangular kernels of half-width b centred on the bin centres
    rbin = dy / b + 1.5
    cbin = dx / b + 1.5
    if not (rbin > -1 and rbin < _D and cbin > -1 and cbin < _D):
        return False, rbin, cbin, 0.0
    g = 1.0
    if backend == _VLFEAT_EXACT:
        s = window * b
        g = np.exp(-0.5 * (dx * dx + dy * dy) / (s * s))
    return True, rbin, cbin, g


@njit(cache=True, inline="always")
def _bins_at(backend, weighting, rbin, cbin, amp, win_means, ang, idx, wts):
    """The weights of :func:`_pixel_bins` from a pixel's bin position and amplitude."""
    use_window = weighting != 2
    r0 = int(np.floor(rbin))
    c0 = int(np.floor(cbin))
    fr = rbin - r0
    fc = cbin - c0
    o0 = int(np.floor(ang))
    fo = ang - o0
    k = 0
    for a in range(2):
        ri = r0 + a
        if ri < 0 or ri >= _D:
            continue
        wr = fr if a else 1.0 - fr
        for c in range(2):
            ci = c0 + c
            if ci < 0 or ci >= _D:
                continue
            w = amp * wr * (fc if c else 1.0 - fc)
            if backend == _VLFEAT_FAST and use_window:
                w *= win_means[ri] * win_means[ci]
            if w == 0.0:
                continue
            base = (ri * _D + ci) * _NT
            if weighting == 1:
                idx[k] = base
                wts[k] = w / _NT
                k += 1
            else:
                idx[k] = base + (o0 % _NT)
                wts[k] = w * (1.0 - fo)
                k += 1
                idx[k] = base + ((o0 + 1) % _NT)
                wts[k] = w * fo
                k += 1
    return k


@njit(cache=True, inline="always")
def _spread_orientations(idx, wts, k):
    """Window weighting: each spatial entry ``(base, w / 8)`` becomes 8, one per orientation."""
    for s in range(k - 1, -1, -1):
        base = idx[s]
        w = wts[s]
        for t in range(_NT - 1, -1, -1):
            idx[s * _NT + t] = base + t
            wts[s * _NT + t] = w
    return k * _NT


@njit(cache=True)
def _project_cached(values, centers, rotations, b, backend, weighting, window, mag, ang, out, totals_only):
    """:func:`_project` per dimension, each sampled pixel's weights computed once.

    The same sums in the same order as :func:`_project` (so the same floats): the
    chosen weights of a descriptor's bounding box are kept between the totals and the
    scatter, and the window weights (only when some dimension has no mass) are kept
    per spatial bin, as the eight orientations of a bin share one window weight.
    """
    H, W = mag.shape
    n, K = values.shape
    result = np.zeros((n, K)) if totals_only else np.zeros((n, 1))
    win_means = _vlfeat_window_means(b, window) if backend == _VLFEAT_FAST else np.ones(_D)
    lo = 1 if backend == _OPENCV else 0
    side = int(np.ceil((_D + 1) * b * np.sqrt(2.0) + 2.0)) + 3
    cap = side * side
    ch_n = np.zeros(cap, dtype=np.int64)  # chosen weights per box pixel (<= 32)
    ch_idx = np.zeros((cap, 32), dtype=np.int64)
    ch_w = np.zeros((cap, 32))
    wn_n = np.zeros(cap, dtype=np.int64)  # window weights per box pixel, per spatial bin
    wn_base = np.zeros((cap, 4), dtype=np.int64)
    wn_w = np.zeros((cap, 4))
    wn_g = np.zeros(cap)  # the pixel's window value, -1 outside
    wn_rc = np.zeros((cap, 2))  # and its bin coordinates
    idx = np.zeros(64, dtype=np.int64)
    wts = np.zeros(64)
    two_pi = 2.0 * np.pi
    Z = np.zeros(K)
    Zw = np.zeros(K)
    fallback = np.zeros(K, dtype=np.bool_)
    for l in range(n):
        if not totals_only:
            nonzero = False
            for k in range(K):
                if values[l, k] != 0.0:
                    nonzero = True
            if not nonzero:
                continue
        cy, cx = centers[l, 0], centers[l, 1]
        rot = rotations[l]
        cos_t, sin_t = np.cos(rot), np.sin(rot)
        reach = 0.5 * (_D + 1) * b * (abs(cos_t) + abs(sin_t)) + 1.0
        rlo = max(lo, int(np.floor(cy - reach)))
        rhi = min(H - 1 - lo, int(np.ceil(cy + reach)))
        clo = max(lo, int(np.floor(cx - reach)))
        chi = min(W - 1 - lo, int(np.ceil(cx + reach)))
        width = chi - clo + 1
        Z[:] = 0.0
        for r in range(rlo, rhi + 1):
            for c in range(clo, chi + 1):
                i = (r - rlo) * width + (c - clo)
                sampled, rbin, cbin, g = _bin_position(backend, b, cos_t, sin_t, window, r - cy, c - cx)
                if not sampled:
                    ch_n[i] = 0
                    wn_g[i] = -1.0
                    continue
                wn_g[i] = g
                wn_rc[i, 0] = rbin
                wn_rc[i, 1] = cbin
                if weighting == 2:
                    g = 1.0
                if weighting == 1:
                    kk = _bins_at(backend, 1, rbin, cbin, g, win_means, 0.0, idx, wts)
                    kk = _spread_orientations(idx, wts, kk)
                else:
                    a = ((ang[r, c] - rot) % two_pi) * (_NT / two_pi)
                    if a >= _NT:
                        a -= _NT
                    kk = _bins_at(backend, weighting, rbin, cbin, mag[r, c] * g, win_means, a, idx, wts)
                ch_n[i] = kk
                for j in range(kk):
                    ch_idx[i, j] = idx[j]
                    ch_w[i, j] = wts[j]
                    Z[idx[j]] += wts[j]
        if totals_only:
            for k in range(K):
                result[l, k] = Z[k]
            continue
        any_zero = False
        for k in range(K):
            fallback[k] = Z[k] <= 0.0
            if fallback[k]:
                any_zero = True
        if any_zero:
            Zw[:] = 0.0
            for r in range(rlo, rhi + 1):
                for c in range(clo, chi + 1):
                    i = (r - rlo) * width + (c - clo)
                    if wn_g[i] < 0.0:
                        wn_n[i] = 0
                        continue
                    kw = _bins_at(backend, 1, wn_rc[i, 0], wn_rc[i, 1], wn_g[i], win_means, 0.0, idx, wts)
                    wn_n[i] = kw
                    for s in range(kw):
                        base = idx[s]
                        w = wts[s]
                        wn_base[i, s] = base
                        wn_w[i, s] = w
                        for t in range(_NT):
                            Zw[base + t] += w
        live = False
        for k in range(K):
            if fallback[k] and Zw[k] <= 0.0:
                result[l, 0] += values[l, k]
            else:
                live = True
        if not live:
            continue
        for r in range(rlo, rhi + 1):
            for c in range(clo, chi + 1):
                i = (r - rlo) * width + (c - clo)
                acc = 0.0
                for j in range(ch_n[i]):
                    d = ch_idx[i, j]
                    if not fallback[d]:
                        acc += values[l, d] * ch_w[i, j] / Z[d]
                if any_zero:
                    for s in range(wn_n[i]):
                        base = wn_base[i, s]
                        w = wn_w[i, s]
                        for t in range(_NT):
                            d = base + t
                            if fallback[d] and Zw[d] > 0.0:
                                acc += values[l, d] * w / Zw[d]
                if acc != 0.0:
                    out[r, c] += acc
    return result


def project(values, centers, rotations, b, backend, weighting, window, mag, ang, out, totals_only, fast=True):
    """:func:`_project`, by the separable fast path when no descriptor is rotated.

    The fast path (``bowlrp.descriptors.contribution_separable``) computes the same weights factorised
    along rows and columns, ``O(5b)`` instead of ``O((5b)^2)`` work per descriptor;
    rotated descriptors (OpenCV, ``rotate=True``) take the per-pixel kernels, per
    descriptor :func:`.contribution_rotated.project_rotated_scalar` (each pixel's mass
    from a separable window and the bins' summed bilinear weights, over the rotated
    square only; :func:`_project_scalar` for other backends), per dimension
    :func:`_project_cached` (each pixel's weights once). ``fast=False``:
    :func:`_project` for all (the reference).
    """
    if fast and not np.any(rotations):
        win_means = _vlfeat_window_means(b, window) if backend == _VLFEAT_FAST else np.ones(_D)
        return project_unrotated(
            values, centers, b, backend, weighting, window, win_means, mag, ang, out, totals_only
        )
    if fast and values.shape[1] == 1 and backend == _OPENCV:
        return project_rotated_scalar(values, centers, rotations, b, weighting, mag, out, totals_only)
    if fast and values.shape[1] == 1:
        return _project_scalar(
            values, centers, rotations, b, backend, weighting, window, mag, out, totals_only
        )
    if fast:
        return _project_cached(
            values, centers, rotations, b, backend, weighting, window, mag, ang, out, totals_only
        )
    return _project(values, centers, rotations, b, backend, weighting, window, mag, ang, out, totals_only)


def blur_matrix(n: int, sigma: float) -> np.ndarray:
    """The (n, n) matrix ``A`` of OpenCV's float ``GaussianBlur`` along one axis.

    Kernel ``getGaussianKernel(round(8 sigma + 1) | 1, sigma)`` and the default
    border (reflect-101), so that ``blur(x) = A_rows @ x @ A_cols.T``. Every row
    sums to 1, hence the adjoint ``A.T`` conserves sums.
    """
    if sigma <= 0:
        return np.eye(n)
    kernel = gaussian_kernel(sigma)
    half = kernel.size // 2
    A = np.zeros((n, n))
    rows = np.arange(n)
    for t in range(-half, half + 1):
        q = rows + t
        if n > 1:
            period = 2 * (n - 1)
            q = np.abs(q) % period
            q = np.where(q > n - 1, period - q, q)
        else:
            q = np.zeros_like(q)
        np.add.at(A, (rows, q), kernel[t + half])
    return A


@njit(cache=True)
def _blur_adjoint_rows(heat, kernel):
    """``A.T @ heat`` for the reflect-101 blur matrix ``A`` of ``kernel`` along axis 0."""
    n, m = heat.shape
    half = kernel.size // 2
    out = np.zeros((n, m))
    period = 2 * (n - 1)
    for p in range(n):
        for t in range(-half, half + 1):
            q = p + t
            if n == 1:
                q = 0
            else:
                q = abs(q) % period
                if q > n - 1:
                    q = period - q
            w = kernel[t + half]
            for c in range(m):
                out[q, c] += w * heat[p, c]
    return out


def gaussian_kernel(sigma: float) -> np.ndarray:
    """OpenCV's float ``GaussianBlur`` kernel: ``getGaussianKernel(round(8 sigma + 1) | 1, sigma)``."""
    return cv2.getGaussianKernel(int(round(8 * sigma + 1)) | 1, sigma, cv2.CV_64F).ravel()


def _blur_adjoint(heat: np.ndarray, sigmas: list[float]) -> np.ndarray:
    """``(B_k ... B_1)^T`` applied to a map on the last blurred image: back to input pixels.

    Each ``B x = A_rows x A_cols^T``, so ``B^T R = A_rows^T R A_cols``; computed tap by tap
    (``O(H W taps)``), equal to the dense :func:`blur_matrix` products (tested).
    """
    for sigma in reversed(sigmas):
        if sigma > 0:
            k = gaussian_kernel(sigma)
            heat = _blur_adjoint_rows(np.ascontiguousarray(heat), k)
            heat = np.ascontiguousarray(_blur_adjoint_rows(np.ascontiguousarray(heat.T), k).T)
    return heat


def _backend_code(extractor) -> int:
    if extractor.backend_ == "opencv":
        return _OPENCV
    return _VLFEAT_FAST if extractor.fast else _VLFEAT_EXACT


def contribution(
    descriptors: Descriptors,
    extractor,
    image,
    relevance: np.ndarray,
    per_dim: np.ndarray | None = None,
    weighting: str = "full",
    through_blur: bool = True,
    fast: bool = True,
) -> np.ndarray:
    """Contribution-weighted projection of SIFT relevance onto pixels.

    With ``m_p`` the gradient magnitude at pixel ``p``, ``g_l(p)`` the descriptor's
    Gaussian window, ``s_lk(p)`` the bilinear spatial weight and ``o_k(p)`` the
    linear orientation weight of dimension ``k``, ``w_lkp = m_p g_l(p) s_lk(p) o_k(p)``
    is the mass pixel ``p`` adds to dimension ``k`` of descriptor ``l``. Then

    * per descriptor (``per_dim`` None): ``R_p = sum_l R_l w_lp / sum_p' w_lp'``,
      ``w_lp = sum_k w_lkp``;
    * per dimension: ``R_p = sum_l sum_k R_lk w_lkp / sum_p' w_lkp'``.

    ``weighting="window"`` drops ``m_p`` (and ``o_k`` becomes 1/8), ``"gradient"``
    drops ``g_l``. Weights live on the image the descriptor reads (after phow
    smoothing, and for OpenCV its base blur); ``through_blur`` maps them back to the
    input pixels with the adjoint of those blurs (rows sum to 1: conserving).
    Colour descriptors split ``R_l`` over channels by their total mass.

    Parameters
    ----------
    descriptors : Descriptors (N, 128 C) of a fitted ``DenseSIFT`` ``extractor``
    image : (H, W) or (H, W, 3) float image the descriptors were computed on
    relevance : (N,) descriptor relevance
    per_dim : (N, 128 C) relevance per dimension, layout [channel][bin_y][bin_x][theta]
    weighting : {"full", "window", "gradient"}
    through_blur : bool
    fast : bool
        Unrotated descriptors by the separable kernel (``bowlrp.descriptors.contribution_separable``);
        False: every descriptor by the per-pixel kernel (the two agree to rounding).

    Returns
    -------
    ndarray (H, W) float64 with ``sum == relevance.sum()`` (or ``per_dim.sum()``).
    """
    if weighting not in WEIGHTINGS:
        raise RuleError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    img = as_float_image(image)
    H, W = descriptors.image_shape
    if img.shape[:2] != (H, W):
        raise RuleError(
            f"image of shape {img.shape[:2]} is not the one the descriptors were computed on ({H}, {W})"
        )
    n = len(descriptors)
    relevance = np.asarray(relevance, dtype=np.float64)
    n_ch = max(1, descriptors.n_features // (_D * _D * _NT))
    if descriptors.n_features != n_ch * _D * _D * _NT:
        raise RuleError(
            f"the contribution rule needs SIFT descriptors (128 values per "
            f"channel), got D={descriptors.n_features}"
        )
    backend = _backend_code(extractor)
    code = _WEIGHT_CODE[weighting]
    rotations = -descriptors.orientations if backend == _OPENCV else np.zeros(n)
    heat = np.zeros((H, W))
    leftover = np.zeros(n)
    for b in np.unique(descriptors.scales):
        rows = np.flatnonzero(descriptors.scales == b)
        if rows[-1] - rows[0] + 1 == rows.size:  # one run (scale by scale): views, no copies
            rows = slice(int(rows[0]), int(rows[-1]) + 1)
        centers = np.ascontiguousarray(descriptors.centers[rows])
        rot = np.ascontiguousarray(rotations[rows])
        # per descriptor the fast kernels never read the angles (orientation weights sum to 1)
        angles = per_dim is not None or not fast
        mags, angs, sigmas = extractor.gradient_maps(img, float(b), angles)
        if per_dim is None:
            values = relevance[rows]
            if n_ch > 1:  # split R_l over the channels by their total mass
                mass = np.column_stack(
                    [
                        project(
                            np.ones((len(centers), 1)),
                            centers,
                            rot,
                            float(b),
                            backend,
                            code,
                            VLFEAT_WINDOW,
                            mags[c],
                            angs[c],
                            heat,
                            True,
                            fast,
                        )[:, 0]
                        for c in range(n_ch)
                    ]
                )
                total = mass.sum(axis=1, keepdims=True)
                share = np.where(total > 0, mass / np.where(total > 0, total, 1.0), 1.0 / n_ch)
                values = values[:, None] * share
            else:
                values = values[:, None]
        else:
            values = np.asarray(per_dim, dtype=np.float64)[rows]
        base = np.zeros((H, W))
        for c in range(n_ch):
            v = values[:, c : c + 1] if per_dim is None else values[:, c * 128 : (c + 1) * 128]
            left = project(
                np.ascontiguousarray(v),
                centers,
                rot,
                float(b),
                backend,
                code,
                VLFEAT_WINDOW,
                mags[c],
                angs[c],
                base,
                False,
                fast,
            )
            leftover[rows] += left[:, 0]
        heat += _blur_adjoint(base, sigmas) if through_blur else base
    if np.any(leftover != 0):  # descriptors without a sampled pixel: flat over their area
        heat += descriptors.rasterize(leftover)
    return heat
