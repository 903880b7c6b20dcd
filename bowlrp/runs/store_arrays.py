"""Reading a record's arrays from a relevance store without trusting what the store declares.

A store is a folder (or a URL) a stranger may have made: its ``zarr.json``
files declare shapes, chunks and codecs, and zarr allocates what they declare
— a heatmap declared (1, 20000, 20000) without a chunk costs 1.6 GB of fill
value, a 1 MB gzip chunk inflates to 1 GiB. Before any array is read it is
checked against what bowlrp writes (:meth:`bowlrp.runs.store.RelevanceStore.write`):

- the shape is the one the record's attributes imply, within the store's
  budget (the caller passes the expected shape);
- the data type is exactly the expected one, the chunk grid is regular, the
  codecs are ``bytes`` (little endian) optionally followed by ``zstd``: no
  gzip, blosc, sharding or storage transformer, whose decoders are not
  bounded by the chunk's size;
- every chunk that is read is at most its raw size (plus a small margin) on
  disk, and a zstd chunk declares its content size in the frame header, equal
  to the chunk's raw size. zstd decodes into a buffer of the declared size and
  fails if the data is longer, so decoding allocates at most the chunk's
  ``prod(chunk_shape) * itemsize`` bytes, whatever the file holds.

Every refusal is one :class:`StoreError` line naming the array.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..exceptions import BowlrpError

#: a compressed chunk may exceed its raw size by this much (zstd's frame header and block headers)
CHUNK_SLACK = 1 << 16
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_HEADER = 18  # magic 4 + descriptor 1 + window 1 + dictionary id <= 4 + content size <= 8


class StoreArrayError(BowlrpError, ValueError):
    """A record's array is not what bowlrp writes (shape, type, codecs or chunk size)."""


def zstd_content_size(header: bytes) -> int | None:
    """The content size a zstd frame header declares, or None if it declares none.

    Parameters
    ----------
    header : bytes
        The first (up to) 18 bytes of the frame.

    Returns
    -------
    int or None
        ``Frame_Content_Size`` (RFC 8878, section 3.1.1.1): absent when the
        descriptor's ``FCS_flag`` is 0 and ``Single_Segment_flag`` is 0.

    Raises
    ------
    ValueError
        Not a zstd frame (wrong magic number, reserved bit set, too short).
    """
    if len(header) < 6 or header[:4] != _ZSTD_MAGIC:
        raise ValueError("not a zstd frame")
    descriptor = header[4]
    if descriptor & 0x08:
        raise ValueError("reserved bit set in the zstd frame header")
    fcs_flag, single_segment, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    at = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
    size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    if size == 0:
        return None
    if len(header) < at + size:
        raise ValueError("truncated zstd frame header")
    value = int.from_bytes(header[at : at + size], "little")
    return value + 256 if size == 2 else value


def _codec_names(metadata) -> list[str]:
    names = []
    for codec in metadata.codecs:
        d = codec.to_dict()
        names.append(str(d.get("name")))
        if d.get("name") == "bytes" and (d.get("configuration") or {}).get("endian", "little") != "little":
            names[-1] = "bytes (big endian)"
    return names


def checked_array(
    group, name: str, shape: tuple[int, ...], dtype: str, where: str, chunks: tuple[int, ...] | None = None
):
    """``group[name]`` after checking its metadata against what bowlrp writes.

    Parameters
    ----------
    group : zarr.Group
        The record's group.
    name : str
        The array's name in it (``heatmap``, ``pooled``, a curve's method).
    shape : tuple of int
        The shape the record's attributes imply (already within the budget).
    dtype : str
        ``"float32"`` or ``"float64"``.
    where : str
        How messages name the array (``<store>/images/<key>/heatmap``).
    chunks : tuple of int or None
        The chunk shape bowlrp writes for this array (default: one chunk,
        ``shape``). Exactly this is accepted, so the number of chunk files a
        read touches is what bowlrp's own records have.

    Returns
    -------
    zarr.Array

    Raises
    ------
    StoreArrayError
        Missing, or another shape, type, chunk grid or codec chain.
    """
    from zarr.core.metadata.v3 import ArrayV3Metadata  # only for stores: zarr loads in ~0.5 s

    try:
        array = group[name]
    except KeyError:
        raise StoreArrayError(f"{where}: missing; explain the image again") from None
    except Exception as exc:  # noqa: BLE001 - zarr's own errors for metadata it cannot parse
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreArrayError(
            f"{where}: unreadable metadata ({first[:200]}); explain the image again"
        ) from None
    md = array.metadata
    if not isinstance(md, ArrayV3Metadata):
        raise StoreArrayError(f"{where}: not a Zarr v3 array; explain the image again")
    if tuple(md.shape) != tuple(shape):
        raise StoreArrayError(
            f"{where}: declared shape {tuple(md.shape)}, but the record's attributes say {tuple(shape)}; "
            "explain the image again"
        )
    if np.dtype(array.dtype) != np.dtype(dtype) or np.dtype(array.dtype).byteorder == ">":
        raise StoreArrayError(f"{where}: data type {array.dtype}, not {dtype}; explain the image again")
    declared = getattr(md.chunk_grid, "chunk_shape", None)
    if md.chunk_grid.to_dict().get("name") != "regular" or declared is None:
        raise StoreArrayError(f"{where}: not a regular chunk grid; explain the image again")
    expected = tuple(shape if chunks is None else chunks)
    if tuple(declared) != expected:
        raise StoreArrayError(
            f"{where}: chunks {tuple(declared)}, where bowlrp writes {expected}; explain the image again"
        )
    codecs = _codec_names(md)
    if codecs not in (["bytes"], ["bytes", "zstd"]) or md.storage_transformers:
        raise StoreArrayError(
            f"{where}: codecs {codecs}; bowlrp reads only 'bytes' (little endian), optionally with "
            "'zstd' (what it writes); explain the image again"
        )
    return array


def check_chunks(array, chunk_coords, where: str) -> None:
    """Check the chunks about to be read: size on disk, and the raw size a zstd frame declares.

    Parameters
    ----------
    array : zarr.Array
        Checked by :func:`checked_array`.
    chunk_coords : iterable of tuple of int
        The chunks' grid positions (a missing chunk reads as the fill value: fine).
    where : str

    Raises
    ------
    StoreArrayError
        A chunk larger than its raw size plus :data:`CHUNK_SLACK`, or a zstd
        chunk whose frame does not declare exactly its raw size.
    """
    from zarr.abc.store import RangeByteRequest  # only for stores: zarr loads in ~0.5 s
    from zarr.core.buffer import default_buffer_prototype  # as above
    from zarr.core.sync import sync  # as above

    md = array.metadata
    raw = math.prod(md.chunk_grid.chunk_shape) * np.dtype(array.dtype).itemsize
    compressed = _codec_names(md)[-1] == "zstd"
    store, prefix = array.store_path.store, array.store_path.path
    for coords in chunk_coords:
        key = f"{prefix}/{md.encode_chunk_key(tuple(coords))}" if prefix else md.encode_chunk_key(coords)
        try:
            size = sync(store.getsize(key))
        except FileNotFoundError:
            continue
        if size > raw + CHUNK_SLACK:
            raise StoreArrayError(
                f"{where}: a chunk of {size} bytes where at most {raw} are expected; explain the image again"
            )
        if not compressed:
            if size != raw:
                raise StoreArrayError(
                    f"{where}: an uncompressed chunk of {size} bytes, not {raw}; explain the image again"
                )
            continue
        header = sync(
            store.get(key, prototype=default_buffer_prototype(), byte_range=RangeByteRequest(0, _ZSTD_HEADER))
        )
        try:
            declared = zstd_content_size(header.to_bytes() if header is not None else b"")
        except ValueError as exc:
            raise StoreArrayError(f"{where}: a chunk is {exc}; explain the image again") from None
        if declared != raw:
            raise StoreArrayError(
                f"{where}: a zstd chunk declaring {declared if declared is not None else 'no'} bytes of "
                f"content where {raw} are expected; explain the image again"
            )


def read_checked(array, selection: tuple, where: str) -> np.ndarray:
    """``array[selection]`` (integers and full slices) after :func:`check_chunks` on the chunks it touches."""
    md = array.metadata
    chunks = md.chunk_grid.chunk_shape
    ranges = []
    for axis, (n, c) in enumerate(zip(array.shape, chunks)):
        s = selection[axis] if axis < len(selection) else slice(None)
        if isinstance(s, (int, np.integer)):
            ranges.append([int(s) // c])
        else:
            ranges.append(range(math.ceil(n / c)))
    check_chunks(array, itertools.product(*ranges), where)
    return np.asarray(array[selection])
