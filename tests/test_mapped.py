"""Memory-mapped features leave the resident set when released, and lose nothing (bowlrp._utils.mapped)."""

import re
import sys

import numpy as np
import pytest

from bowlrp._utils.mapped import all_finite, blocks, is_mapped, release_pages

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")


def mapping_rss_kb(path) -> int:
    """Resident kB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):  # a mapping's header line
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@linux
def test_released_pages_leave_the_resident_set_and_keep_their_data(tmp_path):
    path = tmp_path / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(512, 8192))  # 16 MiB
    X[:] = np.arange(X.size, dtype=np.float32).reshape(X.shape) % 977
    assert mapping_rss_kb(path) > 15_000  # written pages are resident
    assert release_pages(X[10:20])  # a view releases its whole mapping
    assert mapping_rss_kb(path) < 500
    expected = np.arange(X.size, dtype=np.float32).reshape(X.shape) % 977
    np.testing.assert_array_equal(X, expected)  # mapped again from the file, written data intact
    del X
    R = np.load(path, mmap_mode="r")
    assert float(R.sum(dtype=np.float64)) == float(expected.sum(dtype=np.float64))  # reads every page
    assert mapping_rss_kb(path) > 15_000 and release_pages(R) and mapping_rss_kb(path) < 500
    np.testing.assert_array_equal(R, expected)


def test_what_is_not_released(tmp_path):
    plain = np.ones((4, 4))
    assert not is_mapped(plain) and not release_pages(plain)
    path = tmp_path / "X.npy"
    np.save(path, np.zeros((64, 64), dtype=np.float32))
    C = np.load(path, mmap_mode="c")  # copy-on-write: its changes live only in its pages
    C[0, 0] = 5.0
    assert is_mapped(C) and not release_pages(C)
    assert C[0, 0] == 5.0
    assert is_mapped(np.load(path, mmap_mode="r")[3:5])


def test_blocks_and_all_finite_against_numpy(tmp_path):
    assert list(blocks(10, 40, 100)) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert list(blocks(3, 1000, 10)) == [(0, 1), (1, 2), (2, 3)]  # at least one row per block
    assert list(blocks(0, 8)) == []
    rng = np.random.default_rng(0)
    for bad in (None, (0, 0), (17, 3), (40, 9)):
        X = rng.random((41, 10))
        if bad is not None:
            X[bad] = np.inf if bad[0] % 2 else np.nan
        assert all_finite(X, block_bytes=80 * 4) == bool(np.isfinite(X).all())
        path = tmp_path / f"x{bad}.npy"
        np.save(path, X)
        assert all_finite(np.load(path, mmap_mode="r"), block_bytes=80 * 4) == bool(np.isfinite(X).all())
    assert all_finite(np.array([1.0, 2.0])) and not all_finite(np.array([1.0, np.nan]))
