"""Every error one line, with the right exit code (issue 24, finding 14).

OpenCV and libpng wrote their own lines to fd 2 (``[ WARN:0@3.7] global grfmt_png.cpp:793
readFromStreamOrBuffer PNG input buffer is incomplete``, ``libpng error: bad adaptive filter
value``), error lines were glued to progress bars (``images:  20%|██ | 1/5 ...
bowlrp-evaluate: error: ...``), and ``--scheduler`` pointed at an HTTP server hung. The
programs run in subprocesses: native code writes to fd 2 directly, which only a
subprocess's stderr shows.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import bowlrp
from tests.test_cli import model_file  # noqa: F401 - fixture

ROOT = Path(bowlrp.__file__).resolve().parent.parent


def _run(module: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("OPENCV_LOG_LEVEL", None)
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _png(picture: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", picture)
    assert ok
    return buf.tobytes()


def _good(rng, n=48) -> np.ndarray:
    return (rng.random((n, n)) * 255).astype(np.uint8)


def _corrupt_idat(data: bytes) -> bytes:
    """The same PNG with its compressed pixel data scrambled and the chunk's CRC made valid again."""
    d = bytearray(data)
    i = d.find(b"IDAT")
    n = struct.unpack(">I", d[i - 4 : i])[0]
    for k in range(i + 4 + 10, i + 4 + n - 10):
        d[k] ^= 0x5A
    d[i + 4 + n : i + 8 + n] = struct.pack(">I", zlib.crc32(bytes(d[i : i + 4 + n])) & 0xFFFFFFFF)
    return bytes(d)


def _visible(line: str) -> str:
    """What a terminal shows of one line: the text after its last carriage return, cursor moves dropped."""
    return line.rsplit("\r", 1)[-1].replace("\x1b[A", "")


def test_broken_pngs_fail_in_one_line_without_opencv_or_libpng_chatter(model_file, tmp_path):  # noqa: F811
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.png").write_bytes(_png(_good(rng)))
    whole = _png(_good(rng))
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "scrambled.png").write_bytes(_corrupt_idat(_png(_good(rng))))
    assert cv2.imdecode(np.frombuffer(_corrupt_idat(whole), np.uint8), cv2.IMREAD_UNCHANGED) is None

    r = _run("bowlrp.explain", "--image", folder, "--model", model_file, "--out", tmp_path / "out", "-q")

    assert r.returncode == 1, r.stderr
    assert "[ WARN" not in r.stderr and "-215" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert lines and all(line.startswith(("error: ", "bowlrp-explain: ")) for line in lines), r.stderr
    failures = {
        f["id"]: f["error"] for f in json.loads((tmp_path / "out" / "run.json").read_text())["failed"]
    }
    assert set(failures) == {"truncated", "scrambled"}
    for name, message in failures.items():
        assert "\n" not in message and f"{name}.png" in message and "cannot be decoded" in message
        assert "[ WARN" not in message and "-215" not in message
    for name in ("truncated", "scrambled"):
        assert sum(f"{name}.png" in line for line in lines) == 1, r.stderr


def test_an_error_during_a_progress_bar_starts_its_own_line(model_file, tmp_path):  # noqa: F811
    rng = np.random.default_rng(1)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(_png(_good(rng)))
    (folder / "b_tiny.png").write_bytes(_png(np.full((1, 1), 128, np.uint8)))  # fails in Python, mid-run
    (folder / "c.png").write_bytes(_png(_good(rng)))

    r = _run(
        "bowlrp.evaluate",
        "--model",
        model_file,
        "--images",
        folder,
        "--methods",
        "random",
        "--steps",
        "2",
        "--repeats",
        "1",
        "--out",
        tmp_path / "eval",
    )

    assert r.returncode == 1, r.stderr
    assert "|" in r.stderr  # the bars were drawn (tqdm draws them on a pipe too)
    erroring = [line for line in r.stderr.split("\n") if "error:" in line]
    assert any("b_tiny.png" in line for line in erroring), r.stderr
    for line in erroring:
        shown = _visible(line)
        assert shown.startswith(("bowlrp-evaluate: ", "error: ")), repr(line)


@pytest.fixture()
def http_address():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_scheduler_address_of_an_http_server_is_one_line_exit_2(model_file, tmp_path, http_address):  # noqa: F811
    image = tmp_path / "a.png"
    image.write_bytes(_png(_good(np.random.default_rng(2))))

    r = _run(
        "bowlrp.explain",
        "--image",
        image,
        "--model",
        model_file,
        "--store",
        tmp_path / "s.zarr",
        "--scheduler",
        http_address,
        timeout=60,
    )

    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("bowlrp-explain: error: ") and "EiB" not in lines[0]
    assert http_address in lines[0] and "not a Dask scheduler" in lines[0]
    assert not (tmp_path / "s.zarr").exists()  # the scheduler is checked before the store is made


def test_an_unreachable_scheduler_leaves_no_evaluation_store(model_file, tmp_path):  # noqa: F811
    image = tmp_path / "a.png"
    image.write_bytes(_png(_good(np.random.default_rng(2))))
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    r = _run(
        "bowlrp.evaluate",
        "--image",
        image,
        "--model",
        model_file,
        "--store",
        tmp_path / "e.zarr",
        "--scheduler",
        f"tcp://127.0.0.1:{port}",
        "--quiet",  # no cost line: the error is all it says
        timeout=60,
    )

    assert r.returncode == 2, r.stderr
    assert "Dask scheduler" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert not (tmp_path / "e.zarr").exists()
