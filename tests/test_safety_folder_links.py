"""Issue 24: a folder data set (``root/<class>/<image>``) reads nothing outside ``root``.

Class folders and images that are symbolic links leading out of ``root`` are refused
in one line naming the entry and ``allow_outside_root`` (as CSV rows and VOC ids are),
link loops and links to nothing are refused, and an image name that is a FIFO, a
device or a socket is refused without being opened. Ordinary folders, links staying
inside ``root`` included, read exactly as before.
"""

import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from bowlrp._utils.validation import IMAGE_SUFFIXES
from bowlrp.datasets.voc import DatasetError, read_dataset, read_folder

PNG = b"\x89PNG\r\n\x1a\n"  # read_folder opens nothing: a file's content does not matter here


def _file(path, data=PNG):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _symlink(target, link):
    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError):
        pytest.skip("symbolic links are not available here")
    return link


def _old_read_folder(root):
    """``read_folder`` before issue 24 (commit 4269499), the reference for ordinary folders."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = tuple(p.name for p in folders)
    paths, cls = [], []
    for k, folder in enumerate(folders):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += images
        cls += [k] * len(images)
    labels = -np.ones((len(paths), len(names)), dtype=np.int8)
    labels[np.arange(len(paths)), cls] = 1
    return paths, labels, names, [str(p.relative_to(root)) for p in paths]


@pytest.fixture
def data(tmp_path):
    """``data/cats/{a.png,b.JPG}``, ``data/dogs/c.jpeg``, and ``outside/`` beside ``data/``."""
    root = tmp_path / "data"
    _file(root / "cats" / "a.png")
    _file(root / "cats" / "b.JPG")
    _file(root / "dogs" / "c.jpeg")
    outside = tmp_path / "outside"
    _file(outside / "secret.png", b"not yours")
    return root, outside


def _refused(root, *fragments, **options):
    with pytest.raises(DatasetError) as info:
        read_folder(root, **options)
    text = str(info.value)
    assert "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


def test_ordinary_folders_read_as_before(data, tmp_path, monkeypatch):
    root, _ = data
    _file(root / "cats" / "notes.txt", b"ignored")
    _file(root / "cats" / "deeper" / "x.png")  # nothing below the class folders is read
    _file(root / ".hidden" / "h.png")
    _file(root / "README.md", b"ignored")
    _file(root / "birds" / "z.webp")
    _symlink("a.png", root / "cats" / "a_again.png")  # links staying inside the root are fine
    _symlink("cats", root / "kittens")
    _symlink("../dogs/c.jpeg", root / "birds" / "c_link.jpeg")
    ds = read_folder(root)
    paths, labels, names, ids = _old_read_folder(root)
    assert ds.paths == paths and ds.ids == ids and ds.classes == names
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.classes == ("birds", "cats", "dogs", "kittens")
    assert ds.ids[:4] == ["birds/c_link.jpeg", "birds/z.webp", "cats/a.png", "cats/a_again.png"]
    assert ds.root == root and ds.format == "folder"
    flagged = read_folder(root, allow_outside_root=True)
    assert flagged.paths == ds.paths and flagged.ids == ds.ids
    np.testing.assert_array_equal(flagged.labels, ds.labels)
    # a relative root reads the same paths it did
    monkeypatch.chdir(tmp_path)
    relative = [p.relative_to(tmp_path) for p in paths]
    assert read_folder("data").paths == _old_read_folder("data")[0] == relative


def test_a_class_folder_linking_outside_is_refused_unless_allowed(data):
    root, outside = data
    _symlink(outside, root / "secrets")
    _refused(root, "secrets", "outside the data set's root", "allow_outside_root=True")
    with pytest.raises(DatasetError, match="allow_outside_root"):
        read_dataset(root)
    ds = read_folder(root, allow_outside_root=True)
    assert "secrets/secret.png" in ds.ids and ds.classes == ("cats", "dogs", "secrets")
    assert read_dataset(root, allow_outside_root=True).ids == ds.ids


def test_a_class_folder_linking_to_the_home_folder_is_refused(data):
    root, _ = data
    home = Path.home()
    if not home.is_dir() or home.resolve().is_relative_to(root.resolve()):
        pytest.skip("no home folder outside the data set")
    _symlink(home, root / "home")
    _refused(root, "home", "allow_outside_root")


def test_an_image_linking_outside_is_refused_unless_allowed(data):
    root, outside = data
    _symlink(outside / "secret.png", root / "cats" / "passwd.png")
    _refused(root, "cats/passwd.png", "outside the data set's root", "allow_outside_root=True")
    ds = read_folder(root, allow_outside_root=True)
    assert ds.ids == ["cats/a.png", "cats/b.JPG", "cats/passwd.png", "dogs/c.jpeg"]
    # ``..`` inside a link's target is resolved too
    os.remove(root / "cats" / "passwd.png")
    _symlink("../../outside/secret.png", root / "dogs" / "up.png")
    _refused(root, "dogs/up.png", "allow_outside_root")


@pytest.mark.parametrize("where", ["image", "class folder", "two links"])
def test_link_loops_are_refused_even_when_outside_links_are_allowed(data, where):
    root, _ = data
    if where == "image":
        _symlink("loop.png", root / "cats" / "loop.png")
        name = "cats/loop.png"
    elif where == "class folder":
        _symlink("loop", root / "loop")
        name = "loop"
    else:
        _symlink("ping", root / "pong")
        _symlink("pong", root / "ping")
        name = "ping"
    for options in ({}, {"allow_outside_root": True}):
        _refused(root, name, "link loop", **options)


def test_links_back_up_the_tree_are_not_walked(data):
    root, _ = data
    _symlink("..", root / "cats" / "up")  # no image suffix: not listed
    _symlink(".", root / "again")  # a class folder that is the root: its entries are listed once
    _symlink("..", root / "cats" / "loop.png")  # a folder with an image's name: refused, not walked
    _refused(root, "cats/loop.png", "is a folder, not an image file")
    os.remove(root / "cats" / "loop.png")
    ds = read_folder(root)
    assert ds.classes == ("again", "cats", "dogs") and len(ds) == 3


def test_a_link_to_nothing_is_refused(data):
    root, _ = data
    _symlink("gone.png", root / "dogs" / "d.png")
    _refused(root, "dogs/d.png", "target does not exist")


def _read_in_thread(root, **options):
    """``read_folder`` in a thread: a regression that opens a FIFO cannot hang the suite."""
    out = {}

    def run():
        try:
            out["value"] = read_folder(root, **options)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    return thread.is_alive(), out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_posing_as_an_image_is_refused_without_being_opened(data):
    root, _ = data
    fifo = root / "cats" / "x.png"
    os.mkfifo(fifo)
    try:
        for options in ({}, {"allow_outside_root": True}):
            hung, out = _read_in_thread(root, **options)
            assert not hung, "read_folder opened the FIFO"
            assert isinstance(out.get("error"), DatasetError), out
            text = str(out["error"])
            assert "cats/x.png" in text and "FIFO" in text and "\n" not in text, text
    finally:
        try:  # release a reader a regression left blocked on the FIFO
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_a_device_or_socket_posing_as_an_image_is_refused(data, monkeypatch):
    root, _ = data
    if os.path.exists("/dev/null"):
        _symlink("/dev/null", root / "dogs" / "null.png")
        _refused(root, "dogs/null.png", "allow_outside_root")  # outside the root first
        _refused(root, "dogs/null.png", "character device", allow_outside_root=True)
        os.remove(root / "dogs" / "null.png")
    if hasattr(socket, "AF_UNIX"):
        monkeypatch.chdir(root / "dogs")  # a short relative name: socket paths are limited
        with socket.socket(socket.AF_UNIX) as server:
            server.bind("s.png")
            _refused(root, "dogs/s.png", "socket")
