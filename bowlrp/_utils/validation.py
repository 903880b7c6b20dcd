"""Coercion of user input (images, descriptor lists) into clean arrays."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable

import cv2
import numpy as np

from ..exceptions import ImageError
from .image_header import HeaderError, read_header

#: Default pixel limit (width x height) checked from the file header before decoding. In the
#: spirit of Pillow's decompression-bomb guard, sized so that the worst case -- a 16-bit RGBA
#: file at the limit, decoded and converted to the float64 RGB image bowlrp works on
#: (24 bytes per pixel) -- stays under 2 GB of memory. 50 Mpx covers 8K video frames and
#: nearly all camera photos.
#: the file suffixes read as images (lower case; matched case-insensitively)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
#: Default limit on an image file's size, checked before it is read (512 MiB).
DEFAULT_MAX_IMAGE_BYTES = 512 << 20

_limits: dict[str, int | None] = {}
_UNSET = object()


def _quiet_opencv_logging() -> None:
    """OpenCV's own log lines (``[ WARN:0@...] global grfmt_png.cpp ... PNG input buffer is
    incomplete``) go to fd 2 from C++, past every Python error message: keep only errors,
    unless the user chose a level with ``OPENCV_LOG_LEVEL``."""
    if os.environ.get("OPENCV_LOG_LEVEL"):
        return
    try:
        logging = cv2.utils.logging
        if logging.getLogLevel() > logging.LOG_LEVEL_ERROR:
            logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    except (AttributeError, cv2.error):  # pragma: no cover - an OpenCV build without utils.logging
        pass


_quiet_opencv_logging()


def opencv_message(exc: BaseException) -> str:
    """A ``cv2.error`` as a short line: ``resize: !ssize.empty()`` instead of
    ``OpenCV(5.0.0) /io/opencv/modules/.../resize.cpp:4152: error: (-215:Assertion failed)
    !ssize.empty() in function 'resize'``."""
    text = " ".join(str(exc).split())
    err = getattr(exc, "err", None)
    func = getattr(exc, "func", None)
    if isinstance(err, str) and err.strip():
        text = " ".join(err.split())
        if isinstance(func, str) and func.strip():
            text = f"{func.strip()}: {text}"
    else:
        # "OpenCV(x) file:line: error: (-215:Assertion failed) what in function 'f'"
        head, sep, rest = text.partition(" error: ")
        if sep:
            text = rest
        if text.startswith("(") and ")" in text:
            text = text[text.index(")") + 1 :].strip()
        body, sep, func_text = text.rpartition(" in function ")
        if sep:
            text = f"{func_text.strip(chr(39))}: {body}"
    return text or "OpenCV error"


class _NativeStderr:
    """Capture what native code (libpng, libjpeg, libtiff, OpenCV's C++ logging) writes to fd 2.

    ``libpng error: bad adaptive filter value`` and ``libpng warning: iCCP: ...`` are printed
    by the decoders themselves with ``fprintf(stderr, ...)``, which no OpenCV setting reaches;
    around a decode, fd 2 points at a private temporary file and its text is returned instead.
    One decode at a time per process (fd 2 is process-wide), which costs nothing next to the
    explanation of the image.

    Only inside bowlrp's commands (:func:`capturing_native_stderr`, entered by
    ``bowlrp.cli._common.run_command``): a library call never moves the fd 2 of
    a user's process (a notebook, a program with its own threads).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._file = None
        self._pid = None
        self.enabled = False

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._file = None
        self._pid = None

    @contextlib.contextmanager
    def capture(self, out: list[str]):
        if not self.enabled:
            yield
            return
        with self._lock:
            try:
                if self._file is None or self._pid != os.getpid():
                    self._file = tempfile.TemporaryFile()
                    self._pid = os.getpid()
                self._file.seek(0)
                self._file.truncate()
                for stream in (sys.stderr, sys.__stderr__):
                    with contextlib.suppress(Exception):
                        stream.flush()  # Python's own pending text goes out before fd 2 moves
                saved = os.dup(2)
            except (OSError, ValueError):  # no fd 2 (closed, embedded interpreter): decode as is
                yield
                return
            try:
                os.dup2(self._file.fileno(), 2)
                try:
                    yield
                finally:
                    for stream in (sys.stderr, sys.__stderr__):
                        with contextlib.suppress(Exception):
                            stream.flush()
                    os.dup2(saved, 2)
            finally:
                os.close(saved)
            with contextlib.suppress(OSError):
                self._file.seek(0)
                out.append(self._file.read(4096).decode("utf-8", "replace"))


_native_stderr = _NativeStderr()


@contextlib.contextmanager
def capturing_native_stderr():
    """Within the block, what image decoders print to fd 2 becomes part of bowlrp's one-line
    error instead of leaking to the terminal (see :class:`_NativeStderr`); for commands only."""
    previous, _native_stderr.enabled = _native_stderr.enabled, True
    try:
        yield
    finally:
        _native_stderr.enabled = previous


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_native_stderr._after_fork)


def _native_detail(captured: list[str]) -> str:
    """The decoder's own complaint as one short clause (``libpng error: ...``), or ''."""
    lines = [" ".join(line.split()) for text in captured for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    detail = lines[0]
    if detail.startswith("[") and "]" in detail:  # "[ WARN:0@3.7] global grfmt_png.cpp:793 f what"
        detail = detail[detail.index("]") + 1 :].strip()
        parts = detail.split(" ", 3)
        if len(parts) == 4 and parts[0] == "global":
            detail = parts[3]
    # "libpng error: bad adaptive filter value" -> "libpng: bad adaptive filter value": the
    # line is already bowlrp's error, and "error:" inside it would read as a second one
    detail = re.sub(r"\s*\b(?:error|warning)\s*:\s*", ": ", detail).strip(": ")
    detail = display_path(re.sub(r"OpenCV\([^)]*\)\s*", "", detail))
    return detail[:160] + ("..." if len(detail) > 160 else "")


def plain_value(value):
    """A NumPy scalar as the Python value it holds (``np.str_('cat')`` -> ``'cat'``,
    ``np.int64(1)`` -> ``1``) for JSON and messages; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def display_path(path) -> str:
    """A path as one printable line: undecodable bytes as ``\\xNN``, control characters escaped."""
    try:
        raw = os.fsencode(path)
    except TypeError:
        raw = str(path).encode("utf-8", "surrogateescape")
    text = raw.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _env_limit(name: str, default: int) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        value = int(float(text))
    except (ValueError, OverflowError):  # "many", "inf", "1e400"
        raise ImageError(f"environment variable {name}={text!r} is not a whole number") from None
    if value < 0:
        raise ImageError(f"environment variable {name} must not be negative, got {value}")
    return value or None


def image_limits() -> dict[str, int | None]:
    """The limits :func:`read_image` applies: ``{"max_pixels": ..., "max_bytes": ...}``.

    Each comes from :func:`set_image_limits` if it was called, else from the
    environment variables ``BOWLRP_MAX_IMAGE_PIXELS`` / ``BOWLRP_MAX_IMAGE_BYTES``
    (a whole number, or ``none``/``0`` for no limit), else from
    :data:`DEFAULT_MAX_IMAGE_PIXELS` / :data:`DEFAULT_MAX_IMAGE_BYTES`.
    ``None`` means no limit.
    """
    return {
        "max_pixels": _limits["max_pixels"]
        if "max_pixels" in _limits
        else _env_limit("BOWLRP_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS),
        "max_bytes": _limits["max_bytes"]
        if "max_bytes" in _limits
        else _env_limit("BOWLRP_MAX_IMAGE_BYTES", DEFAULT_MAX_IMAGE_BYTES),
    }


def set_image_limits(max_pixels=_UNSET, max_bytes=_UNSET) -> dict[str, int | None]:
    """Set the process-wide image limits; return the previous ones (pass them back to restore).

    Parameters
    ----------
    max_pixels : int or None
        Largest ``width * height`` read; None disables the check (only for
        files you trust: a small file can declare billions of pixels).
    max_bytes : int or None
        Largest file size read; None disables the check.

    Examples
    --------
    >>> import bowlrp._utils.validation as v
    >>> old = v.set_image_limits(max_pixels=200_000_000)
    >>> _ = v.set_image_limits(**old)   # back to the previous limits
    """
    previous = image_limits()
    for name, value in (("max_pixels", max_pixels), ("max_bytes", max_bytes)):
        if value is _UNSET:
            continue
        if value is not None and (not isinstance(value, (int, np.integer)) or value <= 0):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        _limits[name] = None if value is None else int(value)
    return previous


def reset_image_limits() -> None:
    """Forget :func:`set_image_limits`: back to the environment variables or the defaults."""
    _limits.clear()


def read_image(path: str | os.PathLike | bytes, *, max_pixels=_UNSET, max_bytes=_UNSET) -> np.ndarray:
    """Read an image file and return it as RGB (or grey) uint8/uint16, shape (H, W) or (H, W, 3).

    The file size is checked before the file is read, and ``width * height``
    from the header (:mod:`bowlrp._utils.image_header`) before anything is decoded;
    the file is read with Python I/O and decoded from memory with
    ``cv2.imdecode`` (OpenCV never sees the path, so any file name works).

    Parameters
    ----------
    path : str, PathLike or bytes
    max_pixels, max_bytes : int or None
        Override :func:`image_limits` for this call (None: no limit).

    Raises
    ------
    ImageError
        One line naming the file: missing, empty, too large, not a PNG, JPEG,
        BMP, TIFF, WebP or PNM file, above the pixel limit, or undecodable.
    """
    limits = image_limits()
    max_pixels = limits["max_pixels"] if max_pixels is _UNSET else max_pixels
    max_bytes = limits["max_bytes"] if max_bytes is _UNSET else max_bytes
    shown = display_path(path)
    fs_path = os.fsdecode(path) if isinstance(path, bytes) else path
    try:
        st = os.stat(fs_path)
    except FileNotFoundError:
        raise ImageError(f"image file not found: {shown}") from None
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read image file {shown}: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"not a regular file: {shown}")
    if st.st_size == 0:
        raise ImageError(f"image file is empty: {shown}")
    if max_bytes is not None and st.st_size > max_bytes:
        raise ImageError(
            f"{shown} is {st.st_size:,} bytes, above the image file limit of "
            f"{max_bytes:,}; raise it with BOWLRP_MAX_IMAGE_BYTES if you trust the file"
        )
    try:
        with open(fs_path, "rb") as fh:
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except OSError as exc:
        raise ImageError(f"cannot read image file {shown}: {exc.strerror or exc}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageError(f"{shown} grew above the image file limit of {max_bytes:,} bytes while read")
    try:
        header = read_header(data)
    except HeaderError as exc:
        raise ImageError(f"{shown} is not an image bowlrp can decode ({exc})") from None
    if max_pixels is not None and header.pixels > max_pixels:
        raise ImageError(
            f"{shown}: {header.format} header declares {header.width} x {header.height} = "
            f"{header.pixels:,} pixels, above the limit of {max_pixels:,} (decompression bomb?); "
            "raise it with BOWLRP_MAX_IMAGE_PIXELS or bowlrp.set_image_limits if you trust the file"
        )
    captured: list[str] = []
    try:
        with _native_stderr.capture(captured):
            image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        if "memory" in str(exc).lower():
            raise ImageError(
                f"{shown}: out of memory decoding {header.width} x {header.height} pixels"
            ) from None
        image = None
    except MemoryError:
        raise ImageError(f"{shown}: out of memory decoding {header.width} x {header.height} pixels") from None
    del data
    if image is None or image.size == 0:
        detail = _native_detail(captured)
        raise ImageError(
            f"{shown}: the {header.format} data cannot be decoded (corrupt, truncated "
            "or an unsupported variant of the format"
            + (f": {detail}" if detail else "")
            + "); export or download the file again"
        )
    if max_pixels is not None and image.shape[0] * image.shape[1] > max_pixels:
        raise ImageError(
            f"{shown}: decoded to {image.shape[1]} x {image.shape[0]} pixels, above the "
            f"limit of {max_pixels:,}"
        )
    if image.ndim == 3:
        if image.shape[2] == 1:
            image = image[:, :, 0]
        elif image.shape[2] in (3, 4):
            image = np.ascontiguousarray(image[:, :, 2::-1])  # BGR(A) -> RGB
        else:
            raise ImageError(f"{shown}: {image.shape[2]} channels; expected grey, RGB or RGBA")
    elif image.ndim != 2:
        raise ImageError(f"{shown}: decoded to an array of shape {image.shape}")
    return image


def as_float_image(image) -> np.ndarray:
    """Coerce an image (array or path) to float64 in [0, 1], shape (H, W) or (H, W, 3).

    Integer images are divided by the maximum of their dtype; float images must
    already lie in [0, 1] (values are checked, not rescaled).

    Raises
    ------
    ImageError
        For unreadable files, wrong shapes, unsupported dtypes, NaN/inf or
        out-of-range float values.
    """
    source = ""
    if isinstance(image, (str, bytes, os.PathLike)):
        source = f"{display_path(image)}: "
        image = read_image(image)
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)
        except Exception as exc:  # pragma: no cover - defensive
            raise ImageError(f"cannot convert {type(image).__name__} to an image array") from exc
    if image.size == 0:
        raise ImageError(f"{source}image is empty (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ImageError(f"{source}image must have shape (H, W) or (H, W, 3), got {image.shape}")
    if image.dtype == np.bool_:
        return image.astype(np.float64)
    if np.issubdtype(image.dtype, np.integer):
        if np.issubdtype(image.dtype, np.signedinteger) and image.min() < 0:
            raise ImageError(f"{source}integer images must not contain negative values")
        scale = 255.0 if image.dtype == np.uint8 else float(np.iinfo(image.dtype).max)
        if image.dtype not in (np.uint8, np.uint16) and image.max() <= 255:
            scale = 255.0
        out = image.astype(np.float64)  # one float64 array, scaled in place
        out /= scale
        return out
    if np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float64)
        if not np.all(np.isfinite(image)):
            raise ImageError(f"{source}image contains NaN or infinite values")
        lo, hi = float(image.min()), float(image.max())
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise ImageError(
                f"{source}float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                "divide by 255 (uint8 data) or pass the integer array"
            )
        return np.clip(image, 0.0, 1.0, out=image)
    raise ImageError(f"{source}unsupported image dtype {image.dtype}")


def as_image_list(images) -> list:
    """Accept one image (array or path) or a sequence of images; return a list."""
    if isinstance(images, (str, bytes, os.PathLike)):
        return [images]
    if isinstance(images, np.ndarray):
        # (H, W) and (H, W, 3|4) are one image; (n, H, W) and (n, H, W, 3) are a stack.
        if images.ndim == 2 or (images.ndim == 3 and images.shape[2] in (3, 4)):
            return [images]
        if images.ndim in (3, 4):
            return list(images)
        raise ImageError(f"cannot interpret an array of shape {images.shape} as images")
    if isinstance(images, Iterable):
        return list(images)
    raise ImageError(f"expected an image or a sequence of images, got {type(images).__name__}")


def check_1d_finite(values, n: int, name: str) -> np.ndarray:
    """Return ``values`` as a float64 vector of length ``n`` with finite entries."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return values
