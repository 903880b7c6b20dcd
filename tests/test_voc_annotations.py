"""VOC annotation files from careless or hostile sources: finite numbers, boxes in the image, encodings."""

import warnings

import numpy as np
import pytest

from bowlrp.datasets.voc_annotations import AnnotationWarning
from bowlrp.evaluation import AnnotationError, context_ratio, context_ratios, read_voc_annotation


def voc(box=("2", "3", "5", "6"), size=("10", "8"), head='<?xml version="1.0"?>', name="horse"):
    x1, y1, x2, y2 = box
    size_xml = (
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    )
    return (
        f"{head}<annotation><filename>a.jpg</filename>{size_xml}<object><name>{name}</name>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"
        "</object></annotation>"
    )


def write(tmp_path, text, name="a.xml", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999", "Infinity"])
def test_non_finite_coordinates_are_annotation_errors(value, tmp_path):
    """70b130f: OverflowError for inf."""
    path = write(tmp_path, voc(box=("2", "3", value, "6")))
    with pytest.raises(AnnotationError, match="finite") as err:
        read_voc_annotation(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("size", [("inf", "8"), ("10", "nan"), ("-3", "8"), ("2.5", "8")])
def test_bad_sizes(size, tmp_path):
    with pytest.raises(AnnotationError):
        read_voc_annotation(write(tmp_path, voc(size=size)))


def test_bogus_declared_encoding_is_an_annotation_error(tmp_path):
    """70b130f: LookupError."""
    path = write(tmp_path, voc(head='<?xml version="1.0" encoding="no-such-codec"?>'))
    with pytest.raises(AnnotationError, match="not a valid VOC annotation") as err:
        read_voc_annotation(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_undecodable_bytes_are_an_annotation_error(tmp_path):
    path = write(tmp_path, voc(name="caf\xe9").encode("latin-1"))  # declared utf-8 by default
    with pytest.raises(AnnotationError, match="not a valid VOC annotation"):
        read_voc_annotation(path)
    ok = write(
        tmp_path, voc(name="caf\xe9", head='<?xml version="1.0" encoding="latin-1"?>'), "b.xml", "latin-1"
    )
    assert read_voc_annotation(ok).objects[0].name == "caf\xe9"
    utf16 = write(tmp_path, voc(head='<?xml version="1.0" encoding="utf-16"?>'), "c.xml", "utf-16")
    assert read_voc_annotation(utf16).objects[0].box == (2, 6, 1, 5)


def test_boxes_reaching_outside_are_clipped_with_a_warning(tmp_path):
    path = write(tmp_path, voc(box=("-5", "0", "50", "6")))
    with pytest.warns(AnnotationWarning, match="clipped") as rec:
        ann = read_voc_annotation(path)
    assert str(path) in str(rec[0].message)
    assert ann.boxes() == [(0, 6, 0, 10)]  # rows 0..6, all 10 columns


@pytest.mark.parametrize("box", [("20", "3", "25", "6"), ("2", "30", "5", "40"), ("-9", "-9", "0", "0")])
def test_boxes_outside_the_image_are_errors(box, tmp_path):
    """70b130f: such a box gave a NaN context ratio."""
    with pytest.raises(AnnotationError, match="outside|no pixel"):
        read_voc_annotation(write(tmp_path, voc(box=box)))


def test_swapped_corners_are_errors(tmp_path):
    with pytest.raises(AnnotationError, match="xmin <= xmax"):
        read_voc_annotation(write(tmp_path, voc(box=("5", "3", "2", "6"))))


def test_without_size_boxes_are_kept_non_negative(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ann = read_voc_annotation(write(tmp_path, voc(box=("0", "3", "500", "6"), size=None)))
    assert ann.boxes() == [(2, 6, 0, 500)]


def test_context_ratio_is_never_nan():
    heat = np.zeros((8, 10))
    with pytest.raises(AnnotationError, match="no pixel"):
        context_ratio(heat, [(20, 30, 20, 30)])
    with pytest.raises(AnnotationError, match="whole"):
        context_ratio(heat, [(0, 8, 0, 10)])
    with pytest.raises(ValueError, match="0 / 0"):
        context_ratio(heat, [(0, 2, 0, 2)])
    heat[5, 5] = 1.0
    assert context_ratio(heat, [(0, 2, 0, 2)]) == float("inf")


def test_context_ratios_record_undefined_images_as_none(tmp_path):
    ann = read_voc_annotation(write(tmp_path, voc()))
    out = context_ratios([np.zeros((8, 10)), np.ones((8, 10))], [ann, ann], ["horse", "horse"])
    assert out["per_image"] == [None, 1.0] and out["per_class"] == {"horse": 1.0}
    out = context_ratios([np.zeros((8, 10))], [ann], ["cow"])
    assert out["per_image"] == [None] and out["per_class"] == {"cow": None}


def test_unreadable_and_oversized_files(tmp_path, monkeypatch):
    import bowlrp.datasets.voc_annotations as ctx

    with pytest.raises(AnnotationError, match="not found"):
        read_voc_annotation(tmp_path / "nope.xml")
    path = write(tmp_path, voc())
    monkeypatch.setattr(ctx, "MAX_ANNOTATION_BYTES", 10)
    with pytest.raises(AnnotationError, match="larger than"):
        read_voc_annotation(path)
