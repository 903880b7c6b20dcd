import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bowlrp import Descriptors

from .conftest import random_descriptors


def rasterize_reference(d: Descriptors, values):
    """Slow plain-NumPy flat redistribution through explicit masks."""
    out = np.zeros(d.image_shape)
    for i in range(len(d)):
        mask = d.support_mask(i)
        out[mask] += values[i] / mask.sum()
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), h=st.integers(3, 40), w=st.integers(3, 40))
def test_rasterize_equals_mask_reference(seed, n, h, w):
    rng = np.random.default_rng(seed)
    d = random_descriptors(rng, n=n, shape=(h, w), shapes=(0, 1, 2))
    values = rng.normal(size=n)
    fast = d.rasterize(values)
    ref = rasterize_reference(d, values)
    np.testing.assert_allclose(fast, ref, rtol=1e-10, atol=1e-12)
    assert np.isclose(fast.sum(), values.sum(), rtol=1e-10, atol=1e-10)


def test_support_sizes_are_exact_and_clipped():
    rng = np.random.default_rng(1)
    d = random_descriptors(rng, n=60, shapes=(0, 1, 2))
    sizes = d.support_sizes()
    assert all(sizes[i] == d.support_mask(i).sum() for i in range(len(d)))
    corner = Descriptors(np.zeros((1, 1)), [[0.0, 0.0]], [2.0], [0.0], [0], [1.0], (10, 10))
    assert corner.support_sizes()[0] == 9  # 3 x 3 of the 5 x 5 square lie inside


def test_rotated_square_and_disc_areas_match_geometry():
    big = (201, 201)
    square = Descriptors(np.zeros((1, 1)), [[100.0, 100.0]], [20.0], [np.pi / 6], [1], [1.0], big)
    disc = Descriptors(np.zeros((1, 1)), [[100.0, 100.0]], [20.0], [0.0], [2], [1.0], big)
    assert abs(square.support_sizes()[0] - 40.0**2) / 1600 < 0.03
    assert abs(disc.support_sizes()[0] - np.pi * 400) / (np.pi * 400) < 0.02


def test_rasterize_validates_values():
    d = random_descriptors(np.random.default_rng(2), n=5)
    with pytest.raises(ValueError, match="shape"):
        d.rasterize(np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        d.rasterize(np.array([1, 2, np.nan, 4, 5]))


def test_descriptor_sets_reject_nan_data():
    with pytest.raises(ValueError, match="NaN"):
        Descriptors(np.array([[np.nan]]), [[1.0, 1.0]], [2.0], [0.0], [0], [1.0], (5, 5))
