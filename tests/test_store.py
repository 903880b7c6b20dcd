"""The relevance store (serial path): records, atomicity, resume, failures, locks, hostile ids, CLIs."""

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bowlrp.runs.store
from bowlrp import DenseSIFT, KernelSVC, Pipeline, RankMapping, save
from bowlrp._utils.lock import FolderLock, LockedError
from bowlrp.runs.distributed import explain_to_store
from bowlrp.runs.folder import explain_to_folder
from bowlrp.runs.folder_layout import output_paths
from bowlrp.runs.inputs import ImageInput, collect_inputs
from bowlrp.runs.store import RelevanceStore, StoreMismatch, id_to_key


@pytest.fixture(scope="module")
def model(stripes_blobs):
    train, y, _, _ = stripes_blobs
    return Pipeline(
        [("sift", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"), RankMapping(16, random_state=0))],
        KernelSVC("hik"),
        random_state=0,
    ).fit(train, np.array(["blobs", "stripes"])[y])


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    return save(model, tmp_path_factory.mktemp("model") / "m.skops")


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", (image * 255).astype(np.uint8))
    path.write_bytes(buf.tobytes())
    return path


@pytest.fixture()
def folder(stripes_blobs, tmp_path):
    _, _, test, _ = stripes_blobs
    d = tmp_path / "in"
    for i in range(6):
        write_png(d / ("sub" if i % 2 else ".") / f"im{i}.png", test[i * 5])
    return d


def test_records_hold_every_target_conserve_and_pool_by_sums(model, folder, tmp_path):
    out = tmp_path / "out.zarr"
    summary = explain_to_store([str(folder)], model, out, targets=["blobs", "stripes"], progress=False)
    assert summary.status == "complete" and len(summary.explained) == 6
    store = bowlrp.runs.store.open(out)
    assert len(store) == 6 and sorted(store.ids()) == sorted(i.id for i in collect_inputs([str(folder)]))
    assert "sub/im1" in store.ids() and "sub/im1" in store and "im1" not in store
    rec = store["sub/im1"]
    assert rec.targets == ["blobs", "stripes"] and rec.heatmaps.shape == (2, 64, 64)
    assert rec.heatmap.dtype == np.float32 and rec.path.endswith("im1.png")
    assert rec.model_hash == summary.run_key["model_sha256"]
    fresh = model.explain([str(folder / "sub" / "im1.png")], target=["blobs", "stripes"])[0]
    for t, e in enumerate(fresh):
        assert np.array_equal(rec.heatmaps[t], e.heatmap.astype(np.float32))
        assert rec.scores[t] == e.score and rec.residuals[t] == e.residual
        assert rec.bias_relevances[t] == e.bias_relevance and rec.absorbeds[t] == e.absorbed
        total = rec.meta["heatmap_sum"][t] + rec.bias_relevances[t] + rec.absorbeds[t] + rec.residuals[t]
        assert total == pytest.approx(rec.scores[t], abs=1e-9)
        # sum pooling 64 x 64 -> 32 x 32: plain NumPy reference, 2 x 2 block sums of the float64 map
        reference = e.heatmap.reshape(32, 2, 32, 2).sum(axis=(1, 3))
        np.testing.assert_allclose(rec.pooled[t], reference, rtol=1e-12, atol=1e-15)
    ids, pooled = store.pooled_maps("stripes")
    assert len(ids) == 6 and pooled.shape == (6, 32, 32)
    assert np.array_equal(pooled[ids.index("sub/im1")], rec.pooled[1])
    assert store.pooled_maps("no such class")[1].shape == (0, 32, 32)
    assert store.targets() == ["blobs", "stripes"] and store.failures() == []


def test_store_maps_equal_the_folder_outputs(model, folder, tmp_path):
    inputs = collect_inputs([str(folder)])
    explain_to_folder(model, inputs, tmp_path / "files", run_key={"m": 1}, progress=False)
    explain_to_store(inputs, model, tmp_path / "s.zarr", progress=False)
    store = bowlrp.runs.store.open(tmp_path / "s.zarr")
    for item in inputs:
        raw = np.load(output_paths(tmp_path / "files", item.id)["relevance"])
        assert np.array_equal(store[item.id].heatmap, raw.astype(np.float32))


def test_half_written_records_are_ignored_and_rewritten(model, folder, tmp_path):
    out = tmp_path / "s.zarr"
    explain_to_store([str(folder)], model, out, progress=False)
    root = RelevanceStore.open(out, "r+").root
    group = root["images"][id_to_key("im0")]
    group.update_attributes({"done": False})  # as if killed before the marker
    del group["pooled"]  # and before the second array
    store = bowlrp.runs.store.open(out)
    assert "im0" not in store and len(store) == 5 and "im0" not in store.ids()
    with pytest.raises(KeyError, match="no finished record"):
        store["im0"]
    summary = explain_to_store([str(folder)], model, out, progress=False)
    assert summary.explained == ["im0"] and len(summary.skipped) == 5
    reopened = bowlrp.runs.store.open(out)
    assert len(reopened) == 6 and reopened["im0"].pooled.shape == (1, 32, 32)


def test_a_bad_image_is_recorded_and_the_run_goes_on(model, folder, tmp_path, stripes_blobs):
    bad = folder / "zz_bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "s.zarr"
    summary = explain_to_store([str(folder)], model, out, progress=False)
    assert summary.status == "failed" and len(summary.explained) == 6
    (failure,) = bowlrp.runs.store.open(out).failures()
    assert failure["id"] == "zz_bad" and "zz_bad.png" in failure["error"] and "\n" not in failure["error"]
    write_png(bad, stripes_blobs[2][0])  # repaired: the rerun explains it, failure gone
    summary = explain_to_store([str(folder)], model, out, progress=False)
    assert summary.explained == ["zz_bad"] and bowlrp.runs.store.open(out).failures() == []


def test_other_settings_are_refused_and_a_locked_store_too(model, folder, tmp_path):
    out = tmp_path / "s.zarr"
    explain_to_store([str(folder)], model, out, progress=False)
    with pytest.raises(StoreMismatch, match="differs in targets"):
        explain_to_store([str(folder)], model, out, targets="stripes", progress=False)
    with pytest.raises(StoreMismatch, match="grid"):
        explain_to_store([str(folder)], model, out, grid=8, progress=False)
    with FolderLock(out, "another-run"), pytest.raises(LockedError, match="in use by another-run"):
        explain_to_store([str(folder)], model, out, progress=False)
    summary = explain_to_store([str(folder)], model, out, targets="stripes", overwrite=True, progress=False)
    assert len(summary.explained) == 6 and bowlrp.runs.store.open(out).targets() == ["stripes"]
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("x")
    with pytest.raises(bowlrp.runs.store.StoreError, match="not a Zarr store"):
        explain_to_store([str(folder)], model, tmp_path / "plain", progress=False)
    with pytest.raises(bowlrp.runs.store.StoreError, match="not a bowlrp relevance store|cannot open"):
        bowlrp.runs.store.open(tmp_path / "plain")


def test_a_rerun_removes_the_temporaries_a_killed_run_left(model, folder, tmp_path):
    out = tmp_path / "s.zarr"
    explain_to_store([str(folder)], model, out, progress=False)
    store = bowlrp.runs.store.open(out)
    first = store.ids()[0]
    chunk_dir = out / "images" / id_to_key(first) / "heatmap"
    orphan = chunk_dir / ("c." + "0123456789abcdef" * 2 + ".partial")  # as zarr names them
    orphan.write_bytes(b"half a chunk")
    kept = chunk_dir / "notes.partial"  # not zarr's: left alone
    kept.write_text("x")
    before = store[first].heatmap.copy()
    summary = explain_to_store([str(folder)], model, out, progress=False)
    assert not orphan.exists() and kept.exists()
    assert len(summary.explained) == 0 and len(summary.skipped) == 6
    np.testing.assert_array_equal(bowlrp.runs.store.open(out)[first].heatmap, before)


HOSTILE = [
    "../x",
    "..",
    ".",
    "a/../../b",
    "__meta",
    "a b%2f",
    "zarr.json",
    "x" * 400,
    "ünï/cödé",
    "a\udcff",
    "con",
    "-",
    "_2e",
]


@given(st.text(min_size=1, max_size=60))
def test_keys_are_flat_safe_and_injective(text):
    key = id_to_key(text)
    assert "/" not in key and key not in (".", "..") and not key.startswith("__") and len(key) <= 180
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    if len(text.encode("utf-8", "surrogateescape")) < 40:
        assert id_to_key(text + "x") != key and id_to_key("." + text) != key


def test_hostile_ids_stay_inside_the_store(model, stripes_blobs, tmp_path):
    image = write_png(tmp_path / "x.png", stripes_blobs[2][0])
    assert len({id_to_key(i) for i in HOSTILE}) == len(HOSTILE)
    out = tmp_path / "deep" / "s.zarr"
    items = [ImageInput(image, i) for i in HOSTILE]
    explain_to_store(items, model, out, progress=False)
    store = bowlrp.runs.store.open(out)
    assert sorted(store.ids()) == sorted(HOSTILE) and len(store) == len(HOSTILE)
    assert np.array_equal(store["../x"].heatmap, store["x" * 400].heatmap)
    outside = {p.name for p in (tmp_path / "deep").iterdir()} | {p.name for p in tmp_path.iterdir()}
    assert outside == {"s.zarr", "x.png", "deep"}
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
    with pytest.raises(bowlrp.runs.store.StoreError):
        id_to_key("")


def _main(capsys, program, *args):
    import importlib

    code = importlib.import_module(f"bowlrp.cli.{program}").main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_store_resume_and_spray(model_file, folder, tmp_path, capsys):
    out = tmp_path / "s.zarr"
    code, _, err = _main(
        capsys,
        "explain",
        "-i",
        folder,
        "-m",
        model_file,
        "--store",
        out,
        "-t",
        "blobs",
        "-t",
        "stripes",
        "-q",
    )
    assert code == 0, err
    assert not list(tmp_path.glob("*.png")) and not list(folder.glob("*.json"))
    code, stdout, err = _main(
        capsys, "explain", "-i", folder, "-m", model_file, "--store", out, "-t", "0", "-t", "1"
    )
    assert code == 0 and "0 explained, 6 done before" in stdout, err
    code, _, err = _main(capsys, "explain", "-i", folder, "-m", model_file, "--store", out, "-q")
    assert code == 2 and err.count("\n") == 1 and "differs in targets" in err
    code, _, err = _main(capsys, "explain", "-i", folder, "-m", model_file, "--workers", "2", "-q")
    assert code == 2 and "need --store" in err
    code, stdout, err = _main(
        capsys, "spray", "--store", out, "--out", tmp_path / "report", "-t", "stripes", "-q"
    )
    assert code == 0, err
    assert "class stripes: 6 maps" in stdout and (tmp_path / "report" / "index.html").is_file()
    rows = (tmp_path / "report" / "clusters.csv").read_text().splitlines()
    assert len(rows) == 7 and "s.zarr/images/" in rows[1]


@pytest.mark.slow  # the fast subset: test_other_settings_are_refused_and_a_locked_store_too
def test_a_second_run_on_a_store_is_refused(model_file, folder, tmp_path, capsys):
    out = tmp_path / "s.zarr"
    for i in range(6, 40):
        write_png(folder / f"more{i}.png", np.random.default_rng(i).random((64, 64)))
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bowlrp.explain",
            "-i",
            str(folder),
            "-m",
            str(model_file),
            "--store",
            str(out),
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (out / ".bowlrp.lock").exists():
            time.sleep(0.01)
        code, _, err = _main(capsys, "explain", "-i", folder, "-m", model_file, "--store", out, "-q")
        assert first.poll() is None, "the first run ended before the second started"
        assert code == 2 and err.count("\n") == 1
        assert "in use by bowlrp-explain" in err and f"pid {first.pid}" in err
    finally:
        first.wait(timeout=300)
    assert first.returncode == 0 and len(bowlrp.runs.store.open(out)) == 40


def test_kill_9_of_a_serial_run_then_resume(model_file, model, folder, tmp_path):
    for i in range(6, 30):
        write_png(folder / f"more{i}.png", np.random.default_rng(i).random((64, 64)))
    out = tmp_path / "s.zarr"
    cmd = [
        sys.executable,
        "-m",
        "bowlrp.explain",
        "-i",
        str(folder),
        "-m",
        str(model_file),
        "--store",
        str(out),
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while (
        time.time() < deadline and proc.poll() is None and len(list((out / "images").glob("*/heatmap"))) < 3
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    done_before = set(RelevanceStore.open(out).ids()) if (out / "zarr.json").exists() else set()
    assert len(done_before) < 30, "the run ended before it was killed; nothing was tested"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    store = bowlrp.runs.store.open(out)
    assert len(store) == 30 and len(set(store.ids())) == 30
    for image_id in store.ids():
        rec = store[image_id]
        fresh = model.explain([rec.path])[0]
        assert np.array_equal(rec.heatmap, fresh.heatmap.astype(np.float32)), image_id
        assert rec.pooled.shape == (1, 32, 32)
    assert not os.path.exists(out / ".bowlrp.lock")


def test_files_and_a_store_from_one_loop(model_file, folder, tmp_path, capsys):
    out, files = tmp_path / "s.zarr", tmp_path / "files"
    code, _, err = _main(capsys, "explain", "-i", folder, "-m", model_file, "--store", out, "-o", files, "-q")
    assert code == 0, err
    store = bowlrp.runs.store.open(out)
    assert len(store) == 6
    for image_id in store.ids():
        raw = np.load(output_paths(files, image_id)["relevance"])
        assert np.array_equal(store[image_id].heatmap, raw.astype(np.float32))
    # the same settings through the store-only path: everything is done already
    code, stdout, err = _main(capsys, "explain", "-i", folder, "-m", model_file, "--store", out)
    assert code == 0 and "0 explained, 6 done before" in stdout, err
    code, _, err = _main(
        capsys, "explain", "-i", folder, "-m", model_file, "--store", out, "-o", files, "--workers", "2", "-q"
    )
    assert code == 2 and "drop --workers" in err


def test_a_store_behind_an_fsspec_url(model, folder):
    url = f"memory://bowlrp-test-{os.getpid()}/s.zarr"
    summary = explain_to_store([str(folder / "im0.png"), str(folder / "sub")], model, url, progress=False)
    assert len(summary.explained) == 4
    store = bowlrp.runs.store.open(url)
    assert sorted(store.ids()) == ["im0", "sub/im1", "sub/im3", "sub/im5"]
    fresh = model.explain([str(folder / "sub" / "im3.png")])[0]
    assert np.array_equal(store["sub/im3"].heatmap, fresh.heatmap.astype(np.float32))
    again = explain_to_store([str(folder / "im0.png"), str(folder / "sub")], model, url, progress=False)
    assert len(again.skipped) == 4
