"""Coercion of user input (images, descriptor lists) into clean arrays."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .exceptions import ImageError


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file with OpenCV and return it as RGB (or grey) uint8/uint16.

    Raises
    ------
    ImageError
        If the file does not exist, is empty or is not an image OpenCV can decode.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image file not found: {path}")
    if path.stat().st_size == 0:
        raise ImageError(f"image file is empty: {path}")
    buffer = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageError(f"not an image OpenCV can decode: {path}")
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = image[:, :, :3]
        image = np.ascontiguousarray(image[:, :, ::-1])  # BGR -> RGB
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
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)
        except Exception as exc:  # pragma: no cover - defensive
            raise ImageError(f"cannot convert {type(image).__name__} to an image array") from exc
    if image.size == 0:
        raise ImageError(f"image is empty (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ImageError(
            f"image must have shape (H, W) or (H, W, 3), got {image.shape}"
        )
    if image.dtype == np.bool_:
        return image.astype(np.float64)
    if np.issubdtype(image.dtype, np.integer):
        if np.issubdtype(image.dtype, np.signedinteger) and image.min() < 0:
            raise ImageError("integer images must not contain negative values")
        scale = 255.0 if image.dtype == np.uint8 else float(np.iinfo(image.dtype).max)
        if image.dtype not in (np.uint8, np.uint16) and image.max() <= 255:
            scale = 255.0
        return image.astype(np.float64) / scale
    if np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float64)
        if not np.all(np.isfinite(image)):
            raise ImageError("image contains NaN or infinite values")
        lo, hi = float(image.min()), float(image.max())
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise ImageError(
                f"float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                "divide by 255 (uint8 data) or pass the integer array"
            )
        return np.clip(image, 0.0, 1.0)
    raise ImageError(f"unsupported image dtype {image.dtype}")


def as_image_list(images) -> list:
    """Accept one image (array or path) or a sequence of images; return a list."""
    if isinstance(images, (str, os.PathLike)):
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
