"""End to end on the generated VOC-format data: bowlrp-train, bowlrp.explain, the VOC experiment.

The VOC experiment describes each test image once (issue 29): one forward pass per
test image gives its scores for every class and the explanations the outputs need.
The reference is the old two-pass way, written out here: float32 features of every
test image -> ``decision_function`` for the scores, then a second forward pass per
selected image for its explanations.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bowlrp._utils.validation import as_float_image
from bowlrp.cli import train as train_cli
from bowlrp.datasets.voc import DatasetError, read_voc
from bowlrp.datasets.voc_like import make_voc_like
from bowlrp.evaluation.context import context_ratio
from bowlrp.explanation import explain_trace
from bowlrp.model_files import load
from bowlrp.pipeline import Pipeline
from bowlrp.training import training_labels

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "bowlrp" / "configs" / "voc_small.yaml"
sys.path.insert(0, str(ROOT / "experiments"))

import voc  # noqa: E402


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


def test_voc_experiment_small(experiment, voc_root):
    out, metrics = experiment["out"], experiment["metrics"]
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
    # resuming (every stage from the cache, the same numbers): test_timings_json_...


def test_voc_experiment_without_root_names_the_download_script(monkeypatch, capsys):
    monkeypatch.delenv("VOC_ROOT", raising=False)
    assert voc.main(["--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "data_scripts/download_voc.sh" in err and "\n" not in err


# -- issue 29: each test image described once -----------------------------------------------


def _image_key(image) -> str:
    return hashlib.sha1(np.ascontiguousarray(as_float_image(image)).tobytes()).hexdigest()


class DescribeCounter:
    """Counts ``describe`` calls of an extractor class per image (by the image's pixels)."""

    def __init__(self, monkeypatch, extractor_class):
        self.calls: dict[str, int] = {}
        original = extractor_class.describe

        def counting(extractor, image, *args, **kwargs):
            key = _image_key(image)
            self.calls[key] = self.calls.get(key, 0) + 1
            return original(extractor, image, *args, **kwargs)

        monkeypatch.setattr(extractor_class, "describe", counting)

    def of(self, paths) -> list[int]:
        return [self.calls.get(_image_key(p), 0) for p in paths]


@pytest.fixture(scope="module")
def experiment(voc_root, tmp_path_factory):
    """One whole run (max_explain=2, n_top=2), every describe call counted."""
    out = tmp_path_factory.mktemp("voc_single_pass")
    mp = pytest.MonkeyPatch()
    extractor_class = type(Pipeline.from_config(str(SMALL)).channels[0][1])
    counter = DescribeCounter(mp, extractor_class)
    try:
        metrics = voc.run(voc_root, SMALL, out, n_top=2, max_explain=2, quiet=True)
    finally:
        mp.undo()
    test = read_voc(voc_root, "test")
    return {"out": out, "metrics": metrics, "counter": counter, "test": test}


@pytest.fixture(scope="module")
def two_pass(experiment):
    """The old way, written out: float32 features of every test image -> the scores; a
    second forward pass per image for its explanations (of every class, to compare)."""
    pipe = load(experiment["out"] / "models" / "voc_all.pkl")
    test, classes = experiment["test"], tuple(experiment["metrics"]["classes"])
    X = pipe.features(list(test.paths))
    assert X.dtype == np.float32
    scores = np.asarray(pipe.classifier_.decision_function(X)).reshape(len(test), len(classes))
    explanations = {}
    for i in range(len(test)):
        trace = pipe.forward_one(test.paths[i])
        for k, c in enumerate(classes):
            e = explain_trace(pipe, trace, k)
            boxes = test.annotation(i).boxes(c) if test.labels[i, k] == 1 else []
            explanations[i, k] = (e, context_ratio(e.heatmap, boxes) if boxes else None)
    return {"pipe": pipe, "scores": scores, "explanations": explanations}


def _close(a, b, rtol=1e-12):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.abs(b).max(initial=0.0))))


def test_each_test_image_is_described_once_in_the_whole_run(experiment):
    n_channels = len(load(experiment["out"] / "models" / "voc_all.pkl").extractors_)
    counts = experiment["counter"].of(experiment["test"].paths)
    assert counts == [n_channels] * len(experiment["test"])
    stages = json.loads((experiment["out"] / "timings.json").read_text())["runs"][-1]["stages"]
    assert stages["test_pass"]["described"] == len(experiment["test"])
    assert stages["ap_and_context"]["described_again"] == 0 and stages["figures"]["described_again"] == 0


def test_single_pass_equals_the_two_pass_way(experiment, two_pass, tmp_path, monkeypatch):
    pipe = two_pass["pipe"]
    test, classes = experiment["test"], tuple(experiment["metrics"]["classes"])
    counter = DescribeCounter(monkeypatch, type(pipe.extractors_[0]))
    tp = voc.describe_test_images(pipe, test, classes, tmp_path / "pass", max_explain=2, n_top=2)
    assert counter.of(test.paths) == [1] * len(test)
    monkeypatch.undo()
    scores = two_pass["scores"]
    assert _close(tp.scores, scores)  # the decision function on the float32 features
    results = voc.context_results(pipe, test, classes, tp, 2, quiet=True)
    assert tp.described_again == 0
    selection = voc.context_selection(scores, test.labels, 2)
    assert sorted(results) == sorted(selection) and len(selection) > 0
    for i, ks in selection.items():
        for k in ks:
            e, ratio = two_pass["explanations"][i, k]
            got = results[i][classes[k]]
            assert _close(got["score"], e.score)
            assert (ratio is None and got["context_ratio"] is None) or _close(got["context_ratio"], ratio)
    n_heatmaps = 0
    for k in range(len(classes)):
        for i in np.argsort(-scores[:, k], kind="stable")[:2]:
            e, _ = two_pass["explanations"][int(i), k]
            heat = np.load(tp.heatmap_path(int(i), k))
            assert heat.dtype == np.float64 and _close(heat, e.heatmap)
            n_heatmaps += 1
    # the heatmaps of images that left a running top were removed: only the figures' remain
    assert len(list(tp.folder.glob("*.heatmap-*.npy"))) == n_heatmaps


def test_run_outputs_equal_the_two_pass_way(experiment, two_pass):
    out, test = experiment["out"], experiment["test"]
    classes = tuple(experiment["metrics"]["classes"])
    scores = two_pass["scores"]
    rows = (out / "context_images.csv").read_text().splitlines()[1:]
    expected = []
    for i, ks in sorted(voc.context_selection(scores, test.labels, 2).items()):
        for k in ks:
            e, ratio = two_pass["explanations"][i, k]
            expected.append(
                f"{test.ids[i]},{classes[k]},{e.score:.6f}," + ("" if ratio is None else f"{ratio:.6f}")
            )
    assert rows == expected
    ap_rows = (out / "ap.csv").read_text().splitlines()
    assert len(ap_rows) == len(classes) + 1
    assert all((out / "figures" / f"{c}.png").is_file() for c in classes)


def test_resume_describes_only_the_unfinished_images(experiment, tmp_path, monkeypatch):
    pipe = load(experiment["out"] / "models" / "voc_all.pkl")
    test, classes = experiment["test"], tuple(experiment["metrics"]["classes"])
    folder = tmp_path / "pass"
    first = voc.describe_test_images(pipe, test, classes, folder, max_explain=None, n_top=1)
    for i in (2, 5):  # as if killed before these images' records were written
        first.record_path(i).unlink()
        for k in range(len(classes)):
            first.heatmap_path(i, k).unlink(missing_ok=True)
    stale = folder / f".{first.record_path(2).name}.bowlrp-abcd1234.tmp"  # a killed write's
    stale.write_text("{")
    theirs = folder / "notes.txt"  # not the run's: left alone
    theirs.write_text("mine")
    counter = DescribeCounter(monkeypatch, type(pipe.extractors_[0]))
    again = voc.describe_test_images(pipe, test, classes, folder, max_explain=None, n_top=1)
    assert not stale.exists() and theirs.read_text() == "mine"
    assert counter.of(test.paths) == [1 if i in (2, 5) else 0 for i in range(len(test))]
    assert again.described == 2 and np.array_equal(again.scores, first.scores)
    assert voc.context_results(pipe, test, classes, again, None, True) == voc.context_results(
        pipe, test, classes, first, None, True
    )
    for k in range(len(classes)):  # the figures' heatmaps are there (no second pass needed)
        assert again.heatmap_path(int(np.argmax(again.scores[:, k])), k).is_file()
    assert again.described_again == 0
    # a record that is not one: a one-line error naming the file and what to do
    first.record_path(0).write_text('{"scores": [1.0]}')
    with pytest.raises(DatasetError, match=r"000013\.json is not a test-image record.*delete it"):
        voc.describe_test_images(pipe, test, classes, folder, max_explain=None, n_top=1)


@pytest.mark.slow  # joblib workers start and compile their Numba kernels: about a minute
def test_parallel_pass_equals_serial(experiment, tmp_path):
    pipe = load(experiment["out"] / "models" / "voc_all.pkl")
    test, classes = experiment["test"], tuple(experiment["metrics"]["classes"])
    serial = voc.describe_test_images(pipe, test, classes, tmp_path / "serial", max_explain=2, n_top=2)
    parallel = voc.describe_test_images(pipe, test, classes, tmp_path / "par", 2, 2, n_jobs=2)
    assert np.array_equal(parallel.scores, serial.scores)
    a = voc.context_results(pipe, test, classes, serial, 2, quiet=True)
    b = voc.context_results(pipe, test, classes, parallel, 2, quiet=True)
    assert a == b and parallel.described_again == 0 and parallel.peak_rss_mib > 0


@pytest.mark.slow  # a LocalCluster of 2 processes: about two minutes
def test_training_on_dask_gives_the_serial_experiment(experiment, voc_root, tmp_path):
    out = tmp_path / "dask"
    voc.run(voc_root, SMALL, out, n_top=2, max_explain=2, quiet=True, workers=2)
    for name in ("ap.csv", "context.csv", "context_images.csv"):
        assert (out / name).read_bytes() == (experiment["out"] / name).read_bytes(), name
    (cache,) = (out / "cache").iterdir()
    assert (cache / "features_trainval.zarr").is_dir() and not (cache / "features_trainval.npy").exists()
    with pytest.raises(ValueError, match="not both"):
        voc.run(voc_root, SMALL, tmp_path / "x", quiet=True, workers=2, n_jobs=2)


def test_timings_json_records_every_stage_and_appends_resumed_runs(experiment, voc_root):
    out = experiment["out"]
    first = json.loads((out / "timings.json").read_text())["runs"]
    stages = ["vocabulary", "train_features", "classifier", "test_pass", "ap_and_context", "figures"]
    assert list(first[-1]["stages"]) == stages and first[-1]["complete"]
    for stage in first[-1]["stages"].values():
        assert stage["seconds"] >= 0 and stage["peak_rss_mib"]["self"] > 0
    split = first[-1]["stages"]["test_pass"]["split_s"]
    assert set(split) == {"forward", "scores", "explain", "write"} and split["forward"] > 0
    assert first[-1]["stages"]["test_pass"]["describing_process_peak_rss_mib"] > 0
    again = voc.run(voc_root, SMALL, out, n_top=2, max_explain=2, quiet=True)
    runs = json.loads((out / "timings.json").read_text())["runs"]
    assert len(runs) == len(first) + 1 and runs[:-1] == first
    resumed = runs[-1]["stages"]
    assert resumed["vocabulary"]["cached"] and resumed["classifier"]["cached"]
    assert resumed["test_pass"]["described"] == 0
    assert again["map"] == experiment["metrics"]["map"]
    assert again["context_ratio"] == experiment["metrics"]["context_ratio"]


@pytest.mark.parametrize("n", [None, 0, 1, 3])
def test_running_top_admits_every_image_of_the_final_top(n):
    """Against a plain-NumPy reference: the final top is ``argsort(-s, stable)[:n]``; any
    processing order (a resume reads finished images first) must admit all of it."""
    rng = np.random.default_rng(n or 7)
    scores = rng.integers(0, 4, size=(30, 2)).astype(float)  # many ties
    for order in (np.arange(30), rng.permutation(30)):
        top = voc.RunningTop(2, n)
        admitted = [set(), set()]
        for i in order:
            for k in range(2):
                if top.admits(k, scores[i, k], int(i)):
                    admitted[k].add(int(i))
                top.add(k, scores[i, k], int(i))
        for k in range(2):
            final = set(np.argsort(-scores[:, k], kind="stable")[:n].tolist())
            assert final <= admitted[k]
            if n is not None:
                assert {i for _, i in top.kept[k]} == final
