"""Reading and writing image files: header limits, one-line errors, any file name, umask."""

import os
import sys
import unittest.mock

import cv2
import numpy as np
import pytest

import bowlrp._utils.validation as v
from bowlrp._utils.image_header import HeaderError, read_header
from bowlrp._utils.validation import as_float_image, read_image, set_image_limits
from bowlrp.exceptions import ImageError
from bowlrp.image import save_png, write_png

from . import imagefiles as F
from .limited import GIB, run_limited


@pytest.fixture(autouse=True)
def default_limits(monkeypatch):
    monkeypatch.delenv("BOWLRP_MAX_IMAGE_PIXELS", raising=False)
    monkeypatch.delenv("BOWLRP_MAX_IMAGE_BYTES", raising=False)
    old = dict(v._limits)
    v._limits.clear()
    yield
    v._limits.clear()
    v._limits.update(old)


@pytest.mark.parametrize("ext", F.FORMATS)
def test_headers_match_what_opencv_decodes(ext):
    for h, w in [(23, 37), (1, 1), (300, 7)]:
        data = F.sample(ext, h, w)
        header = read_header(data)
        assert (header.width, header.height) == (w, h)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded.shape[:2] == (h, w)


def test_more_header_variants():
    assert read_header(F.sample(".png", 5, 9, dtype=np.uint16)).pixels == 45
    assert read_header(F.sample(".tif", 5, 9, dtype=np.uint16)).pixels == 45
    big = read_header(F.bigtiff_header(10, 20))
    assert (big.width, big.height) == (10, 20)
    ok, b = cv2.imencode(".jpg", np.zeros((13, 17, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert read_header(b.tobytes()).width == 17
    for ext in (".pam", ".pbm"):
        ok, b = cv2.imencode(ext, np.zeros((13, 17), np.uint8))
        assert (read_header(b.tobytes()).width, read_header(b.tobytes()).height) == (17, 13)
    ok, b = cv2.imencode(".webp", np.zeros((13, 17, 4), np.uint8))
    assert read_header(b.tobytes()).height == 13
    for name, make in F.BOMBS.items():
        assert read_header(make()).pixels > 10**8, name


@pytest.mark.parametrize("ext", F.FORMATS)
def test_truncated_headers_raise_header_error_only(ext):
    data = F.sample(ext)
    for n in range(0, min(len(data), 64)):
        try:
            read_header(data[:n])
        except HeaderError:
            pass
    with pytest.raises(HeaderError, match="not a PNG"):
        read_header(b"GIF89a" + bytes(20))


@pytest.mark.parametrize("name", sorted(F.BOMBS))
def test_pixel_bombs_are_refused_before_decoding(name, tmp_path):
    path = tmp_path / "bomb.img"
    path.write_bytes(F.BOMBS[name]())
    with unittest.mock.patch("cv2.imdecode", side_effect=AssertionError("decoded")):
        with pytest.raises(ImageError, match="above the limit") as err:
            read_image(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_limits_are_configurable(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(F.sample(".png", 20, 30))
    assert read_image(path).shape == (20, 30, 3)
    with pytest.raises(ImageError, match="600 pixels, above the limit of 599"):
        read_image(path, max_pixels=599)
    old = set_image_limits(max_pixels=599)
    try:
        with pytest.raises(ImageError, match="above the limit"):
            as_float_image(path)
    finally:
        set_image_limits(**old)
    assert v.image_limits()["max_pixels"] == v.DEFAULT_MAX_IMAGE_PIXELS
    v.reset_image_limits()
    monkeypatch.setenv("BOWLRP_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(ImageError, match="BOWLRP_MAX_IMAGE_PIXELS"):
        read_image(path)
    monkeypatch.setenv("BOWLRP_MAX_IMAGE_PIXELS", "none")
    assert v.image_limits()["max_pixels"] is None
    monkeypatch.setenv("BOWLRP_MAX_IMAGE_PIXELS", "many")
    with pytest.raises(ImageError, match="not a whole number"):
        read_image(path)
    monkeypatch.delenv("BOWLRP_MAX_IMAGE_PIXELS")
    size = path.stat().st_size
    with unittest.mock.patch("builtins.open", side_effect=AssertionError("read")):
        with pytest.raises(ImageError, match="above the image file limit"):
            read_image(path, max_bytes=size - 1)
    monkeypatch.setenv("BOWLRP_MAX_IMAGE_BYTES", str(size - 1))
    with pytest.raises(ImageError, match="above the image file limit"):
        read_image(path)
    with pytest.raises(ValueError):
        set_image_limits(max_pixels=-3)


def test_decode_failures_are_one_line_image_errors_naming_the_file(tmp_path):
    rng = np.random.default_rng(0)
    for ext in F.FORMATS:
        data = F.sample(ext, 40, 50)
        variants = [data[: len(data) // 2], data[: len(data) - 7]]
        for _ in range(4):
            b = bytearray(data)
            for i in rng.integers(0, len(b), 8):
                b[i] ^= 0xFF
            variants.append(bytes(b))
        for k, bad in enumerate(variants):
            path = tmp_path / f"bad{k}{ext}"
            path.write_bytes(bad)
            for fn in (read_image, as_float_image):
                try:
                    fn(path)
                except ImageError as exc:  # never cv2.error (70b130f leaked it from as_float_image)
                    msg = str(exc)
                    assert "\n" not in msg and str(path) in msg
                    assert "OpenCV(" not in msg and "error:" not in msg


def test_opencv_exceptions_become_image_errors(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(F.sample(".png"))
    with unittest.mock.patch("cv2.imdecode", side_effect=cv2.error("OpenCV(5.0) assertion failed")):
        with pytest.raises(ImageError, match="cannot be decoded") as err:
            as_float_image(path)
    assert "OpenCV" not in str(err.value)


def test_missing_empty_directory_and_unknown_format(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(tmp_path)
    (tmp_path / "x.gif").write_bytes(b"GIF89a" + bytes(30))
    with pytest.raises(ImageError, match="not an image bowlrp can decode"):
        read_image(tmp_path / "x.gif")


def test_non_utf8_file_names_read_and_write(tmp_path):
    """70b130f: cv2.imwrite segfaulted (exit 139) on such a name and left a 0-byte temp file."""
    picture = np.random.default_rng(0).random((12, 17, 3))
    name = os.fsencode(str(tmp_path)) + b"/caf\xe9 \xff.png"  # latin-1 bytes: not UTF-8
    with unittest.mock.patch("cv2.imwrite", side_effect=AssertionError("path handed to OpenCV")):
        write_png(name, picture)
        save_png(os.fsdecode(name), picture)
    back = read_image(name)
    np.testing.assert_array_equal(back, (picture * 255).round().astype(np.uint8))
    np.testing.assert_array_equal(read_image(os.fsdecode(name)), back)
    assert os.listdir(os.fsencode(str(tmp_path))) == [b"caf\xe9 \xff.png"]
    with pytest.raises(ImageError) as err:
        read_image(os.fsencode(str(tmp_path)) + b"/missing \xff.png")
    assert "\\xff" in str(err.value)


def test_non_utf8_name_in_a_subprocess_does_not_crash(tmp_path):
    code = (
        "import os, sys, numpy as np; from bowlrp.image import write_png; "
        "write_png(os.fsencode(sys.argv[1]) + b'/\\xff\\xfe.png', np.zeros((4, 4, 3))); print('ok')"
    )
    r = run_limited(["-c", code, str(tmp_path)], limit=2 * GIB, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    assert os.listdir(os.fsencode(str(tmp_path))) == [b"\xff\xfe.png"]


def test_png_outputs_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = write_png(tmp_path / "a.png", np.zeros((4, 4, 3)))
        os.umask(0o027)
        q = save_png(tmp_path / "sub" / "b.png", np.zeros((4, 4, 3)))
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644  # 70b130f: 0600 (tempfile.mkstemp)
    assert q.stat().st_mode & 0o777 == 0o640


def test_interrupted_write_leaves_nothing(tmp_path):
    from bowlrp._utils.atomic import atomic_writer

    with pytest.raises(KeyboardInterrupt):
        with atomic_writer(tmp_path / "x.bin") as fh:
            fh.write(b"partial")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []
    (tmp_path / "y.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_writer(tmp_path / "y.txt", "w") as fh:
            fh.write("new")
            raise RuntimeError("disk full")
    assert (tmp_path / "y.txt").read_text() == "old" and os.listdir(tmp_path) == ["y.txt"]


def test_bombs_stay_under_2_gib_in_a_subprocess(tmp_path):
    """70b130f: a 30000 x 30000 PNG took > 9 GB, a corrupt 6 KB PNG 4.3 GB (every bomb, one process)."""
    paths = []
    for k, make in enumerate(F.BOMBS.values()):
        paths.append(tmp_path / f"bomb{k}.img")
        paths[-1].write_bytes(make())
    code = (
        "import sys; from bowlrp._utils.validation import as_float_image\n"
        "for p in sys.argv[1:]:\n    try:\n        as_float_image(p)\n    except Exception as e:\n"
        "        print(type(e).__name__, e)\n"
    )
    r = run_limited(["-c", code, *map(str, paths)], limit=2 * GIB, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(paths) and all(
        ln.startswith("ImageError") and "above the limit" in ln for ln in lines
    ), r.stdout
    assert r.peak_rss < 2 * GIB


@pytest.mark.slow
def test_an_image_at_the_pixel_limit_stays_under_2_gb(tmp_path):
    """Worst case at the default limit: 16-bit RGBA decoded and made float64 RGB."""
    side = int(np.sqrt(v.DEFAULT_MAX_IMAGE_PIXELS)) - 1
    path = tmp_path / "big.png"
    path.write_bytes(F.encode(".png", np.zeros((side, side, 4), np.uint16)))
    code = (
        "import sys; from bowlrp._utils.validation import as_float_image\n"
        "x = as_float_image(sys.argv[1]); print(x.shape, x.dtype)\n"
    )
    r = run_limited(["-c", code, str(path)], limit=4 * GIB, timeout=600)
    assert r.returncode == 0, r.stderr
    print(f"peak RSS {r.peak_rss / 1e9:.2f} GB for {side} x {side} RGBA16", file=sys.stderr)
    assert r.peak_rss < 2e9
