"""The command-line tool, run as a subprocess, on its happy path and on bad input."""

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

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
        assert "Epsilon(epsilon=1.0, relative=False)" in str(meta["rules"]["descriptors"])  # {channel: rule}
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
    # refused before the model is read: the differences known then (the target is compared later)
    assert r.returncode == 2 and "holds results of another run (differs in stride, tile)" in r.stderr
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


def _program(name: str) -> str:
    """The console script installed by ``make install`` (pip install -e .)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed: run make install"
    return found


def test_every_spelling_of_explain_writes_the_same_bytes(model_file, images, tmp_path):
    """``bowlrp explain``, ``python -m bowlrp explain``, ``python -m bowlrp.explain`` and
    ``bowlrp-explain`` are one program: byte-identical outputs."""
    spellings = {
        "bowlrp": [_program("bowlrp"), "explain"],
        "python-m-bowlrp": [sys.executable, "-m", "bowlrp", "explain"],
        "python-m-bowlrp.explain": [sys.executable, "-m", "bowlrp.explain"],
        "bowlrp-explain": [_program("bowlrp-explain")],
    }
    outputs = {}
    for name, command in spellings.items():
        out = tmp_path / name
        args = ["--image", str(images), "--model", str(model_file), "--out", str(out), "--target", "stripes"]
        r = subprocess.run([*command, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 0, (name, r.stderr)
        files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "run.json")
        outputs[name] = {p.relative_to(out).as_posix(): p.read_bytes() for p in files}
    reference = outputs["bowlrp-explain"]
    assert len(reference) == 12  # three images, four files each
    for name, files in outputs.items():
        assert files == reference, name


def test_the_bowlrp_command_lists_its_programs(capsys):
    from bowlrp.cli.main import main

    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    for program in ("explain", "train", "evaluate", "spray"):
        assert f"\n  {program} " in listing
    assert main(["explian"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == (
        "bowlrp: error: unknown program 'explian'; did you mean 'explain'? programs are explain, train, "
        "evaluate, spray (see bowlrp --help)"
    )
    assert main([]) == 2 and "programs:" in capsys.readouterr().err
    # the installed command, and a program's own --help through it
    r = subprocess.run([_program("bowlrp"), "spray", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--heatmaps" in r.stdout
