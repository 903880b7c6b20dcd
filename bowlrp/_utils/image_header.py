"""Image dimensions from file headers, without decoding a single pixel.

:func:`read_header` recognises the formats bowlrp reads (PNG, JPEG, BMP, TIFF
and BigTIFF, WebP, PNM/PAM) from their magic bytes and returns the width and
height the decoder will allocate for, so a pixel limit can be enforced
*before* OpenCV allocates anything: a 6 KB PNG declaring 100,000 x 100,000
pixels is refused here instead of asking for tens of GB.

The parsers are written here (about 150 lines, each tested on files written
by OpenCV and on truncated and corrupted variants) rather than taken from
Pillow's lazy ``Image.open``: the numbers checked are exactly the header
fields OpenCV's decoders size their buffers from (e.g. the first SOF marker
of a JPEG, the first IFD of a TIFF, the VP8X canvas of a WebP); no second
imaging library's format plugins (and their own bugs and exceptions) run on
hostile input; and formats no parser here understands are refused before
OpenCV's other decoders (JPEG 2000, OpenEXR, HDR, ...) see them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["HeaderError", "ImageHeader", "read_header"]


class HeaderError(ValueError):
    """The header is missing, truncated or inconsistent (message without the file name)."""


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _need(data: bytes, end: int, fmt: str) -> None:
    if len(data) < end:
        raise HeaderError(f"truncated {fmt} header")


def _png(data: bytes) -> tuple[int, int]:
    _need(data, 24, "PNG")
    if data[12:16] != b"IHDR":
        raise HeaderError("PNG without an IHDR chunk first")
    return struct.unpack(">II", data[16:24])


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def _jpeg(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while True:
        while i < n and data[i] != 0xFF:  # tolerate garbage between segments, as libjpeg does
            i += 1
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise HeaderError("JPEG without a frame header (SOF)")
        marker = data[i]
        i += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            raise HeaderError("JPEG without a frame header (SOF) before its image data")
        _need(data, i + 2, "JPEG")
        length = struct.unpack(">H", data[i : i + 2])[0]
        if length < 2:
            raise HeaderError("JPEG segment with an invalid length")
        if marker in _SOF:
            _need(data, i + 7, "JPEG")
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            return width, height
        i += length


def _bmp(data: bytes) -> tuple[int, int]:
    _need(data, 18, "BMP")
    dib = struct.unpack("<I", data[14:18])[0]
    if dib == 12:
        _need(data, 22, "BMP")
        return struct.unpack("<HH", data[18:22])
    if dib < 16:
        raise HeaderError("BMP with an unknown header size")
    _need(data, 26, "BMP")
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}


def _tiff(data: bytes) -> tuple[int, int]:
    _need(data, 8, "TIFF")
    e = "<" if data[:2] == b"II" else ">"
    magic = struct.unpack(e + "H", data[2:4])[0]
    if magic == 42:
        offset = struct.unpack(e + "I", data[4:8])[0]
        count_fmt, entry_fmt, entry_size, count_size, value_size = "H", "HHI", 12, 2, 4
    else:  # BigTIFF
        _need(data, 16, "TIFF")
        offset = struct.unpack(e + "Q", data[8:16])[0]
        count_fmt, entry_fmt, entry_size, count_size, value_size = "Q", "HHQ", 20, 8, 8
    _need(data, offset + count_size, "TIFF")
    n_entries = struct.unpack(e + count_fmt, data[offset : offset + count_size])[0]
    found: dict[int, int] = {}
    start = offset + count_size
    _need(data, start + n_entries * entry_size, "TIFF")
    for k in range(n_entries):
        p = start + k * entry_size
        tag, typ, count = struct.unpack(e + entry_fmt, data[p : p + entry_size - value_size])
        if tag in (256, 257) and typ in _TIFF_TYPES and count >= 1:
            code, size = _TIFF_TYPES[typ]
            v = p + entry_size - value_size
            found[tag] = struct.unpack(e + code, data[v : v + size])[0]
    if 256 not in found or 257 not in found:
        raise HeaderError("TIFF without ImageWidth/ImageLength in its first directory")
    return found[256], found[257]


def _webp(data: bytes) -> tuple[int, int]:
    _need(data, 30, "WebP")
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise HeaderError("WebP (VP8) without its start code")
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise HeaderError("WebP (VP8L) without its signature")
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    raise HeaderError("WebP with an unknown first chunk")


def _pnm_tokens(data: bytes, count: int, start: int = 2) -> list[int]:
    tokens, i, n = [], start, min(len(data), 4096)
    while len(tokens) < count:
        while i < n and data[i] in b" \t\r\n\x0b\x0c":
            i += 1
        if i < n and data[i] == ord("#"):
            while i < n and data[i] not in b"\r\n":
                i += 1
            continue
        j = i
        while j < n and data[j] in b"0123456789":
            j += 1
        if j == i or j - i > 12:
            raise HeaderError("PNM header without valid dimensions")
        tokens.append(int(data[i:j]))
        i = j
    return tokens


def _pam(data: bytes) -> tuple[int, int]:
    head = data[:4096]
    end = head.find(b"ENDHDR")
    if end < 0:
        raise HeaderError("PAM header without ENDHDR")
    values = {}
    for line in head[:end].splitlines()[1:]:
        parts = line.split()
        if (
            len(parts) == 2
            and parts[0] in (b"WIDTH", b"HEIGHT")
            and parts[1].isdigit()
            and len(parts[1]) <= 12
        ):
            values[parts[0]] = int(parts[1])
    if b"WIDTH" not in values or b"HEIGHT" not in values:
        raise HeaderError("PAM header without WIDTH and HEIGHT")
    return values[b"WIDTH"], values[b"HEIGHT"]


def _pnm(data: bytes) -> tuple[int, int]:
    if data[1:2] == b"7":
        return _pam(data)
    width, height = _pnm_tokens(data, 2)
    return width, height


def read_header(data: bytes) -> ImageHeader:
    """Format and dimensions from the first bytes of an image file.

    Parameters
    ----------
    data : bytes
        The file's content (at least its header; JPEG needs the bytes up to
        the first SOF marker).

    Returns
    -------
    ImageHeader
        ``format`` (``"PNG"``, ``"JPEG"``, ``"BMP"``, ``"TIFF"``, ``"WebP"``,
        ``"PNM"``), ``width``, ``height`` (both > 0).

    Raises
    ------
    HeaderError
        Unknown format, truncated or inconsistent header, zero dimensions.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        fmt, parse = "PNG", _png
    elif data[:3] == b"\xff\xd8\xff":
        fmt, parse = "JPEG", _jpeg
    elif data[:2] == b"BM":
        fmt, parse = "BMP", _bmp
    elif data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        fmt, parse = "TIFF", _tiff
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        fmt, parse = "WebP", _webp
    elif data[:1] == b"P" and data[1:2] in b"1234567" and len(data) > 2:
        fmt, parse = "PNM", _pnm
    else:
        raise HeaderError("not a PNG, JPEG, BMP, TIFF, WebP or PNM image")
    try:
        width, height = parse(data)
    except struct.error:
        raise HeaderError(f"truncated {fmt} header") from None
    if width <= 0 or height <= 0:
        raise HeaderError(f"{fmt} header declares {width} x {height} pixels")
    return ImageHeader(fmt, int(width), int(height))
