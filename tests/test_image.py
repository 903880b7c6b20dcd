import numpy as np
import pytest

from bowlrp import image as pictures


def test_normalisation_per_image_and_global():
    a = np.array([[2.0, -4.0]])
    b = np.array([[1.0, 0.5]])
    na, nb = pictures.normalize_heatmaps([a, b], "image")
    assert np.abs(na).max() == 1 and np.abs(nb).max() == 1
    ga, gb = pictures.normalize_heatmaps([a, b], "global", percentile=None)  # max |R|, no clipping
    np.testing.assert_allclose(ga, a / 4)
    np.testing.assert_allclose(gb, b / 4)
    with pytest.raises(ValueError, match="normalize"):
        pictures.normalize_heatmaps([a], "local")


def test_zero_is_the_centre_of_the_diverging_map():
    rgb = pictures.colorize(np.array([[-1.0, 0.0, 1.0]]), "bwr")[0]
    assert rgb[0, 2] > 200 and rgb[0, 0] < 50  # blue for negative
    assert np.all(rgb[1] > 240)  # white for zero
    assert rgb[2, 0] > 200 and rgb[2, 2] < 50  # red for positive
    jet = pictures.colorize(np.array([[0.0]]), "jet")[0, 0]
    assert jet[1] > jet[0] and jet[1] > jet[2]  # the papers' green for zero
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


def test_display_scale_clips_one_extreme_spot():
    from bowlrp.image import display_scale, normalize_heatmaps

    rng = np.random.default_rng(0)
    h = rng.normal(size=(60, 80))
    h[5, 5] = 1e4  # one spot that would take the whole colour range
    assert display_scale(h, None) == 1e4
    s = display_scale(h)
    assert s == np.percentile(np.abs(h[h != 0]), 99.5) and s < 5
    shown = normalize_heatmaps([h])[0]
    assert shown.max() == 1 and (np.abs(shown) > 0.25).mean() > 0.3  # the rest stays visible
    a, b = normalize_heatmaps([h, 10 * h], "global", percentile=None)
    assert np.isclose(np.abs(b).max(), 1) and np.isclose(np.abs(a).max(), 0.1)
    with pytest.raises(ValueError, match="percentile"):
        display_scale(h, 0)


def test_colorbar_has_ticks_in_relevance_units_and_gray_is_a_colormap():
    from bowlrp.image import colorize, encode_png, with_colorbar

    pic = colorize(np.linspace(-1, 1, 100 * 80).reshape(100, 80), "gray") / 255.0
    plain = with_colorbar(pic, "gray", scale=None)
    ticked = with_colorbar(pic, "gray", scale=0.0123)
    assert plain.shape[0] == ticked.shape[0] == 100 and ticked.shape[1] > pic.shape[1] + 16
    label_area = ticked[:, pic.shape[1] + 20 :]
    assert (label_area < 0.5).any()  # tick labels are drawn
    assert encode_png(ticked)[:8] == b"\x89PNG\r\n\x1a\n"
    from bowlrp import DenseSIFT

    assert DenseSIFT(color="gray", backend="opencv").fit().describe(np.zeros((40, 40))).n_features == 128
