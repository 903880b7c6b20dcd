"""The evaluation suite on several processes, resumable, under the output folder's lock (issue 26).

The default tests run in this process (and two loky workers for the n_jobs test); the
kill -9 test runs the command in a subprocess and is marked slow.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bowlrp
from bowlrp._utils.lock import FolderLock, LockedError
from bowlrp.cli import evaluate as cli
from bowlrp.evaluation import suite as suite_module
from bowlrp.evaluation.suite import evaluate_suite, suite_fingerprint
from bowlrp.evaluation.suite_parts import (
    PARTS_DIR,
    SuiteParts,
    SuiteSettingsChanged,
    array_digest,
    pack,
    unpack,
)
from bowlrp.evaluation.suite_report import csv_bytes, evaluate_suite_into

from .conftest import blobs, small_hik_model, stripes
from .test_evaluation_suite import TINY

ROOT = Path(__file__).resolve().parents[1]


class Edges:
    """A model-independent explainer (gradient magnitude) that can be told to stop after n maps."""

    __name__ = "edges"

    def __init__(self, stop_after=None):
        self.stop_after = stop_after
        self.calls = 0

    def __call__(self, model, images, targets):
        out = []
        for im in images:
            self.calls += 1
            if self.stop_after is not None and self.calls > self.stop_after:
                raise KeyboardInterrupt("stopped by the test")
            gy, gx = np.gradient(im if im.ndim == 2 else im.mean(axis=2))
            out.append(np.hypot(gx, gy))
        return out


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    model = small_hik_model(rng)
    images = [stripes(rng, 40), blobs(rng, 40)]
    masks = []
    for _ in images:
        m = np.zeros((40, 40), bool)
        m[8:28, 12:32] = True
        masks.append(m)
    return model, images, masks


def numbers(result) -> str:
    """Everything the report says except how long it took (the times differ from run to run)."""
    d = result.to_dict() if not isinstance(result, dict) else dict(result)
    d.pop("seconds")
    for check in ("randomisation", "data_randomisation"):
        for r in d[check].values():
            r.pop("seconds")
    return json.dumps(d, sort_keys=True, default=str)


@pytest.mark.slow  # starting the loky workers: ~40 s; the resume tests below stay in the default run
def test_two_processes_give_the_numbers_of_one(data):
    """Every part is seeded from the settings (and the random map from the image), not the process."""
    model, images, masks = data
    rng = np.random.default_rng(5)
    train = [stripes(rng, 40) for _ in range(4)] + [blobs(rng, 40) for _ in range(4)]
    kwargs = dict(
        methods=("lrp", "random"),
        families="all",
        masks=masks,
        settings=TINY,
        train_images=train,
        train_labels=[1] * 4 + [0] * 4,
        progress=False,
    )
    one = evaluate_suite(model, images, n_jobs=1, **kwargs)
    two = evaluate_suite(model, images, n_jobs=2, **kwargs)
    assert numbers(one) == numbers(two)
    assert set(one.data_randomisation) == {"lrp", "random"}
    for name in ("lrp", "random"):
        for a, b in zip(one.randomisation[name].maps, two.randomisation[name].maps):
            np.testing.assert_array_equal(a, b)
    # and the per-image work is what the whole-list metric functions give
    maps = bowlrp.evaluation.explain_maps(model, images, "lrp")
    direct = bowlrp.evaluation.relevance_mass_accuracy(maps, masks)
    np.testing.assert_array_equal(one.metrics["relevance_mass_accuracy"]["lrp"].values, direct.values)


def test_parts_pack_and_unpack_exactly():
    r = bowlrp.evaluation.MetricResult(
        "road_morf",
        [0.1 + 0.2],
        False,
        {"fractions": (0.3, 0.6), "x": None},
        "lrp",
        np.array([[1.0, np.nan]]),
    )
    blob = pack({"image": "ab"}, {"result": [r], "maps": np.arange(6.0).reshape(2, 3), "n": 3})
    key, back = unpack(blob)
    assert key == {"image": "ab"} and back["n"] == 3
    [s] = back["result"]
    assert s.values[0] == 0.1 + 0.2 and s.params == {"fractions": [0.3, 0.6], "x": None}
    np.testing.assert_array_equal(s.curves, r.curves)
    np.testing.assert_array_equal(back["maps"], np.arange(6.0).reshape(2, 3))
    with pytest.raises(ValueError, match="not a suite part"):
        unpack(b"PK not an npz")


def _parts(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / PARTS_DIR).rglob("*.npz"))}


def test_an_interrupted_run_resumes_to_the_same_report(data, tmp_path, monkeypatch):
    """In this process: the run stops half-way (Ctrl-C), the rerun computes only what is missing.

    (The report files themselves are compared by the slow kill -9 test; here the result they
    are written from: ``to_dict`` is ``suite.json``, ``csv_bytes`` is ``suite.csv``.)
    """
    model, images, masks = data
    kwargs = dict(families="all", masks=masks, settings=TINY, progress=False, n_jobs=1)
    fingerprint = suite_fingerprint("sha-of-the-model", TINY)
    whole = evaluate_suite(model, images, methods=("lrp", Edges()), **kwargs)

    # interrupted once the explainer has made some maps: the finished parts are kept
    parts = SuiteParts.open(tmp_path, fingerprint)
    with pytest.raises(KeyboardInterrupt):
        evaluate_suite(model, images, methods=("lrp", Edges(stop_after=3)), parts=parts, **kwargs)
    kept = _parts(tmp_path)
    assert kept
    # a write that was killed leaves a temporary beside its part: swept by name on the rerun
    one_part = tmp_path / next(iter(kept))
    leftover = one_part.with_name(f".{one_part.name}.bowlrp-abcd1234.tmp")
    leftover.write_bytes(b"half")
    mine = tmp_path / PARTS_DIR / "notes.txt"
    mine.write_text("mine")

    computed = []
    real = suite_module._run_task

    def counting(model, task, parts):
        computed.append((task.family, task.index, task.name))
        return real(model, task, parts)

    monkeypatch.setattr(suite_module, "_run_task", counting)
    parts = SuiteParts.open(tmp_path, fingerprint)
    resumed = evaluate_suite(model, images, methods=("lrp", Edges()), parts=parts, **kwargs)
    assert numbers(resumed) == numbers(whole) and csv_bytes(resumed) == csv_bytes(whole)
    total = len(images) * 2 * 4  # images x methods x (maps, faithfulness, sanity, robustness)
    assert len(computed) == total - len(kept)  # only what was missing
    assert not leftover.exists() and mine.read_text() == "mine"
    for name, blob in kept.items():  # the kept parts were reused, not rewritten
        assert (tmp_path / name).read_bytes() == blob

    # a rerun with everything finished computes nothing and says the same
    computed.clear()
    again = evaluate_suite(model, images, methods=("lrp", Edges()), parts=parts, **kwargs)
    assert computed == [] and numbers(again) == numbers(whole)


def test_other_settings_are_refused_unless_overwrite(data, tmp_path):
    model, images, masks = data
    kwargs = dict(methods=("lrp", "random"), families=("localisation", "complexity"), masks=masks)
    kwargs.update(progress=False, model_hash="sha-of-the-model")
    evaluate_suite_into(tmp_path, model, images, settings=TINY, **kwargs)
    before = _parts(tmp_path)
    report = (tmp_path / "suite.json").read_bytes()
    other = dataclasses.replace(TINY, seed=1)
    with pytest.raises(SuiteSettingsChanged) as caught:
        evaluate_suite_into(tmp_path, model, images, settings=other, **kwargs)
    line = str(caught.value)
    assert "\n" not in line and "settings.seed: 0 -> 1" in line and "--overwrite" in line
    assert _parts(tmp_path) == before and (tmp_path / "suite.json").read_bytes() == report
    # another model is another fingerprint too (the parts alone, without the report)
    for name in ("suite.json", "suite.csv", "suite_table.png", "report.html"):
        (tmp_path / name).unlink()
    with pytest.raises(SuiteSettingsChanged, match="model_sha256"):
        evaluate_suite_into(tmp_path, model, images, settings=TINY, **{**kwargs, "model_hash": "other"})
    # --overwrite: the suite's parts are replaced, nothing else in the folder is touched
    mine = tmp_path / PARTS_DIR / "keep.me"
    mine.write_text("mine")
    (tmp_path / "notes.txt").write_text("mine too")
    result = evaluate_suite_into(tmp_path, model, images, settings=other, overwrite=True, **kwargs)
    assert (
        result.settings.seed == 1
        and json.loads((tmp_path / "suite.json").read_text())["settings"]["seed"] == 1
    )
    assert mine.read_text() == "mine" and (tmp_path / "notes.txt").read_text() == "mine too"
    record = json.loads((tmp_path / PARTS_DIR / "settings.json").read_text())
    assert record["fingerprint"]["settings"]["seed"] == 1


def test_a_parts_folder_the_suite_did_not_make_is_refused(tmp_path):
    (tmp_path / PARTS_DIR).mkdir()
    (tmp_path / PARTS_DIR / "thesis.tex").write_text("mine")
    with pytest.raises(FileExistsError, match="was not made by the evaluation suite"):
        SuiteParts.open(tmp_path, {"x": 1})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / PARTS_DIR).symlink_to(tmp_path / PARTS_DIR)
    with pytest.raises(FileExistsError, match="is not a folder"):
        SuiteParts.open(tmp_path / "other", {"x": 1})
    assert (tmp_path / PARTS_DIR / "thesis.tex").read_text() == "mine"


def test_the_suite_holds_the_folder_lock(data, tmp_path):
    model, images, masks = data
    seen = []

    def probe(model_, imgs, targets):
        try:  # while the suite runs, nobody else gets the folder
            FolderLock(tmp_path).acquire().release()
            seen.append("free")
        except LockedError as exc:
            seen.append(str(exc))
        return [np.ones(im.shape[:2]) for im in imgs]

    kwargs = dict(methods=(probe,), families="complexity", settings=TINY, progress=False)
    evaluate_suite_into(tmp_path, model, images[:1], **kwargs)
    assert seen and all("bowlrp-evaluate --suite" in s for s in seen)
    with FolderLock(tmp_path, "another run"):
        with pytest.raises(LockedError, match="in use by another run"):
            evaluate_suite_into(tmp_path, model, images[:1], **kwargs)


def _save_images(images, masks, folder: Path) -> None:
    folder.mkdir()
    for k, (im, m) in enumerate(zip(images, masks)):
        Image.fromarray(np.round(im * 255).astype(np.uint8)).save(folder / f"im{k}.png")
        Image.fromarray(m.astype(np.uint8) * 255).save(folder / f"im{k}_mask.png")


def test_command_line_resumes_and_refuses_other_settings(data, tmp_path, capsys):
    model, images, masks = data
    bowlrp.save(model, tmp_path / "m.skops")
    _save_images(images, masks, tmp_path / "images")
    argv = ["--model", str(tmp_path / "m.skops"), "--images", str(tmp_path / "images"), "--quiet"]
    argv += ["--suite", "complexity", "--methods", "lrp,random", "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 0
    digests = sorted(p.name for p in (tmp_path / "out" / PARTS_DIR).iterdir() if p.is_dir())
    assert len(digests) == len(images)
    capsys.readouterr()
    assert cli.main(argv + ["--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert "made with other settings (settings.seed: 0 -> 2)" in err and "--overwrite" in err
    assert cli.main(argv + ["--seed", "2", "--overwrite"]) == 0
    assert cli.main(argv[:4] + ["--n-jobs", "2", "--out", str(tmp_path / "x")]) == 2
    assert "--n-jobs spreads the images of --suite" in capsys.readouterr().err


def test_image_digest_is_the_content():
    a = np.zeros((3, 4))
    assert array_digest(a) == array_digest(a.copy()) != array_digest(np.zeros((4, 3)))
    assert array_digest(a) != array_digest(a.astype(np.float32))


SCRIPT = """
import sys
import numpy as np
from tests.conftest import blobs, small_hik_model, stripes
from bowlrp.evaluation.suite import SuiteSettings
from bowlrp.evaluation.suite_report import csv_bytes, evaluate_suite_into
rng = np.random.default_rng(0)
model = small_hik_model(rng)
images = [stripes(rng, 40) if k % 2 else blobs(rng, 40) for k in range(6)]
settings = SuiteSettings(road_fractions=(0.3, 0.6), flip_steps=3, irof_segments=4, correlation_runs=4,
                         correlation_subset=50, region_steps=3, robustness_samples=2)
evaluate_suite_into(sys.argv[1], model, images, methods=("lrp", "occlusion", "random"), families="all",
                    masks=[np.pad(np.ones((20, 20), bool), 10) for _ in images], settings=settings,
                    n_jobs=int(sys.argv[2]), progress=False, model_hash="test")
"""


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_report_of_an_uninterrupted_run(tmp_path):
    """The command killed with SIGKILL (every process of it) mid-run, then run again."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(out, n_jobs="2", **kw):
        return subprocess.Popen([sys.executable, str(script), str(out), n_jobs], env=env, **kw)

    assert run(tmp_path / "whole").wait(timeout=900) == 0
    killed = run(tmp_path / "cut", start_new_session=True)
    parts = tmp_path / "cut" / PARTS_DIR
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and len(list(parts.rglob("*.npz"))) < 12:
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)  # the command and its worker processes, as a crash would
    killed.wait()
    kept = {p: p.read_bytes() for p in parts.rglob("*.npz")}
    assert len(kept) >= 12 and not (tmp_path / "cut" / "suite.json").exists()
    assert run(tmp_path / "cut").wait(timeout=900) == 0  # the dead run's lock is simply taken
    for p, blob in kept.items():
        assert p.read_bytes() == blob  # reused, not computed again
    a, b = (json.loads((tmp_path / d / "suite.json").read_text()) for d in ("whole", "cut"))
    assert numbers(a) == numbers(b)
    assert (tmp_path / "whole" / "suite.csv").read_bytes() == (tmp_path / "cut" / "suite.csv").read_bytes()
