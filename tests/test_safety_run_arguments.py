"""Run arguments that gave wrong results with exit code 0 are handled or refused (issue 24, 10-12).

- ``bowlrp-evaluate -i in/ -o in/ev`` run twice: 4269499 evaluated its own ``curves.png``
  on the second run; the output folder is now excluded from the inputs, as explain does.
- An image's noise was seeded by its position in the list (``seed + i``) and the position
  was not part of the result key: evaluating ``a1``, then ``a0 a1`` into one folder reused
  a curve a fresh run does not reproduce. The seed now comes from the image's id, and each
  per-image result is keyed on it (results keyed the old way are recomputed).
- ``--tile 16 --stride 30`` left pixels between the tiles unexplained; a stride larger
  than the tile is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bowlrp import DenseSIFT, RankMapping, save
from bowlrp.classifier.svm import KernelSVC
from bowlrp.cli.evaluate import main as evaluate_main
from bowlrp.evaluation.runner import EvaluationSettings, evaluate_images, image_seed
from bowlrp.explanation import explain_tiled
from bowlrp.pipeline import Pipeline

from .conftest import blobs, stripes

SIDE = 40  # the 40 x 40 image: 1,600 pixels
_CAPTURE = {"capture_output": True, "text": True, "timeout": 300}
QUICK = ["--steps", "4", "--repeats", "1", "--methods", "lrp-eps0,random", "--target", "1", "--quiet"]


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    train = [stripes(rng, SIDE) for _ in range(10)] + [blobs(rng, SIDE) for _ in range(10)]
    sift = DenseSIFT(bin_sizes=[4], steps=4, backend="opencv", rotate=False)
    return Pipeline([("s", sift, RankMapping(8, random_state=0))], KernelSVC("hik"), random_state=0).fit(
        train, np.array([1] * 10 + [0] * 10)
    )


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.pkl"
    save(model, path)
    return path


def _images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        image = stripes(rng, SIDE) if i % 2 else blobs(rng, SIDE)
        paths.append(folder / f"a{i}.png")
        assert cv2.imwrite(str(paths[-1]), (image * 255).astype(np.uint8))
    return paths


def _evaluate(model_file: Path, images, out: Path) -> None:
    assert evaluate_main(["-m", str(model_file), "-i", *map(str, images), "-o", str(out), *QUICK]) == 0


def _records(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in (json.loads(f.read_text()) for f in (out / "partial").iterdir())}


def test_evaluate_never_evaluates_its_own_outputs_inside_the_input_folder(model_file, tmp_path):
    images = tmp_path / "in"
    _images(images, 3)
    out = images / "ev"
    for _ in range(2):  # the second run finds curves.png in in/ev: 4269499 evaluated 4 images
        _evaluate(model_file, [images], out)
        summary = json.loads((out / "curves.json").read_text())["methods"]
        assert {m: d["n_images"] for m, d in summary.items()} == {"lrp-eps0": 3, "random": 3}
        assert set(_records(out)) == {"a0", "a1", "a2"}


def test_an_images_curves_do_not_depend_on_the_other_images(model_file, tmp_path):
    a0, a1 = _images(tmp_path / "in", 2)
    _evaluate(model_file, [a1], tmp_path / "shared")
    _evaluate(model_file, [a0, a1], tmp_path / "shared")  # reuses a1's result
    _evaluate(model_file, [a0, a1], tmp_path / "fresh")
    _evaluate(model_file, [a1], tmp_path / "alone")
    fresh = _records(tmp_path / "fresh")["a1"]
    for folder in ("shared", "alone"):
        assert _records(tmp_path / folder)["a1"]["curves"] == fresh["curves"], folder
    assert fresh["seed"] == fresh["key"]["image_seed"] == image_seed(0, "a1") != image_seed(0, "a0")
    # a result keyed the old way (no image seed) is recomputed, never reused
    (old,) = (tmp_path / "alone" / "partial").iterdir()
    record = json.loads(old.read_text())
    del record["key"]["image_seed"]
    record["curves"] = {m: np.zeros_like(c).tolist() for m, c in record["curves"].items()}
    old.write_text(json.dumps(record))
    _evaluate(model_file, [a1], tmp_path / "alone")
    assert _records(tmp_path / "alone")["a1"]["curves"] == fresh["curves"]


def test_store_curves_do_not_depend_on_the_other_images(model, tmp_path):
    a0, a1 = _images(tmp_path / "in", 2)
    settings = EvaluationSettings(steps=4, repeats=1)
    run = {"methods": ["random"], "settings": settings, "target": 1, "progress": False, "model_hash": "m"}
    store = tmp_path / "s.zarr"
    evaluate_images([a1], model, store=store, **run)
    shared = {r["id"]: r for r in evaluate_images([a0, a1], model, store=store, **run).results}
    fresh = {r["id"]: r for r in evaluate_images([a0, a1], model, **run).results}
    assert shared["a1"]["curves"] == fresh["a1"]["curves"]
    assert shared["a1"]["key"]["image_seed"] == image_seed(0, "a1")


def test_a_stride_larger_than_the_tile_is_refused(model):
    image = stripes(np.random.default_rng(2), SIDE)
    for tile, stride, match in (
        (16, 30, "stride 30 is larger than the tile 16"),
        (16, 0, "positive"),
        (0, None, "positive"),
        (None, 8, "without a tile"),
    ):
        with pytest.raises(ValueError, match=match):
            model.explain([image], tile=tile, stride=stride)
    with pytest.raises(ValueError, match="stride 30 is larger than the tile 16"):
        explain_tiled(model, image, 16, 30)
    for stride in (16, 8, None):  # stride == tile, stride < tile, the default (= tile)
        (e,) = model.explain([image], tile=16, stride=stride)
        covered = np.zeros(image.shape, bool)
        for r, c, _ in e.extra["tile_scores"]:
            covered[r : r + 16, c : c + 16] = True
        assert covered.all() and np.isfinite(e.heatmap).all() and e.extra["stride"] == (stride or 16)


@pytest.fixture(scope="module")
def cli_run(model_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiles")
    (image,) = _images(folder / "in", 1)
    out = folder / "out"
    cmd = [sys.executable, "-m", "bowlrp.explain", "-i", str(image), "-m", str(model_file)]
    r = subprocess.run([*cmd, "--tile", "16", "--stride", "30", "-o", str(out), "-q"], **_CAPTURE)
    return r, out


def test_the_explain_cli_refuses_a_stride_larger_than_the_tile(cli_run):
    r, out = cli_run
    assert r.returncode != 0  # 4269499: exit 0 and a heatmap with 576 pixels never explained
    assert "stride 30 is larger than the tile 16" in r.stderr
    assert not list(out.glob("*_heatmap.png"))


def test_the_explain_cli_refuses_it_in_one_line_with_exit_code_2(cli_run):
    r, _ = cli_run
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
