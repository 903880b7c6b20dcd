"""Batch explanation into a folder: naming, streaming, failures, resume, locks, modes."""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from bowlrp import DenseSIFT, KernelSVC, Pipeline, RankMapping, save
from bowlrp._utils.lock import LOCK_NAME, FolderLock, LockedError
from bowlrp.runs.folder import explain_to_folder
from bowlrp.runs.folder_layout import output_paths
from bowlrp.runs.inputs import InputError, collect_inputs
from bowlrp.runs.step import SettingsMismatch


@pytest.fixture(scope="module")
def model(stripes_blobs):
    train, y, _, _ = stripes_blobs
    return Pipeline(
        [("sift", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"), RankMapping(16))],
        KernelSVC("hik"),
        random_state=0,
    ).fit(train, np.array(["blobs", "stripes"])[y])


@pytest.fixture()
def png(stripes_blobs):
    _, _, test, _ = stripes_blobs

    def write(path, i=0):
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".png", (test[i] * 255).astype(np.uint8))
        with open(path, "wb") as fh:  # no path through OpenCV (non-UTF-8 names)
            fh.write(buf.tobytes())
        return path

    return write


def _run(model, specs, out, **kw):
    return explain_to_folder(
        model,
        collect_inputs([str(s) for s in specs]),
        out,
        run_key={"model_sha256": "x"},
        progress=False,
        **kw,
    )


def test_ids_mirror_the_tree_and_never_collide(png, tmp_path):
    a, b = png(tmp_path / "d1" / "a.png"), png(tmp_path / "d2" / "a.png")
    c, d = png(tmp_path / "d1" / "a_1.png"), png(tmp_path / "d1" / "x.png")
    e = png(tmp_path / "d1" / "x.jpg")
    ids = {
        i.path.name if i.path.parent.name == "d1" else "d2/" + i.path.name: i.id
        for i in collect_inputs([str(a), str(b), str(c), str(d), str(e)])
    }
    assert ids == {
        "a.png": "d1/a",
        "d2/a.png": "d2/a",
        "a_1.png": "d1/a_1",
        "x.png": "d1/x.png",
        "x.jpg": "d1/x.jpg",
    }
    assert len({i.id for i in collect_inputs([str(tmp_path)])}) == 5
    assert {i.id for i in collect_inputs([str(tmp_path / "d1")])} == {"a", "a_1", "x.png", "x.jpg"}


def test_literal_names_beat_globs_and_empty_names_fail(png, tmp_path):
    literal = png(tmp_path / "scan[1].png")
    png(tmp_path / "scan1.png")
    assert [i.path.name for i in collect_inputs([str(literal)])] == ["scan[1].png"]
    assert len(collect_inputs([str(tmp_path / "scan*.png")])) == 2
    with pytest.raises(InputError, match="empty image name"):
        collect_inputs([""])
    with pytest.raises(InputError, match="no images"):
        (tmp_path / "empty").mkdir()
        collect_inputs([str(tmp_path / "empty")])


def test_outputs_stream_and_a_failure_does_not_stop_the_run(model, png, tmp_path):
    png(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    png(tmp_path / "in" / "c.png", 1)
    lines = []
    summary = _run(model, [tmp_path / "in"], tmp_path / "out", report=lines.append)
    assert summary.explained == ["a", "c"] and [f["id"] for f in summary.failed] == ["b"]
    assert "b.png" in summary.failed[0]["error"] and "\n" not in summary.failed[0]["error"]
    for name in ("a", "c"):
        assert all(p.is_file() for p in output_paths(tmp_path / "out", name).values())
    assert not any(p.exists() for p in output_paths(tmp_path / "out", "b").values())
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["status"] == "failed" and run["explained"] == 2
    assert not list((tmp_path / "out").glob(".*"))  # no temporaries, lock released


def test_rerun_skips_finished_and_refuses_other_settings(model, png, tmp_path):
    png(tmp_path / "in" / "a.png")
    first = _run(model, [tmp_path / "in"], tmp_path / "out")
    stamp = (tmp_path / "out" / "a.json").stat().st_mtime_ns
    again = _run(model, [tmp_path / "in"], tmp_path / "out")
    assert first.explained == ["a"] and again.skipped == ["a"] and not again.explained
    assert (tmp_path / "out" / "a.json").stat().st_mtime_ns == stamp
    with pytest.raises(SettingsMismatch, match="differs in colormap"):
        _run(model, [tmp_path / "in"], tmp_path / "out", colormap="jet")
    assert (tmp_path / "out" / "a.json").stat().st_mtime_ns == stamp
    redo = _run(model, [tmp_path / "in"], tmp_path / "out", colormap="jet", overwrite=True)
    assert redo.explained == ["a"]


def test_global_normalisation_draws_pictures_after_all_maps(model, png, tmp_path):
    png(tmp_path / "in" / "a.png")
    png(tmp_path / "in" / "b.png", 1)
    summary = _run(model, [tmp_path / "in"], tmp_path / "out", normalize="global")
    assert summary.explained == ["a", "b"]
    assert all(p.is_file() for n in "ab" for p in output_paths(tmp_path / "out", n).values())


def test_outputs_honour_the_umask(model, png, tmp_path):
    png(tmp_path / "in" / "a.png")
    old = os.umask(0o022)
    try:
        _run(model, [tmp_path / "in"], tmp_path / "out")
    finally:
        os.umask(old)
    for p in output_paths(tmp_path / "out", "a").values():
        assert p.stat().st_mode & 0o777 == 0o644, p


def test_non_utf8_file_names_read_and_write(model, png, tmp_path):
    folder = os.fsencode(tmp_path / "in")
    os.makedirs(folder)
    name = os.path.join(folder, b"caf\xe9.png")  # latin-1 byte: not UTF-8
    png(tmp_path / "in" / "tmp.png")
    os.rename(os.path.join(folder, b"tmp.png"), name)
    summary = _run(model, [tmp_path / "in"], os.fsdecode(os.fsencode(tmp_path / "out")))
    assert len(summary.explained) == 1 and not summary.failed
    written = os.listdir(os.fsencode(tmp_path / "out"))
    assert b"caf\xe9_heatmap.png" in written and b"caf\xe9.json" in written


def test_the_folder_lock_refuses_a_live_run_and_takes_over_a_dead_one(tmp_path):
    with FolderLock(tmp_path, "first"), pytest.raises(LockedError, match="in use by first"):
        FolderLock(tmp_path, "second").acquire()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename, "program": "killed"})
    )
    with FolderLock(tmp_path, "third"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["program"] == "third"
    assert not (tmp_path / LOCK_NAME).exists()


def _complete(out):
    """Every visible output belongs to an image whose record exists, and no temporaries remain."""
    records = {p.name[:-5] for p in out.glob("*.json") if p.name != "run.json"}
    for p in out.iterdir():
        if p.name in ("run.json",) or p.name.startswith("."):
            continue
        stem = p.name
        for suffix in ("_heatmap.png", "_overlay.png", "_relevance.npy", ".json"):
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        if stem not in records:
            return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_leaves_only_complete_outputs_and_resumes(sig, model, png, tmp_path):
    for i in range(12):
        png(tmp_path / "in" / f"im{i:02d}.png", i)
    model_path = save(model, tmp_path / "m.pkl")
    cmd = [
        sys.executable,
        "-m",
        "bowlrp.explain",
        "-i",
        str(tmp_path / "in"),
        "-m",
        str(model_path),
        "-o",
        str(tmp_path / "out"),
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((tmp_path / "out").glob("im*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (130, -9), err
    assert b"Traceback" not in err
    out = tmp_path / "out"
    assert _complete(out)
    if sig == signal.SIGINT:
        assert not list(out.glob(".*")), list(out.glob(".*"))
        assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    done_before = {p.name for p in out.glob("im*.json")}
    again = subprocess.run(cmd, capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert len(list(out.glob("im*.json"))) == 12 and not list(out.glob(".*"))
    run = json.loads((out / "run.json").read_text())
    assert run["skipped"] >= len(done_before) and run["explained"] + run["skipped"] == 12


def test_a_reader_that_goes_away_does_not_stop_the_run(model, png, tmp_path):
    for i in range(3):
        png(tmp_path / "in" / f"im{i}.png", i)
    model_path = save(model, tmp_path / "m.pkl")
    out = tmp_path / "in" / "explained"  # inside the input folder: never taken as input
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bowlrp.explain",
            "-i",
            str(tmp_path / "in"),
            "-m",
            str(model_path),
            "-o",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.readline()
    proc.stdout.close()  # like `bowlrp-explain ... | head -1`
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err
    assert sorted(p.name for p in out.glob("*.json")) == ["im0.json", "im1.json", "im2.json", "run.json"]
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "bowlrp.explain",
            "-i",
            str(tmp_path / "in"),
            "-m",
            str(model_path),
            "-o",
            str(out),
            "-q",
        ],
        capture_output=True,
        timeout=300,
    )
    assert again.returncode == 0 and json.loads((out / "run.json").read_text())["total"] == 3
