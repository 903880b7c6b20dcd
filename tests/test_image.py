import numpy as np
import pytest

from bowlrp import image as pictures


def test_normalisation_per_image_and_global():
    a = np.array([[2.0, -4.0]])
    b = np.array([[1.0, 0.5]])
    na, nb = pictures.normalize_heatmaps([a, b], "image")
    assert np.abs(na).max() == 1 and np.abs(nb).max() == 1
    ga, gb = pictures.normalize_heatmaps([a, b], "global")
    np.testing.assert_allclose(ga, a / 4)
    np.testing.assert_allclose(gb, b / 4)
    with pytest.raises(ValueError, match="normalize"):
        pictures.normalize_heatmaps([a], "local")


def test_zero_is_the_centre_of_the_diverging_map():
    rgb = pictures.colorize(np.array([[-1.0, 0.0, 1.0]]), "bwr")[0]
    assert rgb[0, 2] > 200 and rgb[0, 0] < 50        # blue for negative
    assert np.all(rgb[1] > 240)                      # white for zero
    assert rgb[2, 0] > 200 and rgb[2, 2] < 50        # red for positive
    jet = pictures.colorize(np.array([[0.0]]), "jet")[0, 0]
    assert jet[1] > jet[0] and jet[1] > jet[2]       # the papers' green for zero
    with pytest.raises(ValueError, match="colormap"):
        pictures.colorize(np.zeros((2, 2)), "nope")


def test_pictures_and_png_files(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.random((40, 50))
    h = pictures.normalize_heatmaps([rng.normal(size=(40, 50))])[0]
    assert pictures.overlay(img, np.zeros_like(h)).shape == (40, 50, 3)
    np.testing.assert_allclose(pictures.overlay(img, np.zeros_like(h))[..., 0], img)
    masked = pictures.mask_positive(img, h)
    assert np.all(masked[h <= 0] == 0)
    trip = pictures.with_colorbar(pictures.triplet(img, h))
    path = pictures.save_png(tmp_path / "t.png", trip)
    import cv2

    assert cv2.imread(str(path)).shape[:2] == trip.shape[:2]
    assert not list(tmp_path.glob("*.tmp*"))
