"""Contribution-weighted pixel rule: plain-NumPy references of the pixel weights, the
OpenCV descriptor rebuilt from them, conservation, and no relevance where a pixel
cannot change the descriptor."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bowlrp import DenseSIFT, Descriptors
from bowlrp.descriptors import contribution_separable as separable
from bowlrp.descriptors.contribution import (
    _OPENCV,
    _VLFEAT_EXACT,
    _VLFEAT_FAST,
    VLFEAT_WINDOW,
    _blur_adjoint,
    _project,
    _vlfeat_window_means,
    blur_matrix,
    contribution,
)
from bowlrp.descriptors.contribution_rotated import project_rotated_scalar
from bowlrp.exceptions import RuleError
from bowlrp.rules import Contribution, parse_rule

from .conftest import blobs, needs_vlfeat, stripes

# -- plain NumPy references ------------------------------------------------------------------


def opencv_base(channel, b, smooth=True, magnification=6.0):
    """The image OpenCV's SIFT reads: phow smoothing, uint8, base blur sqrt(1.6^2 - 0.5^2)."""
    img = channel.astype(np.float32)
    if smooth and (b / magnification) ** 2 > 0.25:
        img = cv2.GaussianBlur(img, (0, 0), np.sqrt((b / magnification) ** 2 - 0.25))
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    s = np.sqrt(1.6**2 - 0.5**2)
    return cv2.GaussianBlur(u8.astype(np.float32), (0, 0), s, sigmaY=s).astype(np.float64)


def opencv_weights(base, row, col, theta, b, mode="full"):
    """OpenCV calcSIFTDescriptor transcribed: per sampled pixel its mass on the 4x4x8 bins.

    ``mode="window"``: magnitude 1 and 1/8 per orientation; ``"gradient"``: no Gaussian.
    Returns (rows, cols, W) with W (P, 128) in the layout [bin_y][bin_x][theta].
    """
    H, Wd = base.shape
    angle = (360.0 - np.degrees(theta)) % 360.0
    cos_t, sin_t = np.cos(np.radians(angle)) / b, np.sin(np.radians(angle)) / b
    radius = int(round(b * np.sqrt(2) * 2.5))
    i, j = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    i, j = i.ravel(), j.ravel()
    c_rot = j * cos_t - i * sin_t
    r_rot = j * sin_t + i * cos_t
    rbin, cbin = r_rot + 1.5, c_rot + 1.5
    r, c = row + i, col + j
    ok = (rbin > -1) & (rbin < 4) & (cbin > -1) & (cbin < 4) & (r > 0) & (r < H - 1) & (c > 0) & (c < Wd - 1)
    i, j, r, c, rbin, cbin, c_rot, r_rot = (a[ok] for a in (i, j, r, c, rbin, cbin, c_rot, r_rot))
    dx = base[r, c + 1] - base[r, c - 1]
    dy = base[r - 1, c] - base[r + 1, c]
    ori = np.degrees(np.arctan2(dy, dx)) % 360.0
    mag = np.hypot(dx, dy) * np.exp(-(c_rot**2 + r_rot**2) / 8.0)
    if mode == "gradient":
        mag = np.hypot(dx, dy)
    obin = ((ori - angle) % 360.0) * 8 / 360.0
    r0, c0, o0 = np.floor(rbin).astype(int), np.floor(cbin).astype(int), np.floor(obin).astype(int)
    fr, fc, fo = rbin - r0, cbin - c0, obin - o0
    W = np.zeros((r.size, 4, 4, 8))
    P = np.arange(r.size)
    for a, wr in ((0, 1 - fr), (1, fr)):
        for e, wc in ((0, 1 - fc), (1, fc)):
            for g, wo in ((0, 1 - fo), (1, fo)):
                rr, cc, oo = r0 + a, c0 + e, (o0 + g) % 8
                inside = (rr >= 0) & (rr < 4) & (cc >= 0) & (cc < 4)
                W[P[inside], rr[inside], cc[inside], oo[inside]] += (mag * wr * wc * wo)[inside]
    if mode == "window":
        spatial = W.sum(axis=3) / np.where(mag > 0, mag, 1.0)[:, None, None]
        g = np.exp(-(c_rot**2 + r_rot**2) / 8.0)
        # rebuild without the magnitude: Gaussian x bilinear, spread evenly over orientations
        W = np.zeros((r.size, 4, 4, 8))
        for a, wr in ((0, 1 - fr), (1, fr)):
            for e, wc in ((0, 1 - fc), (1, fc)):
                rr, cc = r0 + a, c0 + e
                inside = (rr >= 0) & (rr < 4) & (cc >= 0) & (cc < 4)
                W[P[inside], rr[inside], cc[inside], :] += (g * wr * wc)[inside, None] / 8
        del spatial
    return r, c, W.reshape(r.size, 128)


def window_fallback(W, Wwin, R):
    """Per-dimension coefficients: R_k / Z_k, or R_k / Zwin_k on the window weights if Z_k = 0."""
    Z, Zw = W.sum(0), Wwin.sum(0)
    live = Z > 0
    return (W * np.divide(R, Z, out=np.zeros_like(R), where=live)).sum(1) + (
        Wwin * np.where(live, 0.0, np.divide(R, Zw, out=np.zeros_like(R), where=Zw > 0))
    ).sum(1)


def opencv_descriptor_from_weights(W):
    """OpenCV's normalisation of the raw histogram: l2, clip 0.2, l2, x512, uint8."""
    h = W.sum(axis=0).astype(np.float32)
    h = np.minimum(h, np.sqrt((h**2).sum()) * 0.2)
    h = h * (512.0 / max(np.sqrt((h**2).sum()), 1e-7))
    return np.clip(np.rint(h), 0, 255)


def vlfeat_weights(channel, row, col, b, fast, window=VLFEAT_WINDOW):
    """dsift transcribed: triangular bins of half-width b, Gaussian (exact) or per-bin mean
    (fast) window of sigma window * b, central-difference gradients, linear orientation bins."""
    img = channel.astype(np.float64)
    gy, gx = np.gradient(img)
    mag = np.hypot(gx, gy)
    ori = (np.arctan2(gy, gx) % (2 * np.pi)) * 8 / (2 * np.pi)
    H, Wd = img.shape
    r, c = np.mgrid[0:H, 0:Wd]
    r, c = r.ravel(), c.ravel()
    dy, dx = r - row, c - col
    W = np.zeros((r.size, 4, 4, 8))
    means = np.array(
        [
            np.mean(np.exp(-0.5 * ((np.arange(-b + 1, b) - b * (i - 1.5)) / (window * b)) ** 2))
            for i in range(4)
        ]
    )
    o = ori[r, c]
    o0 = np.floor(o).astype(int)
    fo = o - o0
    for bi in range(4):
        ty = np.maximum(0, 1 - np.abs(dy - b * (bi - 1.5)) / b)
        for bj in range(4):
            tx = np.maximum(0, 1 - np.abs(dx - b * (bj - 1.5)) / b)
            if fast:
                win = means[bi] * means[bj]
            else:
                win = np.exp(-0.5 * (dx**2 + dy**2) / (window * b) ** 2)
            w = mag[r, c] * ty * tx * win
            W[np.arange(r.size), bi, bj, o0 % 8] += w * (1 - fo)
            W[np.arange(r.size), bi, bj, (o0 + 1) % 8] += w * fo
    keep = W.reshape(r.size, -1).any(axis=1)
    return r[keep], c[keep], W.reshape(r.size, 128)[keep]


def vlfeat_window_weights(shape, row, col, b, fast, window=VLFEAT_WINDOW):
    """The window weights of every pixel of the image (Gaussian or per-bin mean x bilinear,
    1/8 per orientation), (H * W, 128): the zero-mass fallback."""
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]]
    dy, dx = r.ravel() - row, c.ravel() - col
    means = np.array(
        [
            np.mean(np.exp(-0.5 * ((np.arange(-b + 1, b) - b * (i - 1.5)) / (window * b)) ** 2))
            for i in range(4)
        ]
    )
    W = np.zeros((dy.size, 4, 4, 8))
    for bi in range(4):
        ty = np.maximum(0, 1 - np.abs(dy - b * (bi - 1.5)) / b)
        for bj in range(4):
            tx = np.maximum(0, 1 - np.abs(dx - b * (bj - 1.5)) / b)
            win = means[bi] * means[bj] if fast else np.exp(-0.5 * (dx**2 + dy**2) / (window * b) ** 2)
            W[:, bi, bj, :] = (ty * tx * win)[:, None] / 8
    return W.reshape(dy.size, 128)


# -- helpers -----------------------------------------------------------------------------------


def _scene(seed, n=48):
    rng = np.random.default_rng(seed)
    return stripes(rng, n) if seed % 2 else blobs(rng, n)


def _one_descriptor(extractor, img, index):
    d = extractor.describe(img)
    return d, d.subset(np.array([index]))


def _map(r, c, values, shape):
    out = np.zeros(shape)
    np.add.at(out, (r, c), values)
    return out


def _vlfeat_like(fast):
    ex = DenseSIFT(bin_sizes=[4], steps=4, backend="opencv", smooth=False).fit()
    ex.backend_ = "vlfeat"  # the kernels only read backend_, fast, colour and smoothing
    ex.fast = fast
    return ex


def _vlfeat_descriptors(shape, b, centers):
    n = len(centers)
    return Descriptors(
        np.zeros((n, 128), np.float32),
        np.asarray(centers, float),
        np.full(n, 2 * b),
        np.zeros(n),
        np.zeros(n, np.int8),
        np.full(n, float(b)),
        shape,
        "sift-grey",
    )


# -- OpenCV --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rotate", [False, True])
def test_reference_rebuilds_opencv_descriptor(rotate):
    """The NumPy weights are the mass OpenCV puts in each bin: its descriptor follows from them."""
    img = _scene(1, 56)
    ex = DenseSIFT(bin_sizes=[6], steps=6, rotate=rotate, backend="opencv").fit()
    d = ex.describe(img)
    base = opencv_base(img, 6)
    diffs = []
    for i in range(len(d)):
        _, _, W = opencv_weights(base, int(d.centers[i, 0]), int(d.centers[i, 1]), d.orientations[i], 6)
        diffs.append(np.abs(opencv_descriptor_from_weights(W) - d.data[i]))
    diffs = np.array(diffs)
    # OpenCV bins with float32 and approximate fastAtan2 / exp: a few units of 255 at most
    assert np.quantile(diffs, 0.99) <= 2, np.quantile(diffs, 0.99)
    assert diffs.mean() < 0.1, diffs.mean()


@pytest.mark.parametrize("rotate", [False, True])
def test_fast_kernel_equals_reference_opencv(rotate):
    img = _scene(2, 56)
    ex = DenseSIFT(bin_sizes=[6], steps=6, rotate=rotate, backend="opencv").fit()
    d = ex.describe(img)
    base = opencv_base(img, 6)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(d), 4, replace=False):
        one = d.subset(np.array([i]))
        r, c, W = opencv_weights(base, int(one.centers[0, 0]), int(one.centers[0, 1]), one.orientations[0], 6)
        got = contribution(one, ex, img, np.array([1.0]), through_blur=False)
        want = _map(r, c, W.sum(1) / W.sum(), img.shape)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        R = rng.normal(size=(1, 128))
        got = contribution(one, ex, img, R.sum(1), per_dim=R, through_blur=False)
        _, _, Wwin = opencv_weights(
            base, int(one.centers[0, 0]), int(one.centers[0, 1]), one.orientations[0], 6, "window"
        )
        want = _map(r, c, window_fallback(W, Wwin, R[0]), img.shape)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", ["window", "gradient"])
def test_window_and_gradient_variants_opencv(mode):
    img = _scene(3, 48)
    ex = DenseSIFT(bin_sizes=[6], steps=6, backend="opencv").fit()
    _, one = _one_descriptor(ex, img, 5)
    r, c, W = opencv_weights(
        opencv_base(img, 6), int(one.centers[0, 0]), int(one.centers[0, 1]), 0.0, 6, mode
    )
    got = contribution(one, ex, img, np.array([1.0]), weighting=mode, through_blur=False)
    np.testing.assert_allclose(got, _map(r, c, W.sum(1) / W.sum(), img.shape), rtol=1e-9, atol=1e-12)


# -- VLFeat (transcribed from dsift; the kernel against it) --------------------------------------


@pytest.mark.parametrize("fast", [False, True])
def test_fast_kernel_equals_reference_vlfeat(fast):
    img = _scene(4, 40)
    ex = _vlfeat_like(fast)
    b = 4
    d = _vlfeat_descriptors(img.shape, b, [(19.5, 20.5), (7.5, 30.5), (33.0, 6.0)])
    rng = np.random.default_rng(1)
    for i in range(len(d)):
        one = d.subset(np.array([i]))
        r, c, W = vlfeat_weights(img.astype(np.float32), one.centers[0, 0], one.centers[0, 1], b, fast)
        got = contribution(one, ex, img, np.array([1.0]), through_blur=False)
        np.testing.assert_allclose(got, _map(r, c, W.sum(1) / W.sum(), img.shape), rtol=1e-9, atol=1e-12)
        R = rng.normal(size=(1, 128))
        Z = W.sum(0)
        assert np.all(Z > 0)
        got = contribution(one, ex, img, R.sum(1), per_dim=R, through_blur=False)
        np.testing.assert_allclose(got, _map(r, c, (W * (R[0] / Z)).sum(1), img.shape), rtol=1e-9, atol=1e-12)


@needs_vlfeat
@pytest.mark.vlfeat
@pytest.mark.parametrize("fast", [False, True])
def test_reference_rebuilds_vlfeat_descriptor(fast):
    """dsift's descriptors are the normalised masses of the transcribed weights."""
    img = _scene(5, 48)
    ex = DenseSIFT(bin_sizes=[4], steps=4, backend="vlfeat", smooth=False, fast=fast).fit()
    d = ex.describe(img)
    errs = []
    for i in range(0, len(d), 7):
        _, _, W = vlfeat_weights(img.astype(np.float32), d.centers[i, 0], d.centers[i, 1], 4, fast)
        h = W.sum(0)
        h = h / max(np.linalg.norm(h), 1e-12)
        h = np.minimum(h, 0.2)
        h = h / max(np.linalg.norm(h), 1e-12)
        ref = np.minimum(512 * h, 255)
        errs.append(np.abs(ref - d.data[i]).max() / 255)
    assert np.median(errs) < 0.01, errs  # measured 0.003 (exact and fast); the swapped layout: 0.51


# -- properties: conservation, locality ------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 1000),
    backend=st.sampled_from(["opencv", "exact", "fast"]),
    weighting=st.sampled_from(["full", "window", "gradient"]),
    blur=st.booleans(),
    per_dim=st.booleans(),
    flat_region=st.booleans(),
)
def test_conservation(seed, backend, weighting, blur, per_dim, flat_region):
    rng = np.random.default_rng(seed)
    img = _scene(seed, 40)
    if flat_region:  # no gradient at all under part of the descriptors: window fallback
        img[:20] = 0.5
    if backend == "opencv":
        ex = DenseSIFT(bin_sizes=[4, 6], steps=5, rotate=bool(seed % 2), backend="opencv").fit()
        d = ex.describe(img)
    else:
        ex = _vlfeat_like(backend == "fast")
        centers = rng.uniform(-3, 43, size=(12, 2)).round() + 0.5 * rng.integers(0, 2, (12, 2))
        d = _vlfeat_descriptors(img.shape, 4, centers)
    R = rng.normal(size=len(d))
    P = rng.normal(size=(len(d), 128)) if per_dim else None
    heat = contribution(d, ex, img, R, P, weighting, blur)
    expected = P.sum() if per_dim else R.sum()
    assert abs(heat.sum() - expected) <= 1e-9 * max(1.0, np.abs(P if per_dim else R).sum())


@pytest.mark.parametrize("rotate", [False, True])
def test_no_relevance_where_a_pixel_cannot_change_the_descriptor(rotate):
    """Outside the influence radius (pixels proven unable to change the descriptor) there is
    none of its relevance, with or without the blur adjoint; and where the descriptor sees
    no gradient the full weighting gives none either."""
    img = _scene(6, 64)
    img[:, :24] = 0.3  # flat left part
    ex = DenseSIFT(bin_sizes=[6], steps=6, rotate=rotate, backend="opencv").fit()
    d = ex.describe(img)
    rows, cols = np.mgrid[0:64, 0:64]
    for i in range(0, len(d), 5):
        one = d.subset(np.array([i]))
        radius = ex.influence_radius(6)
        outside = np.maximum(np.abs(rows - one.centers[0, 0]), np.abs(cols - one.centers[0, 1])) > radius
        for blur in (False, True):
            heat = contribution(one, ex, img, np.array([1.0]), through_blur=blur)
            assert np.all(heat[outside] == 0)
            assert heat.sum() == pytest.approx(1.0, abs=1e-12)
    # a descriptor straddling the flat part: the flat pixels (no gradient on the image it reads)
    base = opencv_base(img, 6)
    mag = np.zeros_like(base)
    mag[1:-1, 1:-1] = np.hypot(base[1:-1, 2:] - base[1:-1, :-2], base[:-2, 1:-1] - base[2:, 1:-1])
    one = d.subset(np.array([int(np.argmin(np.abs(d.centers[:, 1] - 24) + np.abs(d.centers[:, 0] - 32)))]))
    heat = contribution(one, ex, img, np.array([1.0]), through_blur=False)
    assert np.all(heat[mag == 0] == 0) and heat.sum() == pytest.approx(1.0)


def test_blur_matrix_matches_opencv_and_conserves():
    rng = np.random.default_rng(0)
    x = rng.random((23, 31)).astype(np.float64)
    for sigma in (0.8, 1.52, 3.0):
        A, B = blur_matrix(23, sigma), blur_matrix(31, sigma)
        np.testing.assert_allclose(A @ x @ B.T, cv2.GaussianBlur(x, (0, 0), sigma), atol=1e-12)
        np.testing.assert_allclose(A.sum(1), 1.0, atol=1e-12)
        np.testing.assert_allclose(_blur_adjoint(x, [sigma]), A.T @ x @ B, atol=1e-12)
    # two blurs in turn (phow, then OpenCV's base blur): adjoints in reverse order
    r1, c1, r2, c2 = blur_matrix(23, 0.9), blur_matrix(31, 0.9), blur_matrix(23, 2.0), blur_matrix(31, 2.0)
    np.testing.assert_allclose(_blur_adjoint(x, [0.9, 2.0]), r1.T @ r2.T @ x @ c2 @ c1, atol=1e-12)


def test_rule_parsing_and_errors():
    assert parse_rule("contribution") == Contribution()
    assert parse_rule("contribution=window") == Contribution("window")
    assert parse_rule("contribution-gradient") == Contribution("gradient")
    with pytest.raises(RuleError):
        Contribution("mass")
    img = _scene(7, 32)
    ex = DenseSIFT(bin_sizes=[4], steps=4, backend="opencv").fit()
    d = ex.describe(img)
    with pytest.raises(RuleError, match="image"):
        contribution(d, ex, img[:20], np.ones(len(d)))


# -- the fast paths (separable for unrotated descriptors, per-pixel-mass for rotated) ------------


def _reference_map(weights, R, P, shape):
    """Sum over descriptors of the NumPy-reference projection (per descriptor or dimension)."""
    out = np.zeros(shape)
    for i, (r, c, W, Wwin) in enumerate(weights):
        if P is None:
            vals = R[i] * W.sum(1) / W.sum()
        else:
            vals = window_fallback(W, Wwin, P[i])
        np.add.at(out, (r, c), vals)
    return out


@pytest.mark.parametrize("per_dim", [False, True])
def test_separable_path_equals_reference_opencv_dense_grid(per_dim):
    """Many overlapping unrotated descriptors (step < support) share row and column tables:
    the separable kernel against the sum of the NumPy references of every descriptor."""
    img = _scene(8, 40)
    img[:12] = 0.4  # some dimensions (and descriptors) without any mass: window fallback
    ex = DenseSIFT(bin_sizes=[4], steps=3, backend="opencv").fit()
    d = ex.describe(img)
    base = opencv_base(img, 4)
    rng = np.random.default_rng(8)
    R, P = rng.normal(size=len(d)), rng.normal(size=(len(d), 128)) if per_dim else None
    weights = []
    for i in range(len(d)):
        row, col = int(d.centers[i, 0]), int(d.centers[i, 1])
        r, c, W = opencv_weights(base, row, col, 0.0, 4)
        weights.append((r, c, W, opencv_weights(base, row, col, 0.0, 4, "window")[2]))
    if not per_dim:  # zero total mass per descriptor: the window weights, as per dimension
        weights = [(r, c, W if W.sum() > 0 else Wwin, Wwin) for r, c, W, Wwin in weights]
    want = _reference_map(weights, R, P, img.shape)
    got = contribution(d, ex, img, R, P, through_blur=False)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("fast_window", [False, True])
def test_separable_path_equals_reference_vlfeat_dense_grid(fast_window):
    img = _scene(9, 36)
    img[:14] = 0.4  # flat: dimensions without mass, the window fallback
    ex = _vlfeat_like(fast_window)
    b = 4
    ys, xs = np.meshgrid(np.arange(8.0, 28.0, 4.0), np.arange(7.5, 28.0, 4.0), indexing="ij")
    d = _vlfeat_descriptors(img.shape, b, np.column_stack([ys.ravel(), xs.ravel()]))
    rng = np.random.default_rng(9)
    R, P = rng.normal(size=len(d)), rng.normal(size=(len(d), 128))
    weights = []
    for i in range(len(d)):
        r, c, W = vlfeat_weights(img.astype(np.float32), d.centers[i, 0], d.centers[i, 1], b, fast_window)
        full = np.zeros((img.size, 128))
        full[r * img.shape[1] + c] = W
        Wwin = vlfeat_window_weights(img.shape, d.centers[i, 0], d.centers[i, 1], b, fast_window)
        weights.append((full, Wwin))
    rows, cols = np.divmod(np.arange(img.size), img.shape[1])
    assert any((W.sum(0) == 0).any() for W, _ in weights)  # the window fallback is exercised
    for per_dim in (None, P):
        ws = [(rows, cols, W if per_dim is not None or W.sum() > 0 else Wwin, Wwin) for W, Wwin in weights]
        want = _reference_map(ws, R, per_dim, img.shape)
        got = contribution(d, ex, img, R, per_dim, through_blur=False)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("backend", ["opencv", "opencv-rotated", "exact", "fast"])
@pytest.mark.parametrize("weighting", ["full", "window", "gradient"])
def test_fast_paths_equal_per_pixel_kernel(backend, weighting):
    """``fast=True`` (separable / per-pixel mass) against ``fast=False`` (the per-pixel kernel
    the NumPy references pin down), several scales, with the blur adjoint, both forms."""
    img = _scene(10, 44)
    img[30:] = 0.6
    if backend.startswith("opencv"):
        ex = DenseSIFT(bin_sizes=[4, 6], steps=3, rotate=backend.endswith("rotated"), backend="opencv").fit()
        d = ex.describe(img)
    else:
        ex = _vlfeat_like(backend == "fast")
        rng = np.random.default_rng(3)
        d = _vlfeat_descriptors(img.shape, 4, rng.uniform(-2, 46, size=(40, 2)).round(1))
    rng = np.random.default_rng(10)
    R, P = rng.normal(size=len(d)), rng.normal(size=(len(d), 128))
    for per_dim in (None, P):
        want = contribution(d, ex, img, R, per_dim, weighting, True, fast=False)
        got = contribution(d, ex, img, R, per_dim, weighting, True, fast=True)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
        total = R.sum() if per_dim is None else P.sum()
        assert abs(got.sum() - total) <= 1e-9 * np.abs(R if per_dim is None else P).sum()


# -- fast paths of issue 27 against the reference kernels -------------------------------------


@pytest.mark.parametrize("fractional", [False, True])
@pytest.mark.parametrize("weighting", [0, 1, 2])
def test_rotated_scalar_fast_path_equals_per_pixel_kernel(weighting, fractional):
    """``project_rotated_scalar`` (tabulated window, summed bilinear weights, rotated square
    only, SIMD rows) against the per-pixel reference ``_project`` (K = 1), OpenCV backend:
    axis-aligned and arbitrary rotations, descriptors cut by the border, one on a flat patch
    (zero mass: the window fallback), one beyond the image (no sampled pixel), totals and
    scatter. ``fractional``: centres off the integer grid, runs of equal and of changing
    fractional parts (the window tables reused, then recomputed)."""
    rng = np.random.default_rng(27)
    H, W = 41, 53
    mag = rng.exponential(size=(H, W))
    mag[:, :16] = 0.0  # flat: descriptors centred there have no mass
    n = 24
    centers = np.column_stack([rng.integers(-3, H + 3, n), rng.integers(-3, W + 3, n)]).astype(float)
    if fractional:
        centers[8:] += np.repeat(rng.uniform(0.0, 1.0, size=(4, 2)), 4, axis=0)
    centers[0] = (20.0, -6.0)  # every sampled pixel on the flat patch (reach <= 15 * sqrt 2)
    centers[1] = (-30.0, 20.0)  # samples nothing
    rotations = rng.uniform(-np.pi, np.pi, n)
    rotations[2:8] = [0.0, np.pi / 2, np.pi, -np.pi / 2, np.pi / 4, 3.0 * np.pi / 4]
    values = rng.normal(size=(n, 1))
    ang = np.zeros((H, W))
    for b in (4.0, 6.0):
        want_z = _project(
            values, centers, rotations, b, _OPENCV, weighting, 2.0, mag, ang, np.zeros((H, W)), True
        )
        got_z = project_rotated_scalar(values, centers, rotations, b, weighting, mag, np.zeros((H, W)), True)
        np.testing.assert_allclose(got_z, want_z, rtol=1e-9, atol=1e-12 * np.abs(want_z).max())
        want, got = np.zeros((H, W)), np.zeros((H, W))
        want_left = _project(values, centers, rotations, b, _OPENCV, weighting, 2.0, mag, ang, want, False)
        got_left = project_rotated_scalar(values, centers, rotations, b, weighting, mag, got, False)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
        np.testing.assert_allclose(got_left, want_left, rtol=1e-9, atol=1e-15)
        assert got_left[1, 0] == values[1, 0]  # nothing sampled: handed back
        if weighting != 1:
            assert want_z[0, 0] == 0.0  # the flat descriptor took the window fallback
        # conservation in float64: what is scattered plus what is handed back
        assert abs(got.sum() + got_left.sum() - values.sum()) <= 1e-12 * np.abs(values).sum()


@pytest.mark.parametrize("backend", [_OPENCV, _VLFEAT_EXACT, _VLFEAT_FAST])
@pytest.mark.parametrize("use_window", [True, False])
def test_sparse_separable_kernels_equal_dense_tables(backend, use_window):
    """The per-dimension separable kernels over the (at most 2) bins a pixel reaches per axis
    against the dense-table kernels ``_totals`` / ``_scatter`` (themselves tested against the
    NumPy transcriptions above), on a grid of non-integer centres cut by the border."""
    rng = np.random.default_rng(270)
    H, W, b = 37, 45, 5.0
    F = rng.exponential(size=(H, W, 8)) * (rng.random((H, W, 8)) > 0.3)
    ys, xs = np.meshgrid(np.arange(-2.5, H + 3, 4.0), np.arange(-1.0, W + 2, 3.5), indexing="ij")
    centers = np.column_stack([ys.ravel(), xs.ravel()])
    wm = _vlfeat_window_means(b, VLFEAT_WINDOW)
    grid = separable._grid(centers)
    args = (b, backend, use_window, VLFEAT_WINDOW, wm, 4)
    want_z = separable._totals(F, *grid, *args)
    got_z = separable._totals_sparse(F, *grid, *args)
    np.testing.assert_allclose(got_z, want_z, rtol=1e-9, atol=1e-12 * np.abs(want_z).max())
    coef = rng.normal(size=(len(centers), 4, 4, 8)) * (rng.random((len(centers), 1, 1, 1)) > 0.2)
    want, got = np.zeros((H, W)), np.zeros((H, W))
    separable._scatter(coef, F, *grid, *args, want)
    separable._scatter_sparse(coef, F, *grid, *args, got)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    # the scatter is the adjoint of the totals: sum_p out_p = sum_lk coef_lk Z_lk
    assert abs(got.sum() - (coef * got_z).sum()) <= 1e-9 * np.abs(coef * got_z).sum()
