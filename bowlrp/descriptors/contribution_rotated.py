"""Fast path of the per-descriptor contribution projection for rotated SIFT (OpenCV).

Rotated descriptors (``DenseSIFT(rotate=True)``, OpenCV backend) are not separable in
image axes, but their per-descriptor mass is cheap per pixel. With ``(u, v)`` the
rotated bin coordinates of pixel ``p`` (docs/pixel_rules.md, the OpenCV column of
"The two backends"), the mass ``w_lp = sum_k w_lkp`` of the reference kernel
(:func:`bowlrp.descriptors.contribution._project` with ``K = 1``) is

    w_lp = m_p * g(dy) * g(dx) * f(v) * f(u),   (u, v) in (-1, 4)^2, else 0

* ``g(d) = exp(-d^2 / (8 b^2))``: OpenCV's window ``exp(-(u'^2 + v'^2) / 8)`` (bin
  units, centred) is rotation invariant, so it factorises along the image axes; it
  is tabulated once per call by integer offset from the centre (again only when a
  centre's fractional part changes: never on OpenCV's integer grid);
* ``f(x) = sum_i max(0, 1 - abs(x - i))`` over the 4 bins ``i``: the bilinear
  weights of a pixel on the bins it reaches sum to ``1`` inside ``[0, 3]``, to
  ``x + 1`` on ``(-1, 0)`` and to ``4 - x`` on ``(3, 4)``, that is
  ``f(x) = max(0, min(1, x + 1, 4 - x))``, which is 0 outside ``(-1, 4)`` (pixels
  the descriptor does not sample), so the inner loop has no branch;
* the orientation weights of a pixel sum to 1, so no angle is read.

Only the pixels of the rotated square ``(u, v) in (-1, 4)^2`` are visited (its column
interval per row), not its bounding box; along a row the bin coordinates advance by
``(sin t, cos t) / b`` per column. The weighting ``"window"`` drops ``m_p``,
``"gradient"`` drops ``g``; zero total mass falls back to the window weights, as in
the reference.

Cost (issue 27): per descriptor ``O(5b)`` interval arithmetic and per pixel two
branch-free SIMD passes over zero-based row views, one writing the masses into a
scratch tile (allocated once per call) and summing them, one adding ``R_l / Z_l``
times the tile to the map. The sums are reassociated (fast-math ``reassoc``, never the
no-NaN / no-inf flags), so they equal the reference's to rounding, not bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_D = 4


#: fast-math without the no-inf / no-NaN assumptions: reassociation lets the row sums and
#: the clamps of the inner loops run in SIMD lanes (the sums then differ by rounding only)
_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


@njit(cache=True, inline="always")
def _column_interval(dy, cos_t, sin_t, inv_cos, inv_sin, half, clo, chi, cx):
    """Columns ``[c0, c1]`` containing every pixel of row offset ``dy`` inside the rotated
    square ``abs(u - 1.5), abs(v - 1.5) < 2.5`` (bin units; ``half = 2.5 b`` pixels),
    clipped to the box ``[clo, chi]``, empty when ``c0 > c1``. Outside it ``f(u) f(v) = 0``;
    the floor / ceil keep a pixel on the edge (its weight is 0 there)."""
    lo_x = -1e300
    hi_x = 1e300
    # u: dx cos - dy sin in (-half, half);  v: dx sin + dy cos in (-half, half)
    for coef, inv_coef, shift in ((cos_t, inv_cos, dy * sin_t), (sin_t, inv_sin, -dy * cos_t)):
        if abs(coef) > 1e-12:
            a = (-half + shift) * inv_coef
            z = (half + shift) * inv_coef
            if a > z:
                a, z = z, a
            lo_x = max(lo_x, a)
            hi_x = min(hi_x, z)
        elif abs(shift) >= half:  # the row misses the square
            return clo, clo - 1
    c0 = max(clo, int(np.floor(cx + lo_x))) if lo_x > -1e299 else clo
    c1 = min(chi, int(np.ceil(cx + hi_x))) if hi_x < 1e299 else chi
    return c0, c1


@njit(cache=True)
def _window_table(frac, inv, table):
    """``table[j] = g(j - M - frac)``, ``g(d) = exp(-d^2 inv)``, ``M = (table.size - 1) / 2``:
    the window factor of every integer offset from a centre with fractional part ``frac``."""
    M = (table.shape[0] - 1) // 2
    for j in range(table.shape[0]):
        d = (j - M) - frac
        table[j] = np.exp(-d * d * inv)


@njit(cache=True, inline="always")
def _tent_sum(x):
    """``f(x) = max(0, min(1, x + 1, 4 - x))``: the 4 bins' summed bilinear weights."""
    t = x + 1.0
    e = _D - x
    t = t if t < e else e
    t = t if t < 1.0 else 1.0
    return t if t > 0.0 else 0.0


@njit(cache=True, fastmath=_FASTMATH)
def _row_window(rbin, cbin, sa, ca, wy, gx, dst):
    """One row of the rotated square, weighting ``"window"``: ``dst[k] = f(v_k) f(u_k) wy
    gx[k]`` with ``(v_k, u_k) = (rbin + k sa, cbin + k ca)``; returns ``sum_k dst[k]``."""
    z = 0.0
    t = 0.0
    for k in range(dst.shape[0]):
        w = _tent_sum(rbin + t * sa) * _tent_sum(cbin + t * ca) * (gx[k] * wy)
        t += 1.0
        dst[k] = w
        z += w
    return z


@njit(cache=True, fastmath=_FASTMATH)
def _row_gradient(rbin, cbin, sa, ca, mag_row, dst):
    """:func:`_row_window` with the magnitude for the window (weighting ``"gradient"``):
    ``dst[k] = f(v_k) f(u_k) mag_row[k]``."""
    z = 0.0
    t = 0.0
    for k in range(dst.shape[0]):
        w = _tent_sum(rbin + t * sa) * _tent_sum(cbin + t * ca) * mag_row[k]
        t += 1.0
        dst[k] = w
        z += w
    return z


@njit(cache=True, fastmath=_FASTMATH)
def project_rotated_scalar(values, centers, rotations, b, weighting, mag, out, totals_only):
    """Per-descriptor contribution projection of rotated OpenCV SIFT descriptors.

    Same contract and the same sums as
    :func:`bowlrp.descriptors.contribution._project_scalar` (OpenCV backend):
    ``out[p] += R_l w_lp / sum_p' w_lp'`` for every descriptor ``l``.

    Parameters
    ----------
    values : (n, 1) relevance per descriptor
    centers : (n, 2) row, column centres;  rotations : (n,) descriptor rotation, radians
    b : bin size;  weighting : 0 full, 1 window, 2 gradient
    mag : (H, W) gradient magnitude of the image the descriptors read
    out : (H, W) map the relevance is added to
    totals_only : return the totals ``sum_p w_lp`` (n, 1) and scatter nothing

    Returns
    -------
    (n, 1): the totals, or the relevance no sampled pixel could take.

    Notes
    -----
    Per descriptor: the window factors from the tables, the column interval of the
    rotated square per row, then per row one pass writing the masses into the scratch
    tile and summing them (inline for ``"full"``, the default; :func:`_row_window` /
    :func:`_row_gradient` for the others), and one pass adding ``R_l / Z_l`` times the
    tile to ``out``.
    """
    H, W = mag.shape
    n = values.shape[0]
    result = np.zeros((n, 1))
    lo = 1  # OpenCV never samples the image's outer ring
    side = int(np.ceil((_D + 1) * b * np.sqrt(2.0) + 2.0)) + 3
    buf = np.zeros((side, side))
    row_c0 = np.zeros(side, dtype=np.int64)
    row_c1 = np.zeros(side, dtype=np.int64)
    # window factors by integer offset, recomputed only when a centre's fractional part
    # changes (never on an integer grid)
    M = side
    tab_y = np.empty(2 * M + 1)
    tab_x = np.empty(2 * M + 1)
    frac_y = frac_x = -1.0
    inv = 1.0 / (2.0 * _D * b * b)  # g(d) = exp(-d^2 / (8 b^2))
    half = 0.5 * (_D + 1) * b
    for l in range(n):
        v = values[l, 0]
        if v == 0.0 and not totals_only:
            continue
        cy, cx = centers[l, 0], centers[l, 1]
        cos_t, sin_t = np.cos(rotations[l]), np.sin(rotations[l])
        inv_cos = 1.0 / cos_t if abs(cos_t) > 1e-12 else 0.0
        inv_sin = 1.0 / sin_t if abs(sin_t) > 1e-12 else 0.0
        reach = half * (abs(cos_t) + abs(sin_t)) + 1.0
        rlo = max(lo, int(np.floor(cy - reach)))
        rhi = min(H - 1 - lo, int(np.ceil(cy + reach)))
        clo = max(lo, int(np.floor(cx - reach)))
        chi = min(W - 1 - lo, int(np.ceil(cx + reach)))
        if rlo > rhi or clo > chi:
            if not totals_only:
                result[l, 0] += v
            continue
        fl_y, fl_x = np.floor(cy), np.floor(cx)
        if cy - fl_y != frac_y:
            frac_y = cy - fl_y
            _window_table(frac_y, inv, tab_y)
        if cx - fl_x != frac_x:
            frac_x = cx - fl_x
            _window_table(frac_x, inv, tab_x)
        gy = tab_y[rlo - int(fl_y) + M :]
        gx = tab_x[clo - int(fl_x) + M :]
        for r in range(rlo, rhi + 1):
            c0, c1 = _column_interval(r - cy, cos_t, sin_t, inv_cos, inv_sin, half, clo, chi, cx)
            row_c0[r - rlo] = c0
            row_c1[r - rlo] = c1
        ca, sa = cos_t / b, sin_t / b
        for attempt in range(2):  # 0: the chosen weights; 1: window weights (zero total)
            wt = weighting if attempt == 0 else 1
            Z = 0.0
            for r in range(rlo, rhi + 1):
                i = r - rlo
                c0, c1 = row_c0[i], row_c1[i]
                if c1 < c0:
                    continue
                dy = r - cy
                # bin coordinates at the row's first column; one column step adds (sa, ca)
                dx0 = c0 - cx
                cbin = dx0 * ca - dy * sa + 0.5 * (_D - 1)
                rbin = dx0 * sa + dy * ca + 0.5 * (_D - 1)
                a, z = c0 - clo, c1 - clo + 1
                if wt == 0:
                    # zero-based contiguous views and a float column counter: no index
                    # arithmetic, conversion or branch in the loop body (SIMD)
                    mv = mag[r, c0 : c1 + 1]
                    bv = buf[i, a:z]
                    gv = gx[a:z]
                    wy = gy[i]
                    t = 0.0
                    zz = 0.0
                    for k in range(z - a):
                        w = _tent_sum(rbin + t * sa) * _tent_sum(cbin + t * ca) * (gv[k] * wy) * mv[k]
                        t += 1.0
                        bv[k] = w
                        zz += w
                    Z += zz
                elif wt == 1:
                    Z += _row_window(rbin, cbin, sa, ca, gy[i], gx[a:z], buf[i, a:z])
                else:
                    Z += _row_gradient(rbin, cbin, sa, ca, mag[r, c0 : c1 + 1], buf[i, a:z])
            if totals_only:
                result[l, 0] = Z
                break
            if Z > 0.0:
                scale = v / Z
                for r in range(rlo, rhi + 1):
                    i = r - rlo
                    c0, c1 = row_c0[i], row_c1[i]
                    if c1 >= c0:
                        ov = out[r, c0 : c1 + 1]
                        bv = buf[i, c0 - clo : c1 - clo + 1]
                        for k in range(c1 - c0 + 1):
                            ov[k] += scale * bv[k]
                break
            if attempt == 1:
                result[l, 0] += v
    return result
