"""Generated anomaly kinds (``bowlrp.datasets.anomalies``): masks, sizes, reproducibility."""

import numpy as np
import pytest

from bowlrp.datasets.anomalies import HELD_OUT, KINDS, NATURAL_KINDS, SIZES, generate


@pytest.mark.parametrize("kind", NATURAL_KINDS)
def test_natural_kinds_have_masks_of_their_size_where_the_image_changed(kind):
    areas = {}
    for size in SIZES:
        samples = generate(kind, 3, 2, 4, size)
        normal, anomalous = samples[:2], samples[2:]
        assert all(not s.anomalous and not s.mask.any() for s in normal)
        assert all(s.kind == kind and s.size == size and s.mask.any() for s in anomalous)
        for s in anomalous:
            assert s.image.shape == s.mask.shape == (160, 160) and 0 <= s.image.min() <= s.image.max() <= 1
        areas[size] = np.mean([s.mask.mean() for s in anomalous])
    assert areas["small"] < areas["large"] < 0.08
    # the normal images do not depend on the kind: one detector serves every natural kind
    np.testing.assert_array_equal(generate(kind, 3, 1)[0].image, generate("stamp", 3, 1)[0].image)


def test_defects_change_the_image_inside_their_masks():
    """Drawn on the same kind of background, the defect's pixels differ from a normal image's
    statistics: the anomalous pixels inside the mask are farther from the local mean."""
    for kind in NATURAL_KINDS:
        s = generate(kind, 4, 0, 3, "large")
        for sample in s:
            inside, outside = sample.image[sample.mask], sample.image[~sample.mask]
            assert abs(inside.mean() - outside.mean()) > 0.05 or inside.std() > 1.5 * outside.std()


def test_reproducible_inspection_and_errors():
    a, b = generate("inspection", 7, 2, 3), generate("inspection", 7, 2, 3)
    assert [s.kind for s in a] == ["normal"] * 2 + ["inspection"] * 3
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
    assert HELD_OUT in KINDS and HELD_OUT != "inspection"
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        generate("scratches", 0, 1)
    with pytest.raises(ValueError, match="unknown size"):
        generate("stamp", 0, 1, 1, "huge")
