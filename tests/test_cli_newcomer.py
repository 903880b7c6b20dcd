"""What a new user meets first (issue 25): the README's command on a photo in a folder,
bowlrp-evaluate saying what it costs, train() quiet in Python.

- 4269499 refused ``python -m bowlrp.explain --image photos/x.jpg --model voc_horse.pkl``
  with ``error: no images given``: the default ``--out .`` made everything below the
  working directory "output", and inputs there were skipped. A file named on the
  command line is always an input now; only pictures bowlrp wrote are left out of a
  folder search, and the message says so.
- bowlrp-evaluate printed no cost, its per-image bar counted ``1800step`` with no total,
  and three LRP rules gave identical rows without a word of why.
- ``bowlrp.training.train`` printed ``[bowlrp-train] ...`` lines when called from Python.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bowlrp.datasets.voc import read_dataset
from bowlrp.datasets.voc_like import make_voc_like
from bowlrp.runs.folder_layout import is_written_picture
from bowlrp.runs.inputs import InputError, collect_inputs
from bowlrp.training import train
from tests.test_cli import images, model_file  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
FOUR = ("_heatmap.png", "_overlay.png", "_relevance.npy", ".json")


def readme_command() -> list[str]:
    """The first ``python -m bowlrp.explain`` command of the README, as its words."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.strip().startswith("python -m bowlrp.explain"):
            return shlex.split(line.split("#", 1)[0])
    raise AssertionError("the README shows no python -m bowlrp.explain command")


def run(words: list[str], cwd: Path) -> subprocess.CompletedProcess:
    assert words[:3] == ["python", "-m", "bowlrp.explain"]
    return subprocess.run([sys.executable, *words[1:]], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def newcomer(tmp_path, model_file, images):  # noqa: F811
    """A working directory as the README's reader has it: the model, and the photo in a sub-folder."""
    words = readme_command()
    image = words[words.index("--image") + 1]
    model = words[words.index("--model") + 1]
    (tmp_path / "photos").mkdir()
    picture = cv2.imread(str(images / "img0.png"))
    assert cv2.imwrite(str(tmp_path / "photos" / image), picture)
    shutil.copy(model_file, tmp_path / model)
    words[words.index("--image") + 1] = f"photos/{image}"
    return tmp_path, words, Path(image).stem


def test_the_readme_command_on_a_photo_in_a_sub_folder_writes_the_four_files(newcomer):
    cwd, words, stem = newcomer
    r = run(words, cwd)
    assert r.returncode == 0, r.stderr
    for suffix in FOUR:
        assert (cwd / f"{stem}{suffix}").is_file(), (suffix, sorted(p.name for p in cwd.iterdir()))
    assert json.loads((cwd / f"{stem}.json").read_text())["target"] in ("blobs", "stripes")
    assert np.load(cwd / f"{stem}_relevance.npy").shape == (64, 64)


def test_a_folder_search_leaves_out_only_what_bowlrp_wrote_and_says_so(newcomer):
    cwd, words, stem = newcomer
    assert run(words, cwd).returncode == 0
    (cwd / "photos" / "beach_overlay.png").write_bytes((cwd / f"{stem}_overlay.png").read_bytes())
    words[words.index("--image") + 1] = "."
    r = run(words, cwd)
    assert r.returncode == 0, r.stderr
    assert re.search(r"left out 2 picture\(s\) that bowlrp wrote into \.", r.stderr), r.stderr
    # the photo and a user's picture named like an output (no bowlrp record beside it) were explained
    assert (cwd / "photos" / f"{stem}.json").is_file() and (cwd / "photos" / "beach_overlay.json").is_file()
    assert not (cwd / f"{stem}_overlay_overlay.png").exists()


def test_when_only_bowlrp_pictures_are_found_the_error_says_what_and_why(newcomer):
    cwd, words, stem = newcomer
    assert run(words, cwd).returncode == 0
    shutil.rmtree(cwd / "photos")
    words[words.index("--image") + 1] = "."
    r = run(words, cwd)
    assert r.returncode == 2
    assert "no images given" not in r.stderr
    assert f"{stem}_heatmap.png" in r.stderr and "picture bowlrp wrote into the output folder" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_collect_inputs_skips_only_pictures_bowlrp_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    for name in ("photos/cat.png", "x_heatmap.png", "x_overlay.png", "user_overlay.png", "f_heatmap.png"):
        (tmp_path / name).write_bytes(b"png")
    (tmp_path / "x.json").write_text(json.dumps({"run_key": {"model_sha256": "0"}}))
    os.mkfifo(tmp_path / "f.json")  # a FIFO beside a picture is never opened (it would block)
    skipped = []
    found = collect_inputs(["."], exclude=".", on_skip=skipped.append)
    assert sorted(i.id for i in found) == ["f_heatmap", "photos/cat", "user_overlay"]
    assert sorted(p.name for p in skipped) == ["x_heatmap.png", "x_overlay.png"]
    # named on the command line: always an input, wherever the output folder is
    assert [i.id for i in collect_inputs(["photos/cat.png", "x_heatmap.png"], exclude=".")] == [
        "photos/cat",
        "x_heatmap",
    ]
    assert not is_written_picture(tmp_path / "f_heatmap.png")
    with pytest.raises(InputError, match=r"every image found \(2: .*x_heatmap.png.*\) is a picture bowlrp"):
        collect_inputs(["x_*.png"], exclude=".")


# -- bowlrp-evaluate: the cost up front, a bar with a total, identical rules explained --------


def test_evaluate_help_shows_every_default_and_says_what_each_option_does():
    r = subprocess.run(
        [sys.executable, "-m", "bowlrp.evaluate", "--help"], capture_output=True, text=True, timeout=60
    )
    text = " ".join(r.stdout.split("\noptions:", 1)[1].split())
    assert r.returncode == 0
    for option, default in (("--steps", 100), ("--repeats", 10), ("--block", 9), ("--seed", 0)):
        after = text.split(f"{option} {option.lstrip('-').upper()}", 1)[1].split(" --", 1)[0]
        assert f"(default: {default})" in after and len(after) > 30, (option, after)
    assert "(default: evaluation)" in text


def test_evaluate_prints_its_cost_a_bar_with_a_total_and_why_rules_coincide(model_file, images, tmp_path):  # noqa: F811
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "bowlrp.evaluate",
            "-m",
            model_file,
            "-i",
            images / "img0.png",
            "--methods",
            "lrp-eps0,lrp-ab21,lrp-absz,random",
            "--steps",
            "5",
            "--repeats",
            "2",
            "--block",
            "16",
            "--out",
            tmp_path / "ev",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "1 image(s) x 4 method(s) x 5 steps x 2 repeats = up to 40 model evaluations" in r.stderr
    assert re.search(r"/40 ", r.stderr) and "pass" in r.stderr, r.stderr  # the bar: k/40 passes
    assert not re.search(r"\d+step\b", r.stderr)
    notes = json.loads((tmp_path / "ev" / "curves.json").read_text())["notes"]
    assert len(notes) == 1 and notes[0].startswith("lrp-eps0, lrp-ab21, lrp-absz gave identical curves")
    assert "non-negative" in notes[0]
    assert r.stderr.count("gave identical curves") == 1


# -- train() from Python is quiet ------------------------------------------------------------


def test_train_from_python_prints_nothing(tmp_path, capsys, caplog):
    root = make_voc_like(tmp_path / "VOC", 8, 1, seed=1, size=(64, 80))
    dataset = read_dataset(root, "voc", None, ["disc"])
    config = ROOT / "bowlrp" / "configs" / "voc_small.yaml"
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="bowlrp.training"):
        pipe, summary = train(dataset, config, ["disc"])
    out, err = capsys.readouterr()
    assert out == "" and err == "", (out, err)
    assert summary["images"] >= 2 and hasattr(pipe, "explain")
    assert any("fitting the SVM" in m for m in caplog.messages)  # the stages, for who asks the logger
    lines = []
    train(dataset, config, ["disc"], report=lines.append)
    assert lines and lines[-1] == "fitting the SVM" and capsys.readouterr() == ("", "")
