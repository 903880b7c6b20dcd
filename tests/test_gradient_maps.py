"""``DenseSIFT.gradient_maps`` (one compiled pass) against plain NumPy of its formulas.

The reference below is the NumPy code the method ran before the compiled kernel:
the OpenCV branch's central differences with a zero outer ring *per direction*
(the ring keeps the difference along it), the VLFeat branch's ``np.gradient``
(one-sided at the border), ``np.hypot`` and ``np.arctan2(gy, gx) % 2 pi``.
"""

import cv2
import numpy as np
import pytest

from bowlrp import DenseSIFT
from bowlrp.descriptors._color import color_channels
from bowlrp.descriptors.sift import OPENCV_BASE_SIGMA, _gradient_maps

from .conftest import needs_vlfeat

SHAPES = [(1, 1), (1, 6), (5, 1), (2, 2), (2, 7), (3, 3), (17, 23), (40, 31)]


def _reference(extractor, image, b, angles):
    """Plain NumPy: the formulas of the docstring of ``DenseSIFT.gradient_maps``."""
    mags, angs = [], []
    for channel in color_channels(image, extractor.color):
        sm = extractor._smoothed(channel, b)
        if extractor.backend_ == "opencv":
            u8 = np.clip(np.rint(sm * 255.0), 0, 255).astype(np.uint8)
            base = cv2.GaussianBlur(
                u8.astype(np.float32), (0, 0), OPENCV_BASE_SIGMA, sigmaY=OPENCV_BASE_SIGMA
            ).astype(np.float64)
            gx = np.zeros_like(base)
            gy = np.zeros_like(base)
            gx[:, 1:-1] = base[:, 2:] - base[:, :-2]
            gy[1:-1, :] = base[:-2, :] - base[2:, :]
        else:
            base = sm.astype(np.float64)
            gx = np.gradient(base, axis=1) if base.shape[1] > 1 else np.zeros_like(base)
            gy = np.gradient(base, axis=0) if base.shape[0] > 1 else np.zeros_like(base)
        mags.append(np.hypot(gx, gy))
        angs.append(np.arctan2(gy, gx) % (2 * np.pi) if angles else np.zeros_like(gx))
    return mags, angs


def _image(shape, color, seed):
    rng = np.random.default_rng(seed)
    img = rng.random(shape + ((3,) if color != "grey" else ()))
    img[: shape[0] // 2] *= 0.3  # an edge, so gradients are not all of one size
    return img


def _check(extractor, shape, b, angles, seed=0):
    img = _image(shape, extractor.color, seed)
    mags, angs, sigmas = extractor.gradient_maps(img, b, angles)
    ref_mags, ref_angs = _reference(extractor, img, b, angles)
    assert len(mags) == len(ref_mags) == len(angs) == (1 if extractor.color == "grey" else 3)
    for m, a, rm, ra in zip(mags, angs, ref_mags, ref_angs):
        assert m.shape == a.shape == shape and m.dtype == a.dtype == np.float64
        # magnitudes: the same float64 operations and libm hypot, so bit for bit
        np.testing.assert_array_equal(m, rm)
        # angles: NumPy may take a vectorised arctan2 (SVML) on some CPUs; 1e-12 relative
        np.testing.assert_allclose(a, ra, rtol=1e-12, atol=1e-15)
    if extractor.backend_ == "opencv" and min(shape) >= 3:
        smooth = np.sqrt(max((b / 6.0) ** 2 - 0.25, 0.0)) if extractor.smooth else 0.0
        assert sigmas == [pytest.approx(smooth), OPENCV_BASE_SIGMA]
        # the outer ring keeps the difference along it (a kernel leaving it at 0 fails here)
        assert np.all(mags[0][0, 1:-1] > 0) and np.all(mags[0][1:-1, -1] > 0)
        assert mags[0][0, 0] == 0.0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("angles", [True, False])
def test_opencv_gradient_maps_equal_numpy_reference(shape, angles):
    extractor = DenseSIFT(bin_sizes=(4,), backend="opencv", rotate=True).fit()
    _check(extractor, shape, 4.0, angles)


@pytest.mark.parametrize("color", ["opponent", "rgb"])
@pytest.mark.parametrize("smooth", [True, False])
def test_opencv_gradient_maps_multichannel_equal_numpy_reference(color, smooth):
    extractor = DenseSIFT(bin_sizes=(6,), backend="opencv", color=color, smooth=smooth).fit()
    _check(extractor, (29, 36), 6.0, True, seed=1)


@needs_vlfeat
@pytest.mark.vlfeat
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("color", ["grey", "opponent"])
def test_vlfeat_gradient_maps_equal_numpy_reference(shape, color):
    extractor = DenseSIFT(bin_sizes=(8,), backend="vlfeat", color=color).fit()
    _check(extractor, shape, 8.0, True, seed=2)


def test_kernel_matches_hand_computed_differences():
    """A 3x4 float32 image worked by hand, both conventions (rows up for OpenCV)."""
    base = np.array([[0, 1, 3, 6], [2, 2, 2, 2], [5, 4, 0, 1]], dtype=np.float32)
    mag, ang = np.empty((3, 4)), np.empty((3, 4))
    _gradient_maps(base, True, True, mag, ang)
    # OpenCV, row 1: gx = I[1, c+1] - I[1, c-1] = 0 inside, gy = I[0, c] - I[2, c]
    gy = np.array([-5.0, -3.0, 3.0, 5.0])
    np.testing.assert_array_equal(mag[1], np.abs(gy))
    # row 0 (ring): gy = 0, gx = I[0, c+1] - I[0, c-1] inside the columns, 0 at the corners
    np.testing.assert_array_equal(mag[0], [0.0, 3.0, 5.0, 0.0])
    np.testing.assert_allclose(ang[1], np.arctan2(gy, 0.0) % (2 * np.pi), rtol=1e-15)
    ang = np.full((3, 4), 7.0)
    _gradient_maps(base, False, False, mag, ang)
    # VLFeat: np.gradient, e.g. at (0, 0): gx = 1 - 0, gy = 2 - 0; at (1, 1): gx = 0, gy = (4 - 1) / 2
    assert mag[0, 0] == np.hypot(1.0, 2.0) and mag[1, 1] == 1.5
    assert np.all(ang == 7.0)  # angles=False: not touched
