"""Issue 24: data set lists and annotations from other people read nothing outside the data set.

CSV image paths and VOC image ids that lead outside the data set's root (absolute
paths, ``..``, links) are refused unless ``allow_outside_root=True``; VOC XML with
a ``<!DOCTYPE>`` is refused; a CSV list that is not UTF-8 or not CSV is one line
naming the file and the line.
"""

import os

import cv2
import numpy as np
import pytest

from bowlrp.datasets.voc import DatasetError, read_csv, read_dataset, read_voc
from bowlrp.datasets.voc_annotations import AnnotationError, read_voc_annotation


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((8, 8, 3), 90, np.uint8))
    return path


@pytest.fixture
def layout(tmp_path):
    """``data/imgs/a.png`` and a sentinel image outside ``data/``."""
    data = tmp_path / "data"
    _image(data / "imgs" / "a.png")
    return data, _image(tmp_path / "outside" / "secret.png")


def _symlink(target, link):
    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError):
        pytest.skip("symbolic links are not available here")


def _outside_rows(data, secret):
    """CSV rows naming the sentinel: absolute, through '..', through a link."""
    _symlink(secret, data / "imgs" / "link.png")
    return {"absolute": str(secret), "dotdot": "../outside/secret.png", "link": "imgs/link.png"}


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "link"])
def test_csv_paths_leading_outside_are_refused(layout, kind):
    data, secret = layout
    entry = _outside_rows(data, secret)[kind]
    listing = data / "list.csv"
    listing.write_text(f"path,label\nimgs/a.png,cat\n{entry},dog\n")
    for read in (read_csv, read_dataset):
        with pytest.raises(DatasetError) as err:
            read(listing)
        message = str(err.value)
        assert "\n" not in message
        assert f"{listing}, line 3" in message and repr(entry) in message
        assert "allow_outside_root" in message


def test_csv_paths_outside_are_read_when_allowed(layout):
    data, secret = layout
    rows = _outside_rows(data, secret)
    listing = data / "list.csv"
    listing.write_text("imgs/a.png,cat\n" + "".join(f"{e},dog\n" for e in rows.values()))
    ds = read_dataset(listing, allow_outside_root=True)
    assert len(ds) == 4 and all(p.resolve() == secret.resolve() for p in ds.paths[1:])
    assert read_csv(listing, allow_outside_root=True).ids == ds.ids


def test_csv_paths_staying_inside_are_read(layout):
    data, _ = layout
    _symlink(data / "imgs" / "a.png", data / "imgs" / "b.png")  # a link inside the folder
    listing = data / "list.csv"
    listing.write_text("path,label\nimgs/../imgs/a.png,cat\nimgs/b.png,dog\n")
    ds = read_csv(listing)
    assert ds.ids == ["imgs/../imgs/a.png", "imgs/b.png"] and ds.root == data


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("path,label\nimgs/a.png,cat\nimgs/a.png,ch\xe4t\n".encode("latin-1"), 3),  # not UTF-8
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 1),  # an image named .csv
        (b"path,label\nimgs/a.png,cat\nimgs/a\x00.png,dog\n", 3),  # NUL: not CSV
    ],
)
def test_csv_that_is_not_utf8_or_not_csv_is_one_line_naming_the_file(layout, content, line):
    data, _ = layout
    listing = data / "list.csv"
    listing.write_bytes(content)
    with pytest.raises(DatasetError) as err:
        read_dataset(listing)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{listing}, line {line}:")


def test_csv_with_byte_order_mark_is_read(layout):
    data, _ = layout
    listing = data / "list.csv"
    listing.write_bytes(b"\xef\xbb\xbfpath,label\nimgs/a.png,cat\n")
    assert read_csv(listing).ids == ["imgs/a.png"]


def _voc(root, ids):
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    _image(root / "JPEGImages" / "a.jpg")
    (main / "cat_trainval.txt").write_text("".join(f"{i} 1\n" for i in ids))
    return root


@pytest.mark.parametrize("bad", ["../../outside/secret", "sub/a", "..", "sub\\a", "C:a", "/abs/a"])
@pytest.mark.parametrize("split_file", ["cat_trainval.txt", "trainval.txt"])
def test_voc_ids_must_be_plain_names(tmp_path, bad, split_file):
    _image(tmp_path / "outside" / "secret.jpg")
    root = _voc(tmp_path / "VOC", ["a"] if split_file == "trainval.txt" else ["a", bad])
    if split_file == "trainval.txt":
        (root / "ImageSets" / "Main" / "trainval.txt").write_text(f"a\n{bad}\n")
    for options in ({}, {"allow_outside_root": True}):  # no opt-in for ids: they are names, not paths
        with pytest.raises(DatasetError) as err:
            read_dataset(root, **options)
        message = str(err.value)
        assert "\n" not in message
        assert f"{root / 'ImageSets' / 'Main' / split_file}, line 2" in message and repr(bad) in message


def test_voc_image_links_leading_outside_are_refused_unless_allowed(tmp_path):
    secret = _image(tmp_path / "outside" / "secret.jpg")
    root = _voc(tmp_path / "VOC", ["a", "b"])
    _symlink(secret, root / "JPEGImages" / "b.jpg")
    with pytest.raises(DatasetError, match=r"JPEGImages/b\.jpg \(id 'b'\).*allow_outside_root"):
        read_voc(root)
    assert read_voc(root, allow_outside_root=True).ids == ["a", "b"]
    assert read_dataset(root, allow_outside_root=True).paths[1].resolve() == secret.resolve()


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE annotation SYSTEM "http://example.invalid/voc.dtd">',
        '<!DOCTYPE annotation PUBLIC "-//X//Y" "http://example.invalid/voc.dtd">',
        "<!DOCTYPE annotation [<!ELEMENT annotation ANY>]>",
        "<!DOCTYPE annotation>",
    ],
)
def test_voc_xml_with_a_doctype_is_refused(tmp_path, doctype):
    xml = tmp_path / "a.xml"
    xml.write_text(f'<?xml version="1.0"?>{doctype}<annotation><filename>a.jpg</filename></annotation>')
    with pytest.raises(AnnotationError) as err:
        read_voc_annotation(xml)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(xml)) and "DOCTYPE" in str(err.value)
    xml.write_text("<annotation><filename>a.jpg</filename></annotation>")
    assert read_voc_annotation(xml).filename == "a.jpg"
