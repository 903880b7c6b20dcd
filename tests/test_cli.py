"""The command-line tool, run as a subprocess, on its happy path and on bad input."""

import json
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest

from bowlrp import DenseSIFT, RankMapping
from bowlrp.io import save
from bowlrp.pipeline import Pipeline
from bowlrp.svm import KernelSVC


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, stripes_blobs):
    train, y, _, _ = stripes_blobs
    p = Pipeline([("sift", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"),
                   RankMapping(16, random_state=0))], KernelSVC("hik"), random_state=0)
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
    return subprocess.run([sys.executable, "-m", "bowlrp.explain", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_help_is_clear():
    r = cli("--help")
    assert r.returncode == 0 and "--target" in r.stdout and "--rule" in r.stdout


def test_happy_path_writes_four_files_per_image(model_file, images, tmp_path):
    r = cli("--image", images, "--model", model_file, "--out", tmp_path, "--rule", "epsilon=1",
            "--normalize", "global")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 3
    for stem in ("img0", "img1", "img4"):
        for suffix in ("_heatmap.png", "_overlay.png", "_relevance.npy", ".json"):
            assert (tmp_path / f"{stem}{suffix}").is_file()
        meta = json.loads((tmp_path / f"{stem}.json").read_text())
        assert meta["target"] in ("blobs", "stripes") and len(meta["model_sha256"]) == 64
        assert "Epsilon(epsilon=1.0)" in meta["rules"]["descriptors"]
        heat = np.load(tmp_path / f"{stem}_relevance.npy")
        assert heat.shape == (64, 64)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_target_by_name_index_and_tiles(model_file, images, tmp_path):
    r = cli("-i", images / "img0.png", "-m", model_file, "-o", tmp_path, "--target", "stripes",
            "--tile", 48, "--stride", 16)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "img0.json").read_text())["target"] == "stripes"
    r = cli("-i", images / "img0.png", "-m", model_file, "-o", tmp_path, "--target", "0")
    assert r.returncode == 0 and "target=blobs" in r.stdout


@pytest.mark.parametrize("case", ["missing", "not-image", "tiny", "not-model", "pickle",
                                  "bad-target", "bad-rule", "empty-glob"])
def test_bad_input_fails_with_one_line_and_writes_nothing(case, model_file, images, tmp_path):
    out = tmp_path / "out"
    image, model, extra = images / "img0.png", model_file, []
    if case == "missing":
        image = tmp_path / "nope.png"
    elif case == "not-image":
        image = tmp_path / "text.png"
        image.write_text("not an image")
    elif case == "tiny":
        image = tmp_path / "tiny.png"
        cv2.imwrite(str(image), np.zeros((8, 8), np.uint8))
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
