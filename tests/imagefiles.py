"""Image files for the tests: encoded by OpenCV in memory, or crafted headers (bombs)."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

FORMATS = (".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm", ".pgm")


def encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok, ext
    return buf.tobytes()


def sample(ext: str, height: int = 23, width: int = 37, seed: int = 0, dtype=np.uint8) -> bytes:
    rng = np.random.default_rng(seed)
    grey = ext == ".pgm"
    shape = (height, width) if grey else (height, width, 3)
    hi = 256 if dtype == np.uint8 else 65536
    return encode(ext, rng.integers(0, hi, shape).astype(dtype))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(
    width: int, height: int, bit_depth: int = 8, colour: int = 2, payload: int = 6000, seed: int = 0
) -> bytes:
    """A small PNG whose IHDR declares ``width x height`` (IDAT: ``payload`` bytes of deflated zeros
    or garbage)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    rng = np.random.default_rng(seed)
    idat = zlib.compress(bytes(payload * 50))[:payload] if seed == 0 else rng.bytes(payload)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_bomb(width: int = 65000, height: int = 65000) -> bytes:
    """A valid small JPEG with its SOF dimensions rewritten."""
    data = bytearray(sample(".jpg", 16, 16))
    i = 2
    while True:
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", data, i + 5, height, width)
            return bytes(data)
        i += 2 + length


def bmp_bomb(width: int = 60000, height: int = -60000) -> bytes:
    data = bytearray(sample(".bmp", 8, 8))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def tiff_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A TIFF whose first IFD declares ``width x height`` (uncompressed strips that are not there)."""
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, width * height),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if typ == 3:
            ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, value & 0xFFFFFFFF)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(64)


def bigtiff_header(width: int, height: int) -> bytes:
    entries = [(256, 16, 1, width), (257, 16, 1, height)]
    ifd = struct.pack("<Q", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHQQ", tag, typ, count, value)
    return b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + ifd + struct.pack("<Q", 0)


def webp_bomb(width: int = 16000, height: int = 16000) -> bytes:
    """A WebP (VP8X) declaring a ``width x height`` canvas."""
    vp8x = struct.pack("<I", 0) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pnm_bomb(width: int = 100000, height: int = 100000) -> bytes:
    return f"P5\n{width} {height}\n255\n".encode() + bytes(100)


BOMBS = {
    "png 30000x30000": lambda: png_bomb(30000, 30000),
    "png corrupt 6 KB 20000x20000 rgba16": lambda: png_bomb(20000, 20000, 16, 6, 6000, seed=1),
    "jpeg 65000x65000": jpeg_bomb,
    "bmp 60000x60000": bmp_bomb,
    "tiff 60000x60000": tiff_bomb,
    "bigtiff 1e6x1e6": lambda: bigtiff_header(1_000_000, 1_000_000),
    "webp 16000x16000": webp_bomb,
    "pnm 100000x100000": pnm_bomb,
}
