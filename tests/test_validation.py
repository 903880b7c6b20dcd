import numpy as np
import pytest

from bowlrp import ColorQuantiles, DenseSIFT
from bowlrp._utils.validation import as_float_image, as_image_list
from bowlrp.exceptions import ImageError


def test_integer_and_float_images_are_scaled_to_unit_range():
    assert as_float_image(np.full((4, 4), 255, np.uint8)).max() == 1.0
    assert as_float_image(np.full((4, 4), 65535, np.uint16)).max() == 1.0
    assert as_float_image(np.full((4, 4, 3), 0.5)).shape == (4, 4, 3)
    assert as_float_image(np.zeros((4, 4, 4), np.uint8)).shape == (4, 4, 3)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros((4, 4, 2)), "shape"),
        (np.zeros(7), "shape"),
        (np.array([[np.nan, 0.0]]), "NaN"),
        (np.full((3, 3), 300.0), r"\[0, 1\]"),
        (np.full((3, 3), -1, np.int16), "negative"),
        (np.zeros((3, 3), np.complex128), "dtype"),
    ],
)
def test_bad_arrays_get_a_clear_error(bad, message):
    with pytest.raises(ImageError, match=message):
        as_float_image(bad)


def test_bad_files_get_a_clear_error(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        as_float_image(tmp_path / "missing.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        as_float_image(empty)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageError, match="decode"):
        as_float_image(corrupt)


def test_image_files_are_read_as_rgb(tmp_path):
    import cv2

    img = np.zeros((10, 12, 3), np.uint8)
    img[..., 0] = 200  # red in RGB
    cv2.imwrite(str(tmp_path / "x.png"), img[..., ::-1])
    out = as_float_image(tmp_path / "x.png")
    assert out.shape == (10, 12, 3)
    assert np.allclose(out[..., 0], 200 / 255) and np.allclose(out[..., 2], 0)


def test_image_list_shapes():
    assert len(as_image_list(np.zeros((5, 6)))) == 1
    assert len(as_image_list(np.zeros((5, 6, 3)))) == 1
    assert len(as_image_list(np.zeros((4, 5, 6)))) == 4
    assert len(as_image_list("a.png")) == 1


def test_image_smaller_than_a_descriptor():
    with pytest.raises(ImageError, match="smaller than one SIFT descriptor"):
        DenseSIFT(bin_sizes=[8], steps=4, backend="opencv").describe(np.zeros((20, 20)))
    with pytest.raises(ImageError, match="smaller than one colour-quantile"):
        ColorQuantiles(radius=9).describe(np.zeros((10, 40, 3)))
