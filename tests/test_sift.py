import numpy as np
import pytest

from bowlrp import DenseSIFT
from bowlrp.descriptors.sift import grid_centers

from .conftest import needs_vlfeat


def _changed(extractor, base, dot):
    d0 = extractor.describe(base)
    img = base.copy()
    img[dot] = 1.0
    d1 = extractor.describe(img)
    assert np.array_equal(d0.centers, d1.centers)
    # VLFeat's fast mode sums over float32 integral images, whose rounding moves every
    # descriptor by ~1e-4 (of 255): count only changes above that
    return d0, np.max(np.abs(d0.data - d1.data), axis=1) > 1e-2


@needs_vlfeat
@pytest.mark.vlfeat
@pytest.mark.parametrize("fast", [True, False])
def test_vlfeat_dot_changes_exactly_the_descriptors_whose_full_support_holds_it(fast):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.5, (64, 70))
    ex = DenseSIFT(bin_sizes=[4, 6], steps=5, backend="vlfeat", smooth=False, support="full", fast=fast).fit()
    for dot in [(32, 35), (5, 9), (60, 3), (17, 50)]:
        d, changed = _changed(ex, base, dot)
        contains = np.array([d.support_mask(i)[dot] for i in range(len(d))])
        assert changed.any()
        np.testing.assert_array_equal(changed, contains)


@needs_vlfeat
@pytest.mark.vlfeat
def test_vlfeat_grid_and_counts_match_phow_convention():
    ex = DenseSIFT(backend="vlfeat").fit()
    d = ex.describe(np.random.default_rng(0).random((360, 480)))
    assert len(d) == 67574  # VLFeat phow: about 67.6k at sizes 4..10, step 3 on 480 x 360
    for b in (4, 6, 8, 10):
        centers = d.centers[d.scales == b]
        expected = grid_centers(360, b, 3, 10)
        np.testing.assert_allclose(np.unique(centers[:, 0]), expected)


def test_opencv_dot_inside_nominal_support_changes_descriptor_and_far_dot_does_not():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.5, (80, 80))
    b = 4
    ex = DenseSIFT(bin_sizes=[b], steps=6, backend="opencv", smooth=False).fit()
    # OpenCV smooths with sigma 1.6 itself: its reach is the 2.5 b support + about 4 sigma
    blur_reach = 2.5 * b + 1 + 4 * 1.52
    for dot in [(40, 40), (12, 55), (70, 20)]:
        d, changed = _changed(ex, base, dot)
        inside = np.array([d.support_mask(i)[dot] for i in range(len(d))])
        dist = np.max(np.abs(d.centers - np.array(dot)), axis=1)
        assert inside.any()
        assert changed[inside].all()
        assert not changed[dist > blur_reach].any()


def test_opencv_rotated_supports_follow_the_orientation():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.5, (90, 90))
    ex = DenseSIFT(bin_sizes=[5], steps=9, backend="opencv", smooth=False, rotate=True).fit()
    d0 = ex.describe(base)
    assert np.all(d0.shapes == 1)
    assert np.ptp(d0.orientations) > 1.0  # orientations vary over a random image
    for dot in [(45, 45), (30, 60)]:
        _, changed = _changed(ex, base, dot)
        inside = np.array([d0.support_mask(i)[dot] for i in range(len(d0))])
        # a dot inside the rotated nominal square changes the descriptor
        # (the orientation may change too, so only this direction is exact)
        assert changed[inside].all()


def test_dominant_orientation_of_a_ramp():
    from bowlrp.descriptors.sift import dominant_orientations

    yy, xx = np.mgrid[0:60, 0:60].astype(float)
    for angle in (0.0, 0.7, 2.0, 4.0):
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        theta = dominant_orientations(ramp / 100, np.array([30]), np.array([30]), 4.0)
        assert abs((theta[0] - angle + np.pi) % (2 * np.pi) - np.pi) < 0.05


def _reference_histograms(grey, rows, cols, bin_size, n_bins=36):
    """Orientation histograms one bin at a time: plain NumPy weights, each map blurred whole
    by OpenCV's GaussianBlur (float32) and read at the points."""
    import cv2

    img = grey.astype(np.float32)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=1) * 0.5
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=1) * 0.5
    magnitude = np.hypot(gx, gy)
    position = (np.arctan2(gy, gx) % (2 * np.pi)) * (n_bins / (2 * np.pi))
    lower = np.floor(position).astype(np.int64) % n_bins
    frac = (position - np.floor(position)).astype(np.float32)
    hist = np.empty((rows.size, n_bins))
    for k in range(n_bins):
        weight = magnitude * ((lower == k) * (1 - frac) + (((lower + 1) % n_bins) == k) * frac)
        hist[:, k] = cv2.GaussianBlur(weight.astype(np.float32), (0, 0), 0.5 * bin_size)[rows, cols]
    return hist


def _reference_peak(hist, n_bins=36):
    smooth = sum(w * np.roll(hist, j - 2, axis=1) for j, w in enumerate(np.array([1, 4, 6, 4, 1]) / 16))
    peak = np.argmax(smooth, axis=1)
    idx = np.arange(len(hist))
    left, centre = smooth[idx, (peak - 1) % n_bins], smooth[idx, peak]
    right = smooth[idx, (peak + 1) % n_bins]
    denom = left - 2 * centre + right
    offset = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0)
    return ((peak + offset) * (2 * np.pi / n_bins)) % (2 * np.pi)


@pytest.mark.parametrize(
    "shape,bin_size", [((40, 57), 4.0), ((102, 102), 6.0), ((64, 90), 9.0), ((7, 9), 6.0), ((3, 5), 2.0)]
)  # kernels wider than the image
def test_orientation_histograms_equal_blurring_whole_maps(shape, bin_size):
    """Read at the points only (reflect-101 borders included: points on every edge) against
    OpenCV blurring each of the 36 maps; float32 blur vs float64 sums: ~1e-6 relative."""
    import cv2

    from bowlrp.descriptors.sift import dominant_orientations, orientation_histograms

    rng = np.random.default_rng(int(bin_size))
    grey = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 1.5)
    rows, cols = np.meshgrid(
        np.r_[0, 1, np.arange(3, shape[0] - 3, 5), shape[0] - 1],
        np.r_[0, np.arange(2, shape[1] - 2, 4), shape[1] - 2, shape[1] - 1],
        indexing="ij",
    )
    rows, cols = rows.ravel(), cols.ravel()
    want = _reference_histograms(grey, rows, cols, bin_size)
    got = orientation_histograms(grey, rows, cols, bin_size)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6 * np.abs(want).max())
    theta = dominant_orientations(grey, rows, cols, bin_size)
    delta = np.abs((theta - _reference_peak(want) + np.pi) % (2 * np.pi) - np.pi)
    assert delta.max() < 1e-4, delta.max()


def test_colour_modes_concatenate_channels():
    img = np.random.default_rng(3).random((40, 40, 3))
    for color, dim in [("grey", 128), ("rgb", 384), ("opponent", 384)]:
        d = DenseSIFT(bin_sizes=[4], steps=8, color=color, backend="opencv").describe(img)
        assert d.data.shape[1] == dim and d.data.dtype == np.float32
        assert d.channel == f"sift-{color}"


@needs_vlfeat
@pytest.mark.vlfeat
def test_auto_backend_picks_vlfeat_when_possible_and_opencv_for_rotation():
    assert DenseSIFT().fit().backend_ == "vlfeat"
    assert DenseSIFT(rotate=True).fit().backend_ == "opencv"
    with pytest.raises(ValueError, match="opencv"):
        DenseSIFT(rotate=True, backend="vlfeat").fit()


def test_bad_parameters():
    with pytest.raises(ValueError, match="color"):
        DenseSIFT(color="hsv").fit()
    with pytest.raises(ValueError, match="steps"):
        DenseSIFT(bin_sizes=[4, 6], steps=[3, 3, 3]).fit()
