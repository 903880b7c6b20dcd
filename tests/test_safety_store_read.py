"""Reading a relevance store costs what its records are, not what its ``zarr.json`` files declare
(issue 24, finding 8).

- 4269499 read a record's arrays as declared: three ``zarr.json`` files declaring
  (1, 20000, 20000) heatmaps without a chunk drove ``bowlrp-spray --store`` to
  4.86 GB (zarr allocated the fill value, and the report kept every record's
  heatmaps in memory); a 1 MB gzip chunk that inflates to 1 GiB peaked at 991 MB.
- Now a record may hold at most ``BOWLRP_MAX_IMAGE_PIXELS`` heatmap values; an
  array's declared shape must be the one its record's attributes imply, its type,
  chunks and codecs what bowlrp writes (``bytes`` + ``zstd``), each chunk at most
  its raw size on disk and a zstd chunk must declare exactly its raw size (zstd
  then never writes past it); SpRAy reads one heatmap at a time.

Every hostile store here is a normal store written by bowlrp and then edited.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from numcodecs import Zstd

import bowlrp.runs.store
from bowlrp._utils.validation import set_image_limits
from bowlrp.runs.store import RelevanceStore, StoreError, id_to_key, store_lock
from bowlrp.runs.store_arrays import zstd_content_size
from tests.test_safety_store_links import _Explanation, _item


def _store(path: Path, ids=("x", "y", "z")) -> Path:
    with store_lock(path, "test"):
        store = RelevanceStore.create(path, {"m": 1})
        for i, image_id in enumerate(ids):
            store.write(_item(image_id), [_Explanation(1.0 + i)], model_hash="h")
    return path


def _array_dir(store: Path, image_id: str, name: str) -> Path:
    return store / "images" / id_to_key(image_id) / name


def _edit_json(path: Path, change) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _declare_huge(store: Path, image_id: str, side: int = 20000) -> None:
    """The record and its heatmap declare a (1, side, side) map; the chunk is removed (fill value)."""
    rec = store / "images" / id_to_key(image_id) / "zarr.json"
    _edit_json(rec, lambda m: m["attributes"].update(shape=[side, side]))
    heat = _array_dir(store, image_id, "heatmap")

    def change(m):
        m["shape"] = [1, side, side]
        m["chunk_grid"]["configuration"]["chunk_shape"] = [1, side, side]

    _edit_json(heat / "zarr.json", change)
    for chunk in (heat / "c").rglob("*"):
        if chunk.is_file():
            chunk.unlink()


def test_declared_shapes_beyond_the_budget_are_refused_before_anything_is_allocated(tmp_path):
    store_path = _store(tmp_path / "s.zarr")
    _declare_huge(store_path, "x")
    store = bowlrp.runs.store.open(store_path)
    with pytest.raises(StoreError, match=r"1 heatmap\(s\) of 20000 x 20000 .*BOWLRP_MAX_IMAGE_PIXELS"):
        store["x"]
    with pytest.raises(StoreError, match="BOWLRP_MAX_IMAGE_PIXELS"):
        store.heatmap("x")
    assert store["y"].heatmap.shape == (8, 8)  # the other records read as before


def test_the_budget_follows_the_image_limit(tmp_path):
    store = bowlrp.runs.store.open(_store(tmp_path / "s.zarr"))
    previous = set_image_limits(max_pixels=63)
    try:
        with pytest.raises(StoreError, match="64 values, more than the limit of 63"):
            store["x"]
    finally:
        set_image_limits(**previous)
    assert store["x"].heatmap.shape == (8, 8)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(shape=[1, 8, 9]), r"declared shape \(1, 8, 9\), but the record's attributes say"),
        (lambda m: m.update(data_type="float64"), "data type float64, not float32"),
        (lambda m: m["chunk_grid"]["configuration"].update(chunk_shape=[1, 1, 1]), r"chunks \(1, 1, 1\)"),
        (
            lambda m: m.update(
                codecs=[
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "gzip", "configuration": {"level": 1}},
                ]
            ),
            "codecs",
        ),
        (
            lambda m: m.update(codecs=[{"name": "bytes", "configuration": {"endian": "big"}}]),
            "codecs",
        ),
    ],
    ids=["shape", "dtype", "chunks", "gzip", "big-endian"],
)
def test_arrays_must_be_what_bowlrp_writes(tmp_path, change, message):
    store_path = _store(tmp_path / "s.zarr")
    _edit_json(_array_dir(store_path, "x", "heatmap") / "zarr.json", change)
    with pytest.raises(StoreError, match=message):
        bowlrp.runs.store.open(store_path)["x"]


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """The 4269499 case: gzip codec, a small chunk that inflates to far more than the array."""
    store_path = _store(tmp_path / "s.zarr")
    heat = _array_dir(store_path, "x", "heatmap")
    _edit_json(
        heat / "zarr.json",
        lambda m: m.update(codecs=[{"name": "bytes"}, {"name": "gzip", "configuration": {"level": 1}}]),
    )
    (heat / "c" / "0" / "0" / "0").write_bytes(gzip.compress(bytes(64 << 20), compresslevel=1))
    with pytest.raises(StoreError, match=r"codecs \['bytes', 'gzip'\]"):
        bowlrp.runs.store.open(store_path)["x"]


def test_zstd_chunks_must_declare_their_raw_size(tmp_path):
    store_path = _store(tmp_path / "s.zarr")
    chunk = _array_dir(store_path, "x", "heatmap") / "c" / "0" / "0" / "0"
    chunk.write_bytes(Zstd().encode(bytes(16 << 20)))  # 16 MiB of zeros in ~1 kB, declared in the frame
    store = bowlrp.runs.store.open(store_path)
    with pytest.raises(StoreError, match="declaring 16777216 bytes of content where 256 are expected"):
        store["x"]
    chunk.write_bytes(b"\x00" * (300 << 10))  # larger than any chunk of 256 bytes can be
    with pytest.raises(StoreError, match=r"a chunk of 307200 bytes where at most 256"):
        store["x"]
    chunk.write_bytes(b"not zstd at all")
    with pytest.raises(StoreError, match="not a zstd frame"):
        store["x"]


def test_zstd_frame_header_is_read_as_rfc_8878_says():
    for size in (0, 1, 255, 256, 300, 65791, 65792, 1 << 20, (1 << 32) + 5):
        frame = Zstd().encode(bytes(size)) if size < (1 << 21) else None
        if frame is not None:
            assert zstd_content_size(frame[:18]) == size
    # a frame header without a content size: descriptor 0 (no single segment), window byte, no FCS
    assert zstd_content_size(b"\x28\xb5\x2f\xfd\x00\x58") is None
    # 8-byte content size
    assert zstd_content_size(b"\x28\xb5\x2f\xfd\xe0" + ((1 << 32) + 5).to_bytes(8, "little")) == (1 << 32) + 5
    with pytest.raises(ValueError, match="reserved"):
        zstd_content_size(b"\x28\xb5\x2f\xfd\x08\x00")
    with pytest.raises(ValueError, match="not a zstd frame"):
        zstd_content_size(b"\x1f\x8b\x08\x00\x00\x00")


def test_metadata_zarr_cannot_parse_is_one_store_error(tmp_path):
    store_path = _store(tmp_path / "s.zarr")
    _edit_json(_array_dir(store_path, "x", "heatmap") / "zarr.json", lambda m: m.update(codecs=[{"name": 7}]))
    with pytest.raises(StoreError, match="heatmap: unreadable metadata"):
        bowlrp.runs.store.open(store_path)["x"]


def test_grid_and_curves_are_bounded(tmp_path):
    store_path = _store(tmp_path / "s.zarr")
    _edit_json(store_path / "zarr.json", lambda m: m["attributes"].update(grid=10**6))
    store = bowlrp.runs.store.open(store_path)
    with pytest.raises(StoreError, match=r"pooling grid of 1000000, not a whole number in \[1, 1024\]"):
        store.pooled_maps()


# the child's own high-water RSS (VmHWM): its ru_maxrss would include the forked pytest's RSS
SPRAY_PEAK = textwrap.dedent(
    """
    import sys
    from bowlrp.cli.spray import main
    code = main(sys.argv[1:])
    with open("/proc/self/status") as fh:
        peak = next(line.split()[1] for line in fh if line.startswith("VmHWM:"))
    print("PEAK_KB", peak, file=sys.stderr)
    sys.exit(code)
    """
)


def test_spray_on_a_store_declaring_huge_heatmaps_skips_them_in_bounded_memory(tmp_path):
    """The issue's case: three records declaring (1, 20000, 20000) (4.86 GB at 4269499)."""
    ids = [f"im{i}" for i in range(8)]
    store_path = _store(tmp_path / "s.zarr", ids)
    for image_id in ids[:3]:
        _declare_huge(store_path, image_id)
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-c", SPRAY_PEAK, "--store", str(store_path), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    peak_mb = int(proc.stderr.rsplit("PEAK_KB", 1)[1].split()[0]) / 1024
    assert peak_mb < 1024, (peak_mb, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if "20000 x 20000" in line]
    assert len(lines) == 3, proc.stderr
    assert proc.returncode == 1, proc.stderr  # records skipped: reported, and the exit code says so
