"""The command-line tool, run as a subprocess, on its happy path and on bad input."""

import json
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest

from bowlrp import DenseSIFT, RankMapping
from bowlrp.classifier.svm import KernelSVC
from bowlrp.model_files import save
from bowlrp.pipeline import Pipeline


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, stripes_blobs):
    train, y, _, _ = stripes_blobs
    p = Pipeline(
        [("sift", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"), RankMapping(16, random_state=0))],
        KernelSVC("hik"),
        random_state=0,
    )
    names = np.array(["blobs", "stripes"])[y]
    p.fit(train, names)
    path = tmp_path_factory.mktemp("m") / "model.pkl"
    save(p, path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory, stripes_blobs):
    _, _, test, _ = stripes_blobs
    d = tmp_path_factory.mktemp("imgs")
    for i in (0, 1, -1):
        cv2.imwrite(str(d / f"img{i % 5}.png"), (test[i] * 255).astype(np.uint8))
    return d


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "bowlrp.explain", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_help_is_clear():
    r = cli("--help")
    assert r.returncode == 0 and "--target" in r.stdout and "--rule" in r.stdout


def test_happy_path_writes_four_files_per_image(model_file, images, tmp_path):
    r = cli(
        "--image",
        images,
        "--model",
        model_file,
        "--out",
        tmp_path,
        "--rule",
        "epsilon=1",
        "--normalize",
        "global",
    )
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 3
    for stem in ("img0", "img1", "img4"):
        for suffix in ("_heatmap.png", "_overlay.png", "_relevance.npy", ".json"):
            assert (tmp_path / f"{stem}{suffix}").is_file()
        meta = json.loads((tmp_path / f"{stem}.json").read_text())
        assert meta["target"] in ("blobs", "stripes") and len(meta["model_sha256"]) == 64
        assert "Epsilon(epsilon=1.0, relative=False)" in meta["rules"]["descriptors"]
        heat = np.load(tmp_path / f"{stem}_relevance.npy")
        assert heat.shape == (64, 64)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["status"] == "complete" and run["explained"] == 3 and run["failed"] == []


def test_target_by_name_index_and_tiles(model_file, images, tmp_path):
    r = cli(
        "-i",
        images / "img0.png",
        "-m",
        model_file,
        "-o",
        tmp_path,
        "--target",
        "stripes",
        "--tile",
        48,
        "--stride",
        16,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "img0.json").read_text())["target"] == "stripes"
    r = cli("-i", images / "img0.png", "-m", model_file, "-o", tmp_path / "b", "--target", "0")
    assert r.returncode == 0 and "target=blobs" in r.stdout
    r = cli("-i", images / "img0.png", "-m", model_file, "-o", tmp_path, "--target", "0")
    assert r.returncode == 2 and "holds results of another run (differs in stride, target, tile)" in r.stderr
    assert json.loads((tmp_path / "img0.json").read_text())["target"] == "stripes"
    r = cli("-i", images / "img0.png", "-m", model_file, "-o", tmp_path, "--target", "0", "--overwrite")
    assert r.returncode == 0 and json.loads((tmp_path / "img0.json").read_text())["target"] == "blobs"


@pytest.mark.parametrize(
    "case", ["missing", "not-model", "pickle", "bad-target", "bad-rule", "empty-glob", "empty-name"]
)
def test_bad_input_fails_with_one_line_and_writes_nothing(case, model_file, images, tmp_path):
    out = tmp_path / "out"
    image, model, extra = images / "img0.png", model_file, []
    if case == "missing":
        image = tmp_path / "nope.png"
    elif case == "empty-name":
        image = ""
    elif case == "not-model":
        model = tmp_path / "m.pkl"
        model.write_text("hello")
    elif case == "pickle":
        model = tmp_path / "evil.pkl"
        model.write_bytes(pickle.dumps({"x": 1}))
    elif case == "bad-target":
        extra = ["--target", "horse"]
    elif case == "bad-rule":
        extra = ["--rule", "magic=3"]
    elif case == "empty-glob":
        image = str(tmp_path / "*.jpg")
    r = cli("-i", image, "-m", model, "-o", out, *extra)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bowlrp-explain: error:"), r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.parametrize("case", ["not-image", "tiny"])
def test_a_bad_image_is_recorded_and_the_run_goes_on(case, model_file, images, tmp_path):
    bad = tmp_path / "in" / "bad.png"
    bad.parent.mkdir()
    if case == "not-image":
        bad.write_text("not an image")
    else:
        cv2.imwrite(str(bad), np.zeros((8, 8), np.uint8))
    good = tmp_path / "in" / "good.png"
    good.write_bytes((images / "img0.png").read_bytes())
    out = tmp_path / "out"
    r = cli("-i", tmp_path / "in", "-m", model_file, "-o", out)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0], r.stderr
    assert (out / "good.json").is_file() and not (out / "bad.json").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and [f["id"] for f in run["failed"]] == ["bad"]
