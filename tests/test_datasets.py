"""Data set readers (VOC, class folders, CSV), their bad inputs, and the generated VOC data."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bowlrp.datasets.voc import DatasetError, detect_format, read_csv, read_dataset, read_folder, read_voc
from bowlrp.datasets.voc_annotations import AnnotationError, read_voc_annotation
from bowlrp.datasets.voc_like import CLASSES_20, make_voc_like


@pytest.fixture(scope="module")
def voc_like(tmp_path_factory):
    return make_voc_like(tmp_path_factory.mktemp("voc") / "VOC", 10, 8, seed=3, size=(60, 80))


def _tiny_voc(root, rows, classes=("cat", "dog"), split="trainval"):
    """A hand-written VOC root: rows = {id: {class: value}}."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for i in rows:
        cv2.imwrite(str(root / "JPEGImages" / f"{i}.jpg"), np.full((8, 8, 3), 100, np.uint8))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in rows))
    for c in classes:
        (root / "ImageSets" / "Main" / f"{c}_{split}.txt").write_text(
            "".join(f"{i} {v[c]:2d}\n" for i, v in rows.items())
        )
    return root


def test_generated_voc_labels_agree_with_annotations(voc_like):
    for split, n in (("trainval", 10), ("test", 8)):
        ds = read_voc(voc_like, split)
        assert len(ds) == n and ds.format == "voc"
        assert ds.classes == ("disc", "square", "star", "triangle")
        for i in range(len(ds)):
            ann = read_voc_annotation(voc_like / "Annotations" / f"{ds.ids[i]}.xml")
            assert ann.size[:2] in ((60, 80), (80, 60))
            for k, c in enumerate(ds.classes):
                objs = [o for o in ann.objects if o.name == c]
                expected = -1 if not objs else (0 if all(o.difficult for o in objs) else 1)
                assert ds.labels[i, k] == expected
            assert ds.annotation(i).objects == ann.objects
        for k in range(len(ds.classes)):
            assert (ds.labels[:, k] == 1).any()  # every class has a positive per split


def test_generated_voc_is_reproducible(tmp_path):
    a = make_voc_like(tmp_path / "a", 3, 2, seed=5, size=(40, 50))
    b = make_voc_like(tmp_path / "b", 3, 2, seed=5, size=(40, 50))
    for name in ("000001.xml", "000005.xml"):
        assert (a / "Annotations" / name).read_text() == (b / "Annotations" / name).read_text()
    assert (a / "JPEGImages" / "000003.jpg").read_bytes() == (b / "JPEGImages" / "000003.jpg").read_bytes()


def test_voc_difficult_left_out_of_binary(tmp_path):
    root = _tiny_voc(
        tmp_path / "v", {"a": {"cat": 1, "dog": -1}, "b": {"cat": 0, "dog": 1}, "c": {"cat": -1, "dog": 1}}
    )
    ds = read_voc(root)
    np.testing.assert_array_equal(ds.labels, [[1, -1], [0, 1], [-1, 1]])
    rows, y = ds.binary("cat")
    np.testing.assert_array_equal(rows, [0, 2])
    np.testing.assert_array_equal(y, [1, 0])
    assert ds.describe()["positives"] == {"cat": 1, "dog": 2}
    with pytest.raises(AnnotationError, match="annotation file not found"):
        ds.annotation(0)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("wrong_root", "not found"),
        ("no_jpeg", "JPEGImages/ is missing"),
        ("missing_split", "split file not found"),
        ("absent_image", "listed in trainval.txt but absent"),
        ("disagree_ids", "list different images"),
        ("disagree_twice", "listed twice with different labels"),
        ("bad_value", "expected '<id> 1|-1|0'"),
    ],
)
def test_voc_bad_inputs(tmp_path, damage, message):
    root = _tiny_voc(tmp_path / "v", {"a": {"cat": 1, "dog": -1}, "b": {"cat": -1, "dog": 1}})
    main = root / "ImageSets" / "Main"
    classes = None
    if damage == "wrong_root":
        root = tmp_path / "nowhere"
    elif damage == "no_jpeg":
        (root / "JPEGImages" / "a.jpg").unlink()
        (root / "JPEGImages" / "b.jpg").unlink()
        (root / "JPEGImages").rmdir()
    elif damage == "missing_split":
        classes = ["cat", "horse"]
    elif damage == "absent_image":
        (root / "JPEGImages" / "b.jpg").unlink()
    elif damage == "disagree_ids":
        (main / "dog_trainval.txt").write_text("a -1\nc  1\n")
    elif damage == "disagree_twice":
        (main / "dog_trainval.txt").write_text("a -1\nb  1\nb -1\n")
    elif damage == "bad_value":
        (main / "cat_trainval.txt").write_text("a 2\nb -1\n")
    with pytest.raises(DatasetError, match=message) as info:
        read_voc(root, "trainval", classes)
    assert "\n" not in str(info.value)


def test_voc_unknown_split(voc_like):
    with pytest.raises(DatasetError, match="no <class>_val.txt"):
        read_voc(voc_like, "val")


def _png(path, value=120):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def test_folder_reader(tmp_path):
    for c, n in (("cats", 2), ("dogs", 3)):
        for k in range(n):
            _png(tmp_path / "d" / c / f"{k}.png")
    (tmp_path / "d" / "dogs" / "notes.txt").write_text("not an image")
    ds = read_folder(tmp_path / "d")
    assert ds.classes == ("cats", "dogs") and len(ds) == 5 and not ds.multilabel
    np.testing.assert_array_equal((ds.labels == 1).sum(axis=0), [2, 3])
    assert ds.ids[0] == "cats/0.png"
    assert detect_format(tmp_path / "d") == "folder"
    with pytest.raises(DatasetError, match="no folder .* for class 'birds'"):
        read_folder(tmp_path / "d", ["birds"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class folders with images"):
        read_folder(tmp_path / "empty")
    with pytest.raises(DatasetError, match="--split applies to VOC"):
        read_dataset(tmp_path / "d", split="test")


def test_csv_reader_multilabel(tmp_path):
    for name in ("a", "b", "c"):
        _png(tmp_path / "img" / f"{name}.png")
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\nimg/a.png,cat\nimg/b.png,dog,cat\nimg/c.png,dog\nimg/a.png,cat\n")
    ds = read_csv(listing)
    assert ds.classes == ("cat", "dog") and ds.multilabel and ds.format == "csv"
    np.testing.assert_array_equal(ds.labels, [[1, -1], [1, 1], [-1, 1]])
    assert ds.paths[1] == tmp_path / "img" / "b.png"
    assert detect_format(listing) == "csv"
    assert read_dataset(listing).ids == ["img/a.png", "img/b.png", "img/c.png"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("img/a.png,cat\nimg/zzz.png,dog\n", "listed in .* but absent"),
        ("img/a.png,cat\nimg/a.png,dog\n", "listed again with different labels"),
        ("img/a.png\n", "has no label"),
        ("", "lists no images"),
    ],
)
def test_csv_bad_inputs(tmp_path, text, message):
    _png(tmp_path / "img" / "a.png")
    listing = tmp_path / "list.csv"
    listing.write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_csv(listing)


def test_detect_format(tmp_path, voc_like):
    assert detect_format(voc_like) == "voc"
    with pytest.raises(DatasetError, match="not found"):
        detect_format(tmp_path / "missing")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DatasetError, match="not a CSV list"):
        detect_format(tmp_path / "x.json")


def test_generated_voc_with_twenty_classes(tmp_path):
    """``make_voc_like.py --classes 20``: VOC's number of classes, each with a positive per split."""
    root = tmp_path / "voc20"
    subprocess.run(
        [
            sys.executable,
            "data_scripts/make_voc_like.py",
            "--out",
            str(root),
            "--classes",
            "20",
            "--trainval",
            "20",
            "--test",
            "20",
            "--height",
            "60",
            "--width",
            "80",
        ],
        check=True,
        capture_output=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    for split in ("trainval", "test"):
        ds = read_voc(root, split)
        assert len(ds) == 20 and len(ds.classes) == 20 and set(ds.classes) == set(CLASSES_20)
        assert ((ds.labels == 1).sum(axis=0) >= 1).all()
