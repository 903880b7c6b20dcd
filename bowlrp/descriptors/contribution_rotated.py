"""Fast path of the per-descriptor contribution projection for rotated SIFT (OpenCV).

Rotated descriptors (``DenseSIFT(rotate=True)``, OpenCV backend) are not separable in
image axes, but their per-descriptor mass is cheap per pixel. With ``(u, v)`` the
rotated bin coordinates of pixel ``p`` (docs/pixel_rules.md, the OpenCV column of
"The two backends"), the mass ``w_lp = sum_k w_lkp`` of the reference kernel
(:func:`bowlrp.descriptors.contribution._project` with ``K = 1``) is

    w_lp = m_p * g(dy) * g(dx) * f(v) * f(u),   (u, v) in (-1, 4)^2, else 0

* ``g(d) = exp(-d^2 / (8 b^2))``: OpenCV's window ``exp(-(u'^2 + v'^2) / 8)`` (bin
  units, centred) is rotation invariant, so it factorises along the image axes and
  is evaluated ``O(5b)`` times per descriptor instead of once per pixel;
* ``f(x) = sum_i max(0, 1 - abs(x - i))`` over the 4 bins ``i``: the bilinear
  weights of a pixel on the bins it reaches sum to ``1`` inside ``[0, 3]``, to
  ``x + 1`` on ``(-1, 0)`` and to ``4 - x`` on ``(3, 4)``, that is
  ``f(x) = max(0, min(1, x + 1, 4 - x))``, which is 0 outside ``(-1, 4)`` (pixels
  the descriptor does not sample), so the inner loop has no branch;
* the orientation weights of a pixel sum to 1, so no angle is read.

Only the pixels of the rotated square ``(u, v) in (-1, 4)^2`` are visited (a
conservative column interval per row), not its bounding box; along a row the bin
coordinates advance by ``(sin t, cos t) / b`` per column. The weighting
``"window"`` drops ``m_p``, ``"gradient"`` drops ``g``; zero total mass falls back to
the window weights, as in the reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_D = 4


@njit(cache=True, inline="always")
def _column_interval(dy, cos_t, sin_t, b, clo, chi, cx):
    """Columns ``[c0, c1]`` containing every pixel of row offset ``dy`` that the rotated
    square ``abs(u - 1.5), abs(v - 1.5) < 2.5`` can hold (a superset, clipped to the box)."""
    half = 0.5 * (_D + 1) * b
    lo_x = -1e300
    hi_x = 1e300
    # u: dx cos - dy sin in (-half, half);  v: dx sin + dy cos in (-half, half)
    for coef, shift in ((cos_t, dy * sin_t), (sin_t, -dy * cos_t)):
        if abs(coef) > 1e-12:
            a = (-half + shift) / coef
            z = (half + shift) / coef
            if a > z:
                a, z = z, a
            lo_x = max(lo_x, a)
            hi_x = min(hi_x, z)
    c0 = max(clo, int(np.floor(cx + lo_x)) - 1) if lo_x > -1e299 else clo
    c1 = min(chi, int(np.ceil(cx + hi_x)) + 1) if hi_x < 1e299 else chi
    return c0, c1


@njit(cache=True)
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
    """
    H, W = mag.shape
    n = values.shape[0]
    result = np.zeros((n, 1))
    lo = 1  # OpenCV never samples the image's outer ring
    side = int(np.ceil((_D + 1) * b * np.sqrt(2.0) + 2.0)) + 3
    buf = np.zeros((side, side))
    row_c0 = np.zeros(side, dtype=np.int64)
    row_c1 = np.zeros(side, dtype=np.int64)
    gy = np.ones(side)
    gx = np.ones(side)
    inv = 1.0 / (2.0 * _D * b * b)  # g(d) = exp(-d^2 / (8 b^2))
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
        for r in range(rlo, rhi + 1):
            dy = r - cy
            gy[r - rlo] = np.exp(-dy * dy * inv)
            c0, c1 = _column_interval(dy, cos_t, sin_t, b, clo, chi, cx)
            row_c0[r - rlo] = c0
            row_c1[r - rlo] = c1
        for c in range(clo, chi + 1):
            dx = c - cx
            gx[c - clo] = np.exp(-dx * dx * inv)
        ca, sa = cos_t / b, sin_t / b
        for attempt in range(2):  # 0: the chosen weights; 1: window weights (zero total)
            wt = weighting if attempt == 0 else 1
            Z = 0.0
            for r in range(rlo, rhi + 1):
                dy = r - cy
                wy = 1.0 if wt == 2 else gy[r - rlo]
                c0 = row_c0[r - rlo]
                # bin coordinates at the row's first column, then one column step at a time
                dx0 = c0 - cx
                cbin = dx0 * ca - dy * sa + 0.5 * (_D - 1)
                rbin = dx0 * sa + dy * ca + 0.5 * (_D - 1)
                for k in range(row_c1[r - rlo] - c0 + 1):
                    rb = rbin + k * sa
                    cb = cbin + k * ca
                    # the bins' summed bilinear weights; 0 outside (-1, 4), as unsampled
                    w = max(0.0, min(1.0, rb + 1.0, _D - rb)) * max(0.0, min(1.0, cb + 1.0, _D - cb)) * wy
                    if wt != 2:
                        w *= gx[c0 - clo + k]
                    if wt != 1:
                        w *= mag[r, c0 + k]
                    buf[r - rlo, c0 - clo + k] = w
                    Z += w
            if totals_only:
                result[l, 0] = Z
                break
            if Z > 0.0:
                scale = v / Z
                for r in range(rlo, rhi + 1):
                    for c in range(row_c0[r - rlo], row_c1[r - rlo] + 1):
                        out[r, c] += scale * buf[r - rlo, c - clo]
                break
            if attempt == 1:
                result[l, 0] += v
    return result
