"""End to end on the generated VOC-format data: bowlrp-train, bowlrp.explain, the VOC experiment."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bowlrp.cli import train as train_cli
from bowlrp.datasets.voc import read_voc
from bowlrp.datasets.voc_like import make_voc_like
from bowlrp.model_files import load
from bowlrp.training import training_labels

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "bowlrp" / "configs" / "voc_small.yaml"
sys.path.insert(0, str(ROOT / "experiments"))


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return make_voc_like(tmp_path_factory.mktemp("voclike") / "VOC", 12, 8, seed=1, size=(96, 128))


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_train_then_explain_cli(voc_root, tmp_path):
    model = tmp_path / "m.pkl"
    res = _run(
        "bowlrp.train",
        "--config",
        str(SMALL),
        "--data",
        str(voc_root),
        "--classes",
        "disc",
        "--out",
        str(model),
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    assert "trained binary model of disc on" in res.stdout and "training accuracy" in res.stdout
    pipe = load(model)
    assert list(pipe.classes_) == ["(not disc)", "disc"]
    info = pipe.config["dataset"]
    assert info["root"] == str(voc_root) and info["split"] == "trainval"
    assert info["trained_classes"] == ["disc"] and info["n_training_images"] >= 10
    assert pipe.config["training"]["feature_size"] == 1920
    assert pipe.classifier_.support_vectors_.shape[0] == 1  # linear expansion compressed

    image = voc_root / "JPEGImages" / "000013.jpg"  # first test image
    out = tmp_path / "explained"
    res = _run("bowlrp.explain", "--image", str(image), "--model", str(model), "--out", str(out))
    assert res.returncode == 0, res.stderr
    meta = json.loads((out / "000013.json").read_text())
    heat = np.load(out / "000013_relevance.npy")
    assert heat.shape == (96, 128) or heat.shape == (128, 96)
    assert heat.sum() + meta["bias_relevance"] + meta["residual"] == pytest.approx(meta["score"], rel=1e-6)
    f = pipe.decision_function([image])[0]
    assert abs(meta["score"]) == pytest.approx(abs(f), rel=1e-6)


def test_train_cli_errors_are_one_line(tmp_path, capsys):
    cases = [
        (["--config", str(SMALL), "--data", str(tmp_path / "nowhere"), "--out", "m.pkl"], "not found"),
        (["--config", "no_such_config", "--data", str(tmp_path), "--out", "m.pkl"], "config file not found"),
        (
            ["--config", str(SMALL), "--data", str(tmp_path), "--out", "m.pkl", "--max-images", "1"],
            "at least 2",
        ),
    ]
    for argv, message in cases:
        assert train_cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and err.startswith("bowlrp-train: error:")


def test_training_labels_modes(voc_root):
    ds = read_voc(voc_root)
    ds.labels[0, 0] = 0  # make image 0 difficult for disc
    one = training_labels(ds, ["disc"])
    assert one.mode == "binary" and 0 not in one.rows
    assert set(one.y) <= {"disc", "(not disc)"}
    multi = training_labels(ds, ["disc", "star"])
    assert multi.mode == "multilabel" and multi.y.shape == (len(multi.rows), 2) and 0 not in multi.rows
    single = ds.subset(np.flatnonzero((ds.labels == 1).sum(axis=1) == 1))
    assert training_labels(single).mode == "multiclass"


def test_voc_experiment_small(voc_root, tmp_path):
    import voc

    out = tmp_path / "results"
    metrics = voc.run(voc_root, SMALL, out, n_top=1, max_explain=2, quiet=True)
    classes = ["disc", "square", "star", "triangle"]
    assert metrics["classes"] == classes and metrics["n_test"] == 8
    assert 0 <= metrics["map"] <= 1 and set(metrics["ap_11_point"]) == set(classes)
    ap_rows = (out / "ap.csv").read_text().splitlines()
    assert ap_rows[0] == "class,ap,n_positive,n_difficult" and len(ap_rows) == 5
    context = (out / "context.csv").read_text().splitlines()
    assert len(context) == 5 and metrics["explained_images"] >= 1
    assert any(v["n_images"] > 0 for v in metrics["context_ratio"].values())
    for c in classes:
        assert (out / "figures" / f"{c}.png").is_file()
        model = load(out / "models" / f"voc_{c}.pkl")
        assert list(model.classes_) == [f"(not {c})", c]
    # the per-class model decides as the column of the all-class model
    everything = load(out / "models" / "voc_all.pkl")
    image = read_voc(voc_root, "test").paths[0]
    F = everything.decision_function([image])[0]
    horse_like = load(out / "models" / "voc_star.pkl")
    assert horse_like.decision_function([image])[0] == pytest.approx(F[2], rel=1e-9)
    # resuming reads every stage from the cache and gives the same numbers
    again = voc.run(voc_root, SMALL, out, n_top=1, max_explain=2, quiet=True)
    assert again["map"] == metrics["map"] and again["context_ratio"] == metrics["context_ratio"]


def test_voc_experiment_without_root_names_the_download_script(monkeypatch, capsys):
    import voc

    monkeypatch.delenv("VOC_ROOT", raising=False)
    assert voc.main(["--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "data_scripts/download_voc.sh" in err and "\n" not in err
