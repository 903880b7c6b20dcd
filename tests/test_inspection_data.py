"""The generated inspection data set: reproducible parts, defects where the masks say."""

import cv2
import numpy as np
import pytest

from bowlrp.datasets.inspection import KINDS, generate, normal_patches, plant_defect, render_surface


def test_reproducible_and_independent_streams():
    a = generate(3, 4, 6)
    b = generate(3, 4, 6)
    c = generate(3, 4, 0)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.image, q.image)
        np.testing.assert_array_equal(p.mask, q.mask)
    for p, q in zip(a[:4], c):  # more anomalies do not change the normal parts
        np.testing.assert_array_equal(p.image, q.image)
    assert [p.kind for p in a] == ["normal"] * 4 + list(KINDS) * 2


def test_masks_and_images():
    parts = generate(0, 3, 9, size=80)
    for p in parts:
        assert p.image.shape == p.mask.shape == (80, 80)
        assert p.image.dtype == np.float64 and 0 <= p.image.min() and p.image.max() <= 1
        if p.anomalous:
            assert 0.002 < p.mask.mean() < 0.05
            r, c = p.defect["center"]
            assert p.mask[int(round(r)) - 3 : int(round(r)) + 4, int(round(c)) - 3 : int(round(c)) + 4].any()
        else:
            assert not p.mask.any() and p.defect == {}


@pytest.mark.parametrize("kind", KINDS)
def test_defect_changes_exactly_the_region_it_claims(kind):
    rng = np.random.default_rng(5)
    surface = render_surface(rng, 96)
    part = plant_defect(rng, surface, kind)
    changed = np.abs(part.image - surface) > 1e-9
    assert changed[part.mask].mean() > 0.99  # every masked pixel was altered
    # outside the mask only the anti-aliased / soft rim changed visibly, next to the mask
    near = cv2.dilate(part.mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert np.abs(part.image - surface)[~near].max() < 0.01
    # the defect is visible: mean absolute change inside the mask
    assert np.abs(part.image - surface)[part.mask].mean() > 0.15


def test_errors():
    with pytest.raises(ValueError, match="unknown defect kind"):
        generate(0, 1, 1, kinds=("dent",))
    with pytest.raises(ValueError, match="size"):
        generate(0, 1, size=20)
    with pytest.raises(ValueError, match="at least one"):
        normal_patches([])


def test_normal_patches_repairs_with_matching_surface():
    parts = generate(0, 3)
    perturb = normal_patches(parts)
    block = parts[0].image[8:16, 24:32]
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(perturb(block, rng, block), block, atol=1e-6)  # its own crop is nearest
    out = normal_patches(parts, nearest=False)(block, rng, block)
    assert out.shape == block.shape
