from pathlib import Path

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


def _raw_map(shape=(40, 50), seed=0):
    """A relevance map of the magnitude a BoW explanation gives (|R| ~ 1e-5): blob + noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    blob = np.exp(-((rows - shape[0] / 3) ** 2 + (cols - shape[1] / 3) ** 2) / 60)
    return 2e-5 * (blob + 0.1 * rng.normal(size=shape))


def test_overlay_of_raw_relevance_shows_it():
    """Issue 25, item 2: a raw map (|R| ~ 1e-5) used to leave the photo unchanged (max diff 1e-5)."""
    img = np.full((40, 50), 0.5)
    raw = _raw_map()
    over = pictures.overlay(img, raw)
    assert np.abs(over - 0.5).max() > 0.3  # the hot spot is coloured
    assert over[13, 16, 0] > over[13, 16, 2] + 0.3  # positive relevance in red
    # the CLI's display: clip(R / display_scale(R), -1, 1), so a shared scale gives the same picture
    s = pictures.display_scale(raw)
    np.testing.assert_allclose(pictures.overlay(img, raw, scale=s), over)
    np.testing.assert_allclose(pictures.overlay(img, np.clip(raw / s, -1, 1), scale=1.0), over)


def test_triplet_and_heatmap_picture_of_raw_relevance_are_not_blank():
    img = np.random.default_rng(1).random((40, 50))
    raw = _raw_map()
    trip = pictures.triplet(img, raw)
    panel = trip[:, :50]
    assert panel.shape == (40, 50, 3) and trip.shape == (40, 3 * 50 + 8, 3)
    assert panel.std(axis=(0, 1)).max() > 0.1  # a picture, not one flat colour
    assert np.abs(panel - 1).max() > 0.5  # not white (bwr's zero) everywhere
    heat = pictures.heatmap_picture(raw)
    np.testing.assert_allclose(heat, panel)
    # --clip semantics: "max" / None divide by max |R|, a percentile saturates more pixels
    full = (pictures.heatmap_picture(raw, clip=99.5) == [1, 0, 0]).all(axis=2).sum()
    assert full > (pictures.heatmap_picture(raw, clip="max") == [1, 0, 0]).all(axis=2).sum()
    np.testing.assert_allclose(
        pictures.heatmap_picture(raw, clip=None), pictures.heatmap_picture(raw, clip="max")
    )
    assert np.all(pictures.heatmap_picture(np.zeros((4, 4))) > 0.99)  # all-zero map: bwr's white
    with pytest.raises(ValueError, match="is 50x40 pixels but the heatmap is 5x4"):
        pictures.overlay(img, np.ones((4, 5)))


def test_black_fire_red_and_fire_colour_maps():
    coldnhot = pictures.colorize(np.array([[-1.0, -0.5, 0.0, 0.5, 1.0]]), "coldnhot")[0]
    assert coldnhot[0].tolist() == [0, 255, 255] and coldnhot[1].tolist()[2] > 200  # cyan, blue
    assert coldnhot[2].max() < 5 and coldnhot[4].tolist() == [255, 255, 0]  # black zero, yellow top
    assert coldnhot[3][0] > 200 and coldnhot[3][1] < 20  # red
    fire = pictures.colorize(np.array([[-1.0, 0.0, 1.0]]), "fire")[0]
    assert fire[0].tolist() == fire[1].tolist() == [0, 0, 0] and fire[2].tolist() == [255, 255, 255]
    for name in ("bwr", "seismic", "coldnhot", "fire"):
        assert name in pictures.COLORMAPS
        assert pictures.colormap_table(name).shape == (256, 3)
    bar = pictures.with_colorbar(pictures.heatmap_picture(_raw_map(), "fire"), "fire", scale=1e-5)
    assert bar.shape[0] >= 40
    with pytest.raises(ValueError, match="coldnhot") as info:
        pictures.heatmap_picture(_raw_map(), "firey")
    assert "bwr" in str(info.value) and "seismic" in str(info.value)


def test_label_panel_writes_a_title_strip():
    pic = np.full((30, 80, 3), 0.5)
    labelled = pictures.label_panel(pic, "cat: f(x) = +0.65")
    assert labelled.shape == (44, 80, 3)
    assert (labelled[:14] < 0.5).any() and np.array_equal(labelled[14:], pic)


def test_importing_image_does_not_import_matplotlib():
    """``bowlrp.image`` (without the package's __init__, which others make lazy) loads no matplotlib."""
    import subprocess
    import sys

    code = (
        "import os, sys, types; pkg = types.ModuleType('bowlrp'); "
        "pkg.__path__ = [os.path.join(sys.argv[1], 'bowlrp')]; sys.modules['bowlrp'] = pkg; "
        "import bowlrp.image; print('matplotlib' in sys.modules)"
    )
    root = str(Path(pictures.__file__).parents[1])
    out = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
